"""Metric names used by a PromQL expression: a small tokenizer, enough for our rules and dashboards.

String literals, label matchers ``{...}``, ranges ``[...]`` and the label lists of ``by``/``without``/
``on``/``ignoring``/``group_left``/``group_right`` are removed first; what remains is identifiers,
functions (followed by ``(``), keywords, numbers and operators. Identifiers that are neither a
function nor a keyword are metric names. Grafana's ``label_values(metric, label)`` is read too.
"""

from __future__ import annotations

import re

KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool"}
    | {"atan2", "inf", "nan", "Inf", "NaN"}
)
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w$.:])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{[^}]*\})?\s*,")


def metric_names(expr: str) -> set[str]:
    """Every metric name ``expr`` selects."""
    lv = _LABEL_VALUES.match(expr)
    if lv:
        return {lv.group(1)}
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    names: set[str] = set()
    for m in _IDENT.finditer(text):
        ident, call = m.group(1), m.group(2)
        if call or ident in KEYWORDS:
            continue
        names.add(ident)
    return names
