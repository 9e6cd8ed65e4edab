"""Partner CSV batches: one order per row, as a ``direct`` order.

Each row becomes a :class:`DirectOrder` document (the bytes the ``direct`` channel takes)
and its canonical change. A bad row yields reasons, never an exception: one broken row
must not sink the other rows of a partner's file. Columns are documented in
``docs/intake.md``; header names are case-insensitive and ``-``/space equal ``_``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.intake.domain.errors import InvalidOrder, UnparseableInput, reason
from services.intake.domain.mapping import ChannelMappings, resolve_plan
from services.intake.domain.normalizers import normalize
from shared.catalog import Catalog
from shared.contracts.canonical import CHANNELS, CanonicalOrderChange, RejectionReason

COLUMNS: tuple[str, ...] = (
    "order_id",
    "action",
    "subscription_id",
    "customer_id",
    "customer_email",
    "customer_name",
    "customer_region",
    "account_id",
    "plan",
    "source_channel",
    "channel_plan_id",
    "quantity",
    "billing_interval",
    "currency",
    "effective_at",
    "trial",
    "test",
)
REQUIRED: tuple[str, ...] = ("order_id", "customer_id", "effective_at")
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}


@dataclass(frozen=True)
class BatchRow:
    """The outcome of one CSV row: a publishable direct order and its change, or reasons."""

    row_number: int  # line of the file the row ends on (the header is line 1; 0 = the file itself)
    order_id: str | None = None
    payload: bytes | None = None  # DirectOrder JSON for orders.inbound.direct
    change: CanonicalOrderChange | None = None
    reasons: tuple[RejectionReason, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when the row produced an order."""
        return not self.reasons and self.change is not None


