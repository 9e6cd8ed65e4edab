-- Gapless numbers as rows, not as one counter row updated for every document: a counter row
-- updated thousands of times in a busy transaction grows a chain of row versions that every
-- later update walks. A transaction-scoped advisory lock per series serializes issuers instead;
-- a rollback removes the row, so the next issuer takes the same number: no gap, no repeat.
CREATE TABLE billing.document_numbers (
    series text   NOT NULL,
    number bigint NOT NULL,
    PRIMARY KEY (series, number)
);
INSERT INTO billing.document_numbers (series, number)
SELECT series, next_value - 1 FROM billing.document_sequences WHERE next_value > 1;
DROP TABLE billing.document_sequences;
