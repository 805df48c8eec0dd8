"""Databricks (Delta) data types: parsing, validation, storage and rendering.

Every value lives in three forms:

* **native** -- what a client sends: a protobuf field value or a JSON value
  (timestamps as integer microseconds, dates as integer days, decimals as text);
* **stored** -- what the SQLite column holds (see ``SQLITE_AFFINITY``): integers,
  0/1 for BOOLEAN, REAL for FLOAT/DOUBLE/DECIMAL, days for DATE, microseconds for
  TIMESTAMP(_NTZ), BLOB for BINARY, JSON text for VARIANT/ARRAY/MAP/STRUCT;
* **rendered** -- the JSON_ARRAY string the SQL Statement API returns.

DECIMAL is stored as REAL and re-rendered with its scale: exact for values of up
to 15 significant digits, which covers the money-like columns the project uses.
"""

import base64
import datetime
import json
import math
import re
import struct
import decimal
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

EPOCH_DATE = datetime.date(1970, 1, 1)
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
MIN_DAYS = (datetime.date(1, 1, 1) - EPOCH_DATE).days
MAX_DAYS = (datetime.date(9999, 12, 31) - EPOCH_DATE).days
MIN_MICROS = MIN_DAYS * 86400 * 10**6
MAX_MICROS = (MAX_DAYS + 1) * 86400 * 10**6 - 1

INTEGER_RANGES = {
    "TINYINT": (-2**7, 2**7 - 1),
    "SMALLINT": (-2**15, 2**15 - 1),
    "INT": (-2**31, 2**31 - 1),
    "BIGINT": (-2**63, 2**63 - 1),
}
ALIASES = {
    "INTEGER": "INT", "BYTE": "TINYINT", "SHORT": "SMALLINT", "LONG": "BIGINT",
    "REAL": "FLOAT", "DEC": "DECIMAL", "NUMERIC": "DECIMAL", "BOOL": "BOOLEAN",
    "TEXT": "STRING",
}
SIMPLE_TYPES = {"TINYINT", "SMALLINT", "INT", "BIGINT", "BOOLEAN", "FLOAT", "DOUBLE",
                "STRING", "DATE", "TIMESTAMP", "TIMESTAMP_NTZ", "BINARY", "VARIANT", "VOID"}
# type_name values of the SQL Statement API's manifest.
API_TYPE_NAMES = {
    "TINYINT": "BYTE", "SMALLINT": "SHORT", "INT": "INT", "BIGINT": "LONG",
    "BOOLEAN": "BOOLEAN", "FLOAT": "FLOAT", "DOUBLE": "DOUBLE", "STRING": "STRING",
    "VARCHAR": "STRING", "CHAR": "CHAR", "DECIMAL": "DECIMAL", "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMP", "TIMESTAMP_NTZ": "TIMESTAMP", "BINARY": "BINARY",
    "VARIANT": "USER_DEFINED_TYPE", "ARRAY": "ARRAY", "MAP": "MAP", "STRUCT": "STRUCT",
    "VOID": "NULL",
}
SQLITE_AFFINITY = {
    "TINYINT": "INTEGER", "SMALLINT": "INTEGER", "INT": "INTEGER", "BIGINT": "INTEGER",
    "BOOLEAN": "INTEGER", "FLOAT": "REAL", "DOUBLE": "REAL", "DECIMAL": "REAL",
    "DATE": "INTEGER", "TIMESTAMP": "INTEGER", "TIMESTAMP_NTZ": "INTEGER", "BINARY": "BLOB",
}
NUMERIC = {"TINYINT", "SMALLINT", "INT", "BIGINT", "FLOAT", "DOUBLE", "DECIMAL"}
INTEGRAL = {"TINYINT", "SMALLINT", "INT", "BIGINT"}


class TypeParseError(ValueError):
    """A type string is not a Databricks type the emulator knows."""


class ValueRejected(ValueError):
    """A value does not fit its column's type (ingestion, INSERT or CAST)."""