def _column(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def _clean(row: Mapping[Any, Any]) -> dict[str, str]:
    """Row values by normalized column name, trimmed; empty cells are dropped."""
    out: dict[str, str] = {}
    for key, value in row.items():
        if not isinstance(key, str) or not isinstance(value, str):
            continue  # DictReader puts surplus cells under None
        text = value.strip()
        if text:
            out[_column(key)] = text
    return out


def _flag(cells: dict[str, str], name: str, reasons: list[RejectionReason]) -> bool | None:
    value = cells.get(name)
    if value is None:
        return None
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    reasons.append(reason("INVALID_TYPE", f"{name} must be true or false, got {value!r}", name))
    return None


def _field_path(path: str | None) -> str | None:
    return path.replace("customer.", "customer_") if path else path  # back to CSV column names


def _document(
    cells: dict[str, str], mappings: ChannelMappings | None, default_source: str | None = None
) -> tuple[dict[str, Any], list[RejectionReason]]:
    """The DirectOrder document of a row, and the problems found on the way.

    ``default_source`` is the channel of ``channel_plan_id`` when the row has no ``source_channel``.
    """
    reasons = [reason("MISSING_FIELD", f"column {c} is required", c) for c in REQUIRED if c not in cells]
    plan = cells.get("plan")
    if plan is None and "channel_plan_id" in cells:
        source = cells.get("source_channel", default_source or "")
        if source not in CHANNELS:
            message = f"source_channel {source!r} is not a channel"
            reasons.append(reason("INVALID_VALUE", message, "source_channel"))
        else:
            probe = CanonicalOrderChange(
                action="create",
                phase="effective",
                channel=source,
                channel_subscription_id="batch",
                plan=cells["channel_plan_id"],
                status_after="pending",
            )
            plan = resolve_plan(source, probe, mappings)
            if plan is None:
                message = f"{source} plan {cells['channel_plan_id']!r} maps to no catalog plan"
                reasons.append(reason("UNKNOWN_PLAN", message, "channel_plan_id"))
    elif plan is None:
        reasons.append(reason("MISSING_FIELD", "column plan (or channel_plan_id) is required", "plan"))
    doc: dict[str, Any] = {
        "order_id": cells.get("order_id"),
        "customer": {
            "id": cells.get("customer_id"),
            "email": cells.get("customer_email"),
            "name": cells.get("customer_name"),
            "region": cells.get("customer_region"),
        },
        "plan": plan,
        "effective_at": cells.get("effective_at"),
    }
    for name in ("account_id", "action", "subscription_id", "billing_interval", "currency"):
        if name in cells:
            doc[name] = cells[name]
    if "quantity" in cells:
        text = cells["quantity"]
        if re.fullmatch(r"[0-9]{1,9}", text, re.ASCII):
            doc["quantity"] = int(text)
        else:
            message = f"quantity must be a whole number, got {text!r}"
            reasons.append(reason("INVALID_TYPE", message, "quantity"))
    for name in ("trial", "test"):
        flag = _flag(cells, name, reasons)
        if flag is not None:
            doc[name] = flag
    return doc, reasons


def parse_row(
    row: Mapping[Any, Any],
    *,
    row_number: int,
    catalog: Catalog | None = None,
    mappings: ChannelMappings | None = None,
    default_source_channel: str | None = None,
) -> BatchRow:
    """One CSV row (column -> cell) as a direct order and its canonical change, or reasons.

    ``default_source_channel``: the channel whose plan ids ``channel_plan_id`` holds when the
    row has no ``source_channel`` cell (``som intake batch --channel``).
    """
    try:
        cells = _clean(row)
        doc, reasons = _document(cells, mappings, default_source_channel)
        order_id = cells.get("order_id")
        if reasons:
            return BatchRow(row_number=row_number, order_id=order_id, reasons=tuple(reasons))
        payload = json.dumps(doc, sort_keys=True).encode()
        result = normalize("direct", payload, catalog=catalog)
        return BatchRow(row_number=row_number, order_id=order_id, payload=payload, change=result.changes[0])
    except InvalidOrder as exc:
        found = tuple(r.model_copy(update={"field": _field_path(r.field)}) for r in exc.reasons)
        return BatchRow(row_number=row_number, order_id=_clean(row).get("order_id"), reasons=found)
    except UnparseableInput as exc:
        return BatchRow(row_number=row_number, reasons=(reason("INVALID_ROW", exc.message),))
    except Exception as exc:  # a batch must survive any single row; the reason says what happened
        failure = reason("INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")
        return BatchRow(row_number=row_number, reasons=(failure,))


def parse_csv(
    data: str | bytes,
    *,
    catalog: Catalog | None = None,
    mappings: ChannelMappings | None = None,
    default_source_channel: str | None = None,
) -> list[BatchRow]:
    """Every data row of a partner CSV file; file-level problems are reported as row 0.

    ``row_number`` is the line in the file (the header is line 1), what a partner sees in
    an editor.

    Blank lines are skipped; a repeated ``order_id`` is refused (``DUPLICATE_ORDER``)
    after its first occurrence.
    """
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return [BatchRow(row_number=0, reasons=(reason("CSV_UNREADABLE", f"not UTF-8: {exc}"),))]
    else:
        text = data.removeprefix("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    out: list[BatchRow] = []
    try:
        header = reader.fieldnames
        if not header:
            return [BatchRow(row_number=0, reasons=(reason("CSV_EMPTY", "the file has no header row"),))]
        columns = {_column(h) for h in header if isinstance(h, str)}
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            message = f"required columns missing: {', '.join(missing)}"
            return [BatchRow(row_number=0, reasons=(reason("CSV_MISSING_COLUMNS", message),))]
        out.extend(_rows(reader, catalog, mappings, default_source_channel))
    except csv.Error as exc:
        out.append(BatchRow(row_number=reader.line_num, reasons=(reason("CSV_MALFORMED", str(exc)),)))
    return out


def _rows(
    reader: csv.DictReader[str],
    catalog: Catalog | None,
    mappings: ChannelMappings | None,
    default_source_channel: str | None = None,
) -> list[BatchRow]:
    out: list[BatchRow] = []
    seen: set[str] = set()
    for row in reader:
        number = reader.line_num
        if not _clean(row):
            continue  # a blank line is not an order
        parsed = parse_row(
            row,
            row_number=number,
            catalog=catalog,
            mappings=mappings,
            default_source_channel=default_source_channel,
        )
        if parsed.order_id and parsed.order_id in seen:
            message = f"order {parsed.order_id} appears more than once in the file"
            duplicate = reason("DUPLICATE_ORDER", message, "order_id")
            parsed = BatchRow(row_number=number, order_id=parsed.order_id, reasons=(duplicate,))
        elif parsed.order_id:
            seen.add(parsed.order_id)
        out.append(parsed)
    return out
