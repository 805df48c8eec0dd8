"""Python functions registered on each statement's SQLite connection.

They implement the Databricks semantics SQLite lacks: ANSI casts between
Delta types (``zb_cast``), ``base64``/``unbase64``, ``to_json``,
``date_format`` with Spark datetime patterns, ``concat`` (NULL if any argument
is NULL) and an exact ``sum`` of DECIMAL values. SQLite hides exceptions raised
in user functions, so the last one is kept in ``SqlFunctions.error``.
"""

import base64
import binascii
import datetime
import functools
import json
import re
from decimal import Decimal

import deltatypes as dt

# Spark datetime pattern letters → how to render them from a datetime.
_PATTERN = re.compile(r"'[^']*'|([A-Za-z])\1*|.")
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


@functools.lru_cache(maxsize=256)
def _type(text):
    return dt.parse_type(text)


def spark_date_format(moment, pattern):
    """Format a UTC datetime with a Spark datetime pattern (yyyy-MM-dd HH:mm:ss.SSS...)."""
    out = []
    for match in _PATTERN.finditer(pattern):
        token = match.group(0)
        letter, width = token[0], len(token)
        if token.startswith("'"):
            out.append(token[1:-1] if width > 2 else "'")
        elif letter in ("y", "u"):
            out.append("%02d" % (moment.year % 100) if width == 2 else "%0*d" % (width, moment.year))
        elif letter in ("M", "L"):
            out.append(_MONTHS[moment.month - 1] if width >= 4 else
                       _MONTHS[moment.month - 1][:3] if width == 3 else
                       "%0*d" % (width, moment.month))
        elif letter == "d":
            out.append("%0*d" % (width, moment.day))
        elif letter == "D":
            out.append("%0*d" % (width, moment.timetuple().tm_yday))
        elif letter == "H":
            out.append("%0*d" % (width, moment.hour))
        elif letter == "h":
            out.append("%0*d" % (width, (moment.hour % 12) or 12))
        elif letter == "m":
            out.append("%0*d" % (width, moment.minute))
        elif letter == "s":
            out.append("%0*d" % (width, moment.second))
        elif letter == "S":
            out.append(("%06d" % moment.microsecond)[:width].ljust(width, "0"))
        elif letter == "a":
            out.append("AM" if moment.hour < 12 else "PM")
        elif letter == "E":
            day = _DAYS[moment.weekday()]
            out.append(day if width >= 4 else day[:3])
        elif letter in ("X", "x", "Z", "O", "V", "z"):
            out.append("Z" if letter == "X" else "UTC" if letter in ("V", "z")
                       else "GMT" if letter == "O" else "+00:00" if width >= 3 else "+0000")
        elif letter.isalpha():
            raise ValueError("[INVALID_DATETIME_PATTERN] Unrecognized datetime pattern letter "
                             "%r in %r. SQLSTATE: 22007" % (letter, pattern))
        else:
            out.append(token)
    return "".join(out)


class _DecimalSum:
    """sum() over DECIMAL values stored as REAL, computed exactly in decimal."""

    def __init__(self):
        self.total = None

    def step(self, value):
        if value is not None:
            number = Decimal(repr(float(value)))
            self.total = number if self.total is None else self.total + number

    def finalize(self):
        return None if self.total is None else float(self.total)


class SqlFunctions:
    """Registers the zb_* functions on a connection and keeps their last error."""

    def __init__(self, conn):
        self.error = None
        for name, arity, func in (
                ("zb_cast", 3, self._cast), ("zb_base64", 1, self._base64),
                ("zb_unbase64", 1, self._unbase64), ("zb_to_json", 2, self._to_json),
                ("zb_date_format", 3, self._date_format), ("zb_concat", -1, self._concat),
                ("zb_parse_json", 1, self._parse_json)):
            conn.create_function(name, arity, self._guard(func), deterministic=True)
        conn.create_aggregate("zb_decimal_sum", 1, _DecimalSum)

    def _guard(self, func):
        def guarded(*args):
            try:
                return func(*args)
            except (ValueError, TypeError, OverflowError, binascii.Error) as exc:
                self.error = exc
                raise
        return guarded

    @staticmethod
    def _cast(value, source, target):
        return dt.cast_value(value, _type(source), _type(target))

    @staticmethod
    def _base64(value):
        if value is None:
            return None
        data = value if isinstance(value, bytes) else str(value).encode()
        return base64.b64encode(data).decode()

    @staticmethod
    def _unbase64(value):
        return None if value is None else base64.b64decode(value)

    @staticmethod
    def _to_json(value, type_text):
        if value is None:
            return None
        dtype = _type(type_text)
        return json.dumps(dt.json_value(dtype, value), separators=(",", ":"))

    @staticmethod
    def _date_format(value, type_text, pattern):
        if value is None or pattern is None:
            return None
        dtype = _type(type_text)
        if dtype.name == "DATE":
            moment = datetime.datetime.combine(dt.days_to_date(value), datetime.time())
        elif dtype.name in ("TIMESTAMP", "TIMESTAMP_NTZ"):
            moment = dt.micros_to_datetime(value)
        else:
            raise ValueError("[DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE] date_format needs a "
                             "DATE or TIMESTAMP, not %s. SQLSTATE: 42K09" % dtype)
        return spark_date_format(moment, pattern)

    @staticmethod
    def _parse_json(value):
        if value is None:
            return None
        try:
            return json.dumps(json.loads(value), separators=(",", ":"))
        except ValueError:
            raise ValueError("[MALFORMED_RECORD_IN_PARSING] Malformed JSON: %r. SQLSTATE: 22032"
                             % value[:100]) from None

    @staticmethod
    def _concat(*values):
        if any(v is None for v in values):
            return None
        return "".join(str(v) for v in values)