@dataclass(frozen=True)
class DeltaType:
    """One Databricks SQL type; ``name`` is canonical (INT, not INTEGER)."""

    name: str
    precision: int = None
    scale: int = None
    length: int = None
    element: "DeltaType" = None
    key: "DeltaType" = None
    fields: tuple = ()  # STRUCT: ((name, DeltaType), ...)

    @property
    def text(self):
        """The full type text, e.g. ``DECIMAL(10,2)`` or ``ARRAY<STRING>``."""
        if self.name == "DECIMAL":
            return "DECIMAL(%d,%d)" % (self.precision, self.scale)
        if self.name in ("VARCHAR", "CHAR"):
            return "%s(%d)" % (self.name, self.length)
        if self.name == "ARRAY":
            return "ARRAY<%s>" % self.element.text
        if self.name == "MAP":
            return "MAP<%s,%s>" % (self.key.text, self.element.text)
        if self.name == "STRUCT":
            return "STRUCT<%s>" % ",".join("%s:%s" % (n, t.text) for n, t in self.fields)
        return self.name

    @property
    def api_name(self):
        """The manifest's ``type_name`` (INT, LONG, SHORT, ...)."""
        return API_TYPE_NAMES[self.name]

    @property
    def affinity(self):
        """The SQLite column type used to store this type."""
        return SQLITE_AFFINITY.get(self.name, "TEXT")

    @property
    def is_integral(self):
        return self.name in INTEGRAL

    @property
    def is_string(self):
        return self.name in ("STRING", "VARCHAR", "CHAR")

    def __str__(self):
        return self.text


STRING = DeltaType("STRING")
BIGINT = DeltaType("BIGINT")
INT = DeltaType("INT")
DOUBLE = DeltaType("DOUBLE")
BOOLEAN = DeltaType("BOOLEAN")
TIMESTAMP = DeltaType("TIMESTAMP")
VOID = DeltaType("VOID")


def decimal_type(precision, scale):
    """DECIMAL(p,s) with Databricks' limits (p capped at 38)."""
    precision = min(precision, 38)
    return DeltaType("DECIMAL", precision=precision, scale=min(scale, precision))


# ---------------------------------------------------------------- parsing

_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|`(?:[^`]|``)+`|\d+|[<>(),:])")


def parse_type(text):
    """Parse a Databricks type string (case-insensitive) into a DeltaType."""
    tokens = _tokenize_type(text)
    parsed, pos = _parse_type_tokens(tokens, 0, text)
    if pos != len(tokens):
        raise TypeParseError("unexpected %r in type %r" % (tokens[pos], text))
    return parsed


def _tokenize_type(text):
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise TypeParseError("cannot parse type %r" % text)
        tokens.append(match.group(1))
        pos = match.end()
    if not tokens:
        raise TypeParseError("empty type")
    return tokens


def _parse_type_tokens(tokens, pos, text):
    def expect(token):
        nonlocal pos
        if pos >= len(tokens) or tokens[pos] != token:
            raise TypeParseError("expected %r in type %r" % (token, text))
        pos += 1

    def integer():
        nonlocal pos
        if pos >= len(tokens) or not tokens[pos].isdigit():
            raise TypeParseError("expected a number in type %r" % text)
        pos += 1
        return int(tokens[pos - 1])

    word = tokens[pos].upper()
    pos += 1
    word = ALIASES.get(word, word)
    if word == "TIMESTAMP_LTZ":
        word = "TIMESTAMP"
    if word in SIMPLE_TYPES:
        return DeltaType(word), pos
    if word == "DECIMAL":
        precision, scale = 10, 0
        if pos < len(tokens) and tokens[pos] == "(":
            pos += 1
            precision = integer()
            if tokens[pos] == ",":
                pos += 1
                scale = integer()
            expect(")")
        if not 1 <= precision <= 38 or scale > precision:
            raise TypeParseError("invalid DECIMAL(%d,%d)" % (precision, scale))
        return DeltaType("DECIMAL", precision=precision, scale=scale), pos
    if word in ("VARCHAR", "CHAR"):
        expect("(")
        length = integer()
        expect(")")
        return DeltaType(word, length=length), pos
    if word == "ARRAY":
        expect("<")
        element, pos = _parse_type_tokens(tokens, pos, text)
        expect(">")
        return DeltaType("ARRAY", element=element), pos
    if word == "MAP":
        expect("<")
        key, pos = _parse_type_tokens(tokens, pos, text)
        expect(",")
        value, pos = _parse_type_tokens(tokens, pos, text)
        expect(">")
        return DeltaType("MAP", key=key, element=value), pos
    if word == "STRUCT":
        expect("<")
        fields = []
        while True:
            name = tokens[pos].strip("`")
            pos += 1
            expect(":")
            ftype, pos = _parse_type_tokens(tokens, pos, text)
            fields.append((name, ftype))
            if tokens[pos] == ">":
                pos += 1
                break
            expect(",")
        return DeltaType("STRUCT", fields=tuple(fields)), pos
    raise TypeParseError("unknown data type %r" % tokens[pos - 1])


