"""Tolerant reading of channel JSON: parse once, read fields with paths, collect every problem.

Vendors ask for lenient deserialization (Microsoft: "avoid strict deserialization"), so a
:class:`Reader` ignores unknown keys, trims padded strings, accepts numbers sent as
strings and strings sent as numbers, and turns every real problem into a
:class:`RejectionReason` with the dotted path of the field. All problems of a payload are
reported together (:meth:`Reader.check`), not just the first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, NoReturn, TypeVar

from services.intake.domain.amounts import AmountError, currency_code
from services.intake.domain.errors import InvalidOrder, UnparseableInput, reason
from services.intake.domain.timefmt import epoch_to_rfc3339_ms, to_rfc3339_ms
from shared.contracts.canonical import RejectionReason
from shared.money import MoneyError, to_decimal

T = TypeVar("T")

_INTEGER = re.compile(r"[+-]?[0-9]{1,30}", re.ASCII)  # ASCII only: "²".isdigit() is True, int("²") fails
_MAX_INTEGRAL_EXPONENT = 30  # Decimal("1e999999999") is integral, but int() of it would never finish


def _integral(value: Decimal) -> bool:
    small = value.is_finite() and value.adjusted() < _MAX_INTEGRAL_EXPONENT
    return small and value == value.to_integral_value()


def must(value: T | None, field: str) -> T:
    """``value``, which an earlier :meth:`Reader.check` guarantees; raises InvalidOrder otherwise."""
    if value is None:
        raise InvalidOrder([reason("MISSING_FIELD", f"{field} is required", field)])
    return value


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"JSON constant {name} is not allowed")  # NaN/Infinity are not amounts


_MAX_EXPONENT = 400  # beyond any IEEE double: not interoperable JSON, and int(1e999999999) never ends


def _decimal_literal(text: str) -> Decimal:
    value = Decimal(text)
    if abs(value.adjusted()) > _MAX_EXPONENT:
        raise ValueError(f"JSON number {text[:20]}... is out of range")
    return value


def parse_json_text(text: str | bytes) -> Any:
    """``json.loads`` with exact decimals and without NaN/Infinity or absurd exponents.

    Raises ``ValueError`` (or ``RecursionError`` for absurd nesting) like ``json.loads``.
    """
    if isinstance(text, bytes):
        text = text.decode(json.detect_encoding(text), "surrogatepass")  # as json.loads does
    return _DECODER.decode(text)


# One decoder for every document: json.loads with these hooks builds a new one per call.
_DECODER = json.JSONDecoder(parse_float=_decimal_literal, parse_constant=_no_constants)


def load_json(body: bytes) -> Any:
    """The JSON document in ``body``; floats become ``Decimal`` so no amount ever passes through float.

    Raises :class:`UnparseableInput` when the bytes are not UTF-8 JSON.
    """
    if not isinstance(body, bytes | bytearray | memoryview):
        raise UnparseableInput("NOT_BYTES", f"payload is {type(body).__name__}, not bytes")
    try:
        text = bytes(body).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnparseableInput("NOT_UTF8", f"payload is not UTF-8: {exc}") from exc
    try:
        return parse_json_text(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise UnparseableInput("NOT_JSON", f"payload is not JSON: {exc}") from exc


def load_object(body: bytes) -> dict[str, Any]:
    """The JSON object in ``body``; :class:`UnparseableInput` for anything else."""
    doc = load_json(body)
    if not isinstance(doc, dict):
        raise UnparseableInput("NOT_AN_OBJECT", f"payload is a JSON {type(doc).__name__}, not an object")
    return doc


def header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    """Value of an HTTP header, case-insensitively; ``None`` when absent or blank."""
    if not isinstance(headers, Mapping):
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted and value is not None:
            text = str(value).strip()
            return text or None
    return None


class Reader:
    """Typed, path-aware access to one JSON object; problems are collected, not raised.

    Child readers (:meth:`obj`, :meth:`objs`) share the problem list, so one
    :meth:`check` at the end reports everything.
    """

    def __init__(self, data: Any, path: str = "", errors: list[RejectionReason] | None = None) -> None:
        self.data: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        self.path = path
        self.errors: list[RejectionReason] = errors if errors is not None else []

    # -- plumbing -------------------------------------------------------------------------------
    def at(self, key: str) -> str:
        """Dotted path of ``key`` below this reader."""
        return f"{self.path}.{key}" if self.path else key

    def fail(self, code: str, key: str | None, message: str) -> None:
        """Record a problem with the field ``key`` (``None``: this object itself)."""
        self.errors.append(reason(code, message, self.at(key) if key else (self.path or None)))

    def missing(self, key: str) -> None:
        """Record a required field that is absent."""
        self.fail("MISSING_FIELD", key, f"{self.at(key)} is required")

    def wrong_type(self, key: str, expected: str) -> None:
        """Record a field of the wrong type."""
        got = type(self.data.get(key)).__name__
        self.fail("INVALID_TYPE", key, f"{self.at(key)} must be {expected}, got {got}")

    def check(self) -> None:
        """Raise :class:`InvalidOrder` with every collected problem, if any."""
        if self.errors:
            raise InvalidOrder(self.errors)

    def has(self, key: str) -> bool:
        """True when ``key`` is present and not null."""
        return self.data.get(key) is not None

    def raw(self, key: str) -> Any:
        """The value as parsed, unchecked."""
        return self.data.get(key)

    # -- containers -----------------------------------------------------------------------------
    def obj(self, key: str, *, required: bool = False) -> Reader:
        """Reader of a nested object (empty when absent or malformed; the problem is recorded)."""
        value = self.data.get(key)
        if value is None:
            if required:
                self.missing(key)
        elif not isinstance(value, Mapping):
            self.wrong_type(key, "an object")
            value = None
        return Reader(value, self.at(key), self.errors)

    def objs(self, key: str, *, required: bool = False) -> list[Reader]:
        """Readers of a list of objects; non-object entries are recorded as problems."""
        value = self.data.get(key)
        if value is None:
            if required:
                self.missing(key)
            return []
        if not isinstance(value, list):
            self.wrong_type(key, "a list")
            return []
        out: list[Reader] = []
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                out.append(Reader(item, f"{self.at(key)}[{i}]", self.errors))
            else:
                self.fail("INVALID_TYPE", f"{key}[{i}]", f"{self.at(key)}[{i}] must be an object")
        return out

    # -- scalars --------------------------------------------------------------------------------
    def text(self, key: str, *, required: bool = False) -> str | None:
        """A string, trimmed; integers are accepted and spelled in decimal. Blank counts as absent."""
        value = self.data.get(key)
        if isinstance(value, str):
            value = value.strip()
        elif isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # Cleverbridge: subscriptionId is an int in one model, a string in another
        elif isinstance(value, Decimal) and _integral(value):
            value = str(int(value))
        elif value is not None:
            self.wrong_type(key, "a string")
            return None
        if not value:
            if required:
                self.missing(key)
            return None
        return value

    def integer(self, key: str, *, required: bool = False, minimum: int | None = None) -> int | None:
        """An integer; digit strings (``"25"``) and integral decimals are accepted, ``""`` is absent."""
        value = self.data.get(key)
        result: int | None = None
        if isinstance(value, bool):
            self.wrong_type(key, "an integer")
            return None
        if isinstance(value, int):
            result = value
        elif isinstance(value, Decimal) and _integral(value):
            result = int(value)
        elif isinstance(value, str):
            stripped = value.strip()
            if not stripped:
                value = None  # Azure: quantity "" = "not per seat"
            elif _INTEGER.fullmatch(stripped):
                result = int(stripped)
            else:
                self.wrong_type(key, "an integer")
                return None
        elif value is not None:
            self.wrong_type(key, "an integer")
            return None
        if result is None:
            if required:
                self.missing(key)
            return None
        if minimum is not None and result < minimum:
            self.fail("INVALID_VALUE", key, f"{self.at(key)} must be >= {minimum}, got {result}")
            return None
        return result

    def boolean(self, key: str, *, required: bool = False) -> bool | None:
        """A boolean; ``"true"``/``"false"`` strings are accepted (AWS sends them on purpose)."""
        value = self.data.get(key)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if isinstance(value, str) and not value.strip():
            value = None
        if value is None:
            if required:
                self.missing(key)
            return None
        self.wrong_type(key, "a boolean")
        return None

    def decimal(self, key: str, *, required: bool = False) -> Decimal | None:
        """An exact decimal from a JSON number or a decimal string (never via float)."""
        value = self.data.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.missing(key)
            return None
        try:
            result = to_decimal(value)
        except MoneyError:
            self.fail("INVALID_AMOUNT", key, f"{self.at(key)} is not a decimal amount")
            return None
        return result

    def timestamp(self, key: str, *, assume_utc: bool = False, required: bool = False) -> str | None:
        """A timestamp in the canonical ``...sssZ`` spelling (truncated to ms)."""
        value = self.text(key, required=required)
        if value is None:
            return None
        try:
            return to_rfc3339_ms(value, assume_utc=assume_utc)
        except ValueError as exc:
            self.fail("INVALID_TIMESTAMP", key, str(exc))
            return None

    def epoch(self, key: str, *, required: bool = False) -> str | None:
        """Unix epoch seconds (number or numeric string) in the canonical spelling."""
        value = self.data.get(key)
        if value is None:
            if required:
                self.missing(key)
            return None
        if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
            self.wrong_type(key, "epoch seconds")
            return None
        try:
            return epoch_to_rfc3339_ms(value)
        except ValueError as exc:
            self.fail("INVALID_TIMESTAMP", key, str(exc))
            return None

    def currency(self, key: str, *, required: bool = False) -> str | None:
        """An ISO 4217 code, upper-cased (Stripe sends ``usd``)."""
        value = self.text(key, required=required)
        if value is None:
            return None
        try:
            return currency_code(value)
        except AmountError:
            self.fail("INVALID_VALUE", key, f"{self.at(key)} is not an ISO 4217 currency code: {value!r}")
            return None

    def amount_error(self, key: str, exc: AmountError) -> None:
        """Record an amount that cannot be represented exactly."""
        self.fail("INVALID_AMOUNT", key, str(exc))