# ---------------------------------------------------------------- native -> stored

def store_native(dtype, value):
    """Validate a client's native value against ``dtype`` and return it as stored.

    ``None`` passes through (NULL checks are the caller's). Raises ValueRejected.
    """
    if value is None:
        return None
    name = dtype.name
    if name in INTEGRAL:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueRejected("expected an integer for %s, got %s" % (dtype, _describe(value)))
        low, high = INTEGER_RANGES[name]
        if not low <= value <= high:
            raise ValueRejected("value %d out of range for %s" % (value, dtype))
        return value
    if name == "BOOLEAN":
        if not isinstance(value, bool):
            raise ValueRejected("expected a boolean, got %s" % _describe(value))
        return int(value)
    if name in ("FLOAT", "DOUBLE"):
        if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
            return float(value.replace("Infinity", "inf"))
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueRejected("expected a number for %s, got %s" % (dtype, _describe(value)))
        if name == "FLOAT":
            # FLOAT is 32-bit: a JSON number is rounded as Delta would
            try:
                return struct.unpack("<f", struct.pack("<f", float(value)))[0]
            except OverflowError:
                raise ValueRejected("%r is out of range for FLOAT" % (value,)) from None
        return float(value)
    if name == "DECIMAL":
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueRejected("expected decimal text for %s, got %s" % (dtype, _describe(value)))
        return float(check_decimal(dtype, str(value)))
    if name == "DATE":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueRejected("expected integer days since 1970-01-01, got %s" % _describe(value))
        if not MIN_DAYS <= value <= MAX_DAYS:
            raise ValueRejected("date %d days out of range" % value)
        return value
    if name in ("TIMESTAMP", "TIMESTAMP_NTZ"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueRejected("expected integer microseconds since the epoch, got %s"
                                % _describe(value))
        if not MIN_MICROS <= value <= MAX_MICROS:
            raise ValueRejected("timestamp %d us out of range" % value)
        return value
    if name in ("STRING", "VARCHAR", "CHAR"):
        if not isinstance(value, str):
            raise ValueRejected("expected a string, got %s" % _describe(value))
        if dtype.length is not None and len(value) > dtype.length:
            raise ValueRejected("string of %d characters exceeds %s" % (len(value), dtype))
        return value
    if name == "BINARY":
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except ValueError as exc:
                raise ValueRejected("invalid base64 for BINARY: %s" % exc) from exc
        raise ValueRejected("expected bytes, got %s" % _describe(value))
    if name == "VARIANT":
        if not isinstance(value, str):
            raise ValueRejected("expected JSON text for VARIANT, got %s" % _describe(value))
        try:
            json.loads(value)
        except ValueError as exc:
            raise ValueRejected("VARIANT value is not valid JSON: %s" % exc) from exc
        return value
    return json.dumps(_json_element(dtype, value), separators=(",", ":"))


def store_json(dtype, value):
    """Like store_native, for a value taken from a JSON record."""
    if value is None:
        return None
    if dtype.name == "VARIANT":
        return json.dumps(value, separators=(",", ":"))
    if dtype.name == "BINARY" and not isinstance(value, str):
        raise ValueRejected("expected a base64 string for BINARY, got %s" % _describe(value))
    return store_native(dtype, value)


def _json_element(dtype, value):
    """Validate a nested (ARRAY/MAP/STRUCT) value; return it as rendered JSON."""
    if value is None:
        return None
    name = dtype.name
    if name == "ARRAY":
        if not isinstance(value, (list, tuple)):
            raise ValueRejected("expected an array for %s, got %s" % (dtype, _describe(value)))
        return [_json_element(dtype.element, v) for v in value]
    if name == "MAP":
        if not isinstance(value, dict):
            raise ValueRejected("expected an object for %s" % dtype)
        return {str(k): _json_element(dtype.element, v) for k, v in value.items()}
    if name == "STRUCT":
        if not isinstance(value, dict):
            raise ValueRejected("expected an object for %s" % dtype)
        known = {n.lower(): (n, t) for n, t in dtype.fields}
        out = {}
        for key, item in value.items():
            if key.lower() not in known:
                raise ValueRejected("unknown field %r in %s" % (key, dtype))
            fname, ftype = known[key.lower()]
            out[fname] = _json_element(ftype, item)
        return out
    if name == "VARIANT":
        return value
    return json_value(dtype, store_native(dtype, value))


def check_decimal(dtype, text):
    """Parse decimal text and check it fits DECIMAL(p,s); return the Decimal."""
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        raise ValueRejected("invalid decimal text %r" % text) from None
    if not number.is_finite():
        raise ValueRejected("decimal %r is not finite" % text)
    # normalize() rounds to the context's precision (28 digits by default):
    # DECIMAL(38, s) needs more
    with decimal.localcontext() as ctx:
        ctx.prec = 100
        sign, digits, exponent = number.normalize().as_tuple() if number else (0, (0,), 0)
    frac_digits = max(0, -exponent)
    int_digits = max(0, len(digits) + exponent)
    if frac_digits > dtype.scale or int_digits > dtype.precision - dtype.scale:
        raise ValueRejected("decimal %s does not fit %s" % (text, dtype))
    return number


def _describe(value):
    return "%s %r" % (type(value).__name__, value if not isinstance(value, bytes) else value[:16])


# ---------------------------------------------------------------- stored -> rendered

def render(dtype, value):
    """Render a stored value as the SQL Statement API's JSON_ARRAY string (or None)."""
    if value is None:
        return None
    name = dtype.name
    if name in INTEGRAL:
        return str(int(value))
    if name == "BOOLEAN":
        return "true" if value else "false"
    if name == "DOUBLE":
        return format_double(value)
    if name == "FLOAT":
        return format_float32(value)
    if name == "DECIMAL":
        return format_decimal(value, dtype.scale)
    if name == "DATE":
        return days_to_date(value).isoformat()
    if name == "TIMESTAMP":
        return format_timestamp(value, utc_suffix=True)
    if name == "TIMESTAMP_NTZ":
        return format_timestamp(value, utc_suffix=False)
    if name == "BINARY":
        return base64.b64encode(value if isinstance(value, bytes) else str(value).encode()).decode()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def json_value(dtype, value):
    """A stored value as a JSON-native value, the way to_json() shows it."""
    if value is None:
        return None
    name = dtype.name
    if name in INTEGRAL:
        return int(value)
    if name == "BOOLEAN":
        return bool(value)
    if name in ("FLOAT", "DOUBLE"):
        return value if math.isfinite(value) else render(dtype, value)
    if name == "DECIMAL":
        return float(value)
    if name in ("ARRAY", "MAP", "STRUCT", "VARIANT"):
        return json.loads(value)
    return render(dtype, value)


def admin_value(dtype, value):
    """A stored value for the control API: timestamps in µs, dates in days,
    binary as base64, decimals as text, nested types as parsed JSON."""
    if value is None:
        return None
    name = dtype.name
    if name in ("DATE", "TIMESTAMP", "TIMESTAMP_NTZ") or name in INTEGRAL:
        return int(value)
    if name in ("ARRAY", "MAP", "STRUCT"):
        return json.loads(value)
    if name in ("FLOAT", "DOUBLE"):
        return value if math.isfinite(value) else render(dtype, value)
    if name == "BOOLEAN":
        return bool(value)
    return render(dtype, value)


def format_double(value):
    """Shortest round-trip text of a double (Java-style NaN/Infinity)."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def format_float32(value):
    """Shortest text that reads back as the same 32-bit float."""
    value = float(value)
    if not math.isfinite(value):
        return format_double(value)
    target = struct.pack("<f", value)
    for digits in range(1, 10):
        text = "%.*g" % (digits, value)
        if struct.pack("<f", float(text)) == target:
            break
    number = float(text)
    return repr(number) if "e" not in text else text


def format_decimal(value, scale):
    """Plain decimal text with exactly ``scale`` fraction digits."""
    number = Decimal(repr(float(value))) if isinstance(value, float) else Decimal(value)
    quantum = Decimal(1).scaleb(-scale)
    return format(number.quantize(quantum, rounding=ROUND_HALF_UP), "f")


def days_to_date(days):
    return EPOCH_DATE + datetime.timedelta(days=int(days))


def micros_to_datetime(micros):
    return EPOCH + datetime.timedelta(microseconds=int(micros))


def _date_time_text(moment, sep):
    """YYYY-MM-DD<sep>HH:MM:SS with a four-digit year (glibc's %Y does not pad)."""
    return "%04d-%02d-%02d%s%02d:%02d:%02d" % (moment.year, moment.month, moment.day, sep,
                                               moment.hour, moment.minute, moment.second)


def format_timestamp(micros, utc_suffix):
    """ISO-8601 text, at least millisecond precision: 2024-01-31T12:34:56.789Z."""
    moment = micros_to_datetime(micros)
    fraction = ("%06d" % moment.microsecond).rstrip("0").ljust(3, "0")
    return _date_time_text(moment, "T") + "." + fraction + ("Z" if utc_suffix else "")


# ---------------------------------------------------------------- casts

_TS_TEXT = re.compile(
    r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(Z|UTC|[+-]\d{2}:?\d{2})?\s*$", re.IGNORECASE)


def parse_timestamp_text(text):
    """Timestamp text (ISO-8601, space or T, optional offset; UTC assumed) → µs."""
    match = _TS_TEXT.match(text)
    if not match:
        raise ValueRejected("cannot parse %r as TIMESTAMP" % text)
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        moment = datetime.datetime(int(year), int(month), int(day), int(hour or 0),
                                   int(minute or 0), int(second or 0),
                                   int((fraction or "0")[:6].ljust(6, "0")),
                                   tzinfo=datetime.timezone.utc)
    except ValueError as exc:
        raise ValueRejected("cannot parse %r as TIMESTAMP: %s" % (text, exc)) from None
    micros = (moment - EPOCH) // datetime.timedelta(microseconds=1)
    if offset and offset.upper() not in ("Z", "UTC"):
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        micros -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60) * 10**6
    return micros


def cast_to_string(dtype, value):
    """CAST(value AS STRING) with Databricks' formatting (session time zone UTC)."""
    if value is None:
        return None
    name = dtype.name
    if name in ("TIMESTAMP", "TIMESTAMP_NTZ"):
        moment = micros_to_datetime(value)
        text = _date_time_text(moment, " ")
        if moment.microsecond:
            text += "." + ("%06d" % moment.microsecond).rstrip("0")
        return text
    if name == "BINARY":
        return bytes(value).decode("utf-8", "replace")
    return render(dtype, value)


def cast_value(value, source, target):
    """CAST a stored value of type ``source`` to type ``target`` (ANSI: errors raise)."""
    if value is None:
        return None
    src, dst = source.name, target.name
    if dst in ("STRING", "VARCHAR", "CHAR"):
        return store_native(target, cast_to_string(source, value)) if dst != "STRING" \
            else cast_to_string(source, value)
    if src in ("STRING", "VARCHAR", "CHAR", "VOID") and isinstance(value, (bytes, str)):
        return _cast_from_text(value if isinstance(value, str) else value.decode(), target)
    if dst in INTEGRAL:
        if src in ("TIMESTAMP", "TIMESTAMP_NTZ"):
            value = value // 10**6
        elif src == "DATE":
            raise ValueRejected("cannot cast DATE to %s" % target)
        number = int(value)  # truncates toward zero like Spark
        low, high = INTEGER_RANGES[dst]
        if not low <= number <= high:
            raise ValueRejected("[CAST_OVERFLOW] The value %s of the type %s cannot be cast to "
                                "%s due to an overflow." % (render(source, value), source, target))
        return number
    if dst in ("FLOAT", "DOUBLE"):
        return float(value)
    if dst == "DECIMAL":
        number = Decimal(repr(float(value))) if isinstance(value, float) else Decimal(value)
        rounded = number.quantize(Decimal(1).scaleb(-target.scale), rounding=ROUND_HALF_UP)
        return float(check_decimal(target, str(rounded)))
    if dst == "BOOLEAN":
        if src in NUMERIC or src == "BOOLEAN":
            return int(bool(value))
    if dst == "DATE":
        if src == "DATE":
            return value
        if src in ("TIMESTAMP", "TIMESTAMP_NTZ"):
            return value // (86400 * 10**6)
    if dst in ("TIMESTAMP", "TIMESTAMP_NTZ"):
        if src in ("TIMESTAMP", "TIMESTAMP_NTZ"):
            return value
        if src == "DATE":
            return value * 86400 * 10**6
        if src in NUMERIC:
            return int(float(value) * 10**6)
    if dst == "BINARY" and src == "BINARY":
        return value
    if dst == src and dst in ("ARRAY", "MAP", "STRUCT", "VARIANT"):
        return value
    raise ValueRejected("[DATATYPE_MISMATCH.CAST_WITHOUT_SUGGESTION] cannot cast %s to %s."
                        % (source, target))


def _cast_from_text(text, target):
    name = target.name
    stripped = text.strip()
    try:
        if name in INTEGRAL:
            return store_native(target, int(stripped))
        if name in ("FLOAT", "DOUBLE"):
            return float(stripped)
        if name == "DECIMAL":
            number = Decimal(stripped).quantize(Decimal(1).scaleb(-target.scale),
                                                rounding=ROUND_HALF_UP)
            return float(check_decimal(target, str(number)))
        if name == "BOOLEAN":
            lowered = stripped.lower()
            if lowered in ("true", "t", "yes", "y", "1"):
                return 1
            if lowered in ("false", "f", "no", "n", "0"):
                return 0
            raise ValueError(text)
        if name == "DATE":
            day = datetime.date.fromisoformat(stripped[:10])
            return (day - EPOCH_DATE).days
        if name in ("TIMESTAMP", "TIMESTAMP_NTZ"):
            return parse_timestamp_text(stripped)
        if name == "BINARY":
            return text.encode()
        if name in ("ARRAY", "MAP", "STRUCT"):
            return store_native(target, json.loads(text))
    except (ValueError, InvalidOperation, ValueRejected):
        raise ValueRejected("[CAST_INVALID_INPUT] The value '%s' of the type \"STRING\" cannot "
                            "be cast to \"%s\" because it is malformed. Correct the value as per "
                            "the syntax, or change its target type. SQLSTATE: 22018"
                            % (text, target)) from None
    raise ValueRejected("[DATATYPE_MISMATCH.CAST_WITHOUT_SUGGESTION] cannot cast STRING to %s."
                        % target)
