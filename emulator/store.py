"""The emulated lakehouse: Delta-typed tables kept in one SQLite database.

Each emulated table ``catalog.schema.table`` is one SQLite table whose name is
that lower-cased three-part name (quoted); the registry of Delta column types
lives in the ``_zb_tables`` table of the same file, so a database given with
``--db`` keeps tables, types and rows across emulator restarts.
"""

import json
import re
import sqlite3
import threading
from dataclasses import dataclass

from deltatypes import DeltaType, TypeParseError, admin_value, parse_type

NAME_PART = re.compile(r"^[A-Za-z0-9_]+$")
MAX_COLUMNS = 2000
REGISTRY_DDL = ("CREATE TABLE IF NOT EXISTS _zb_tables (name TEXT PRIMARY KEY, "
                "columns TEXT NOT NULL)")


class TableError(Exception):
    """A table operation failed; ``kind`` is not_found, exists or invalid."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Column:
    """One column of an emulated Delta table."""

    name: str
    dtype: DeltaType
    nullable: bool
    position: int  # 1-based, as information_schema.columns shows it

    def describe(self):
        return {"name": self.name, "type": self.dtype.text, "nullable": self.nullable}


class TableSchema:
    """An emulated Delta table: its name, its columns and its SQLite name."""

    def __init__(self, name, columns):
        self.name = name
        self.columns = columns
        self.by_name = {c.name.lower(): c for c in columns}
        self.catalog, self.schema, self.table = name.split(".")

    @property
    def sqlite_name(self):
        return quote_ident(self.name)

    def column(self, name):
        return self.by_name.get(name.lower())

    def quoted_name(self):
        """The name as Databricks prints it in messages: `cat`.`sch`.`tbl`."""
        return ".".join("`%s`" % part for part in self.name.split("."))

    def describe(self):
        return {"name": self.name, "columns": [c.describe() for c in self.columns]}


def quote_ident(name):
    """Quote a SQLite identifier."""
    return '"' + name.replace('"', '""') + '"'


def split_table_name(name):
    """Split and check a three-part table name; return the lower-cased parts."""
    parts = name.split(".") if isinstance(name, str) else []
    if len(parts) != 3 or not all(NAME_PART.match(p) for p in parts):
        raise TableError("invalid", "table name %r must be catalog.schema.table, each part "
                         "ASCII letters, digits or underscores" % (name,))
    return [p.lower() for p in parts]


def normalize_table_name(name):
    return ".".join(split_table_name(name))


def build_columns(specs):
    """Turn [{name, type, nullable}] into Columns, checking names, types, count."""
    if not isinstance(specs, list) or not specs:
        raise TableError("invalid", "a table needs at least one column")
    if len(specs) > MAX_COLUMNS:
        raise TableError("invalid", "a table has at most %d columns" % MAX_COLUMNS)
    columns, seen = [], set()
    for position, spec in enumerate(specs, 1):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise TableError("invalid", "column %d needs a name" % position)
        name = spec["name"]
        # Delta column mapping allows any name; ZeroBus itself still refuses names
        # that are not letters, digits and _ (its descriptor fields must match).
        if not name or len(name) > 255 or any(ord(ch) < 0x20 for ch in name):
            raise TableError("invalid", "column name %r: 1 to 255 characters, no control "
                             "characters" % name)
        if name.lower() in seen:
            raise TableError("invalid", "duplicate column name %r" % name)
        seen.add(name.lower())
        try:
            dtype = parse_type(str(spec.get("type", "")))
        except TypeParseError as exc:
            raise TableError("invalid", "column %s: %s" % (name, exc)) from None
        if dtype.name == "VOID":
            raise TableError("invalid", "column %s: VOID is not a column type" % name)
        columns.append(Column(name, dtype, bool(spec.get("nullable", True)), position))
    return columns


class Store:
    """The SQLite database holding every emulated table and the type registry."""

    def __init__(self, path):
        self.path = path
        self._lock = threading.RLock()
        self._conn = self.connect()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(REGISTRY_DDL)
        self._conn.commit()
        self._tables = {}
        for name, columns in self._conn.execute("SELECT name, columns FROM _zb_tables"):
            self._tables[name] = TableSchema(name, build_columns(json.loads(columns)))

    def connect(self):
        """A new connection to the store (one per SQL statement, one for writes)."""
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False,
                               isolation_level=None)
        conn.execute("PRAGMA case_sensitive_like = ON")
        return conn

    # ------------------------------------------------------------ registry

    def get(self, name):
        """The TableSchema for a three-part name, or None."""
        try:
            key = normalize_table_name(name)
        except TableError:
            return None
        with self._lock:
            return self._tables.get(key)

    def tables(self):
        with self._lock:
            return sorted(self._tables.values(), key=lambda t: t.name)

    def create_table(self, name, column_specs, if_not_exists=False):
        """Create a table; return (TableSchema, created?)."""
        key = normalize_table_name(name)
        columns = build_columns(column_specs)
        with self._lock:
            if key in self._tables:
                if if_not_exists:
                    return self._tables[key], False
                raise TableError("exists", "table %s already exists" % key)
            table = TableSchema(key, columns)
            ddl = "CREATE TABLE %s (%s)" % (table.sqlite_name, ", ".join(
                "%s %s" % (quote_ident(c.name), c.dtype.affinity) for c in columns))
            with self._transaction() as conn:
                conn.execute(ddl)
                conn.execute("INSERT INTO _zb_tables (name, columns) VALUES (?, ?)",
                             (key, json.dumps([c.describe() for c in columns])))
            self._tables[key] = table
            return table, True

    def drop_table(self, name, if_exists=False):
        """Drop a table; return whether it existed."""
        key = normalize_table_name(name)
        with self._lock:
            table = self._tables.get(key)
            if table is None:
                if if_exists:
                    return False
                raise TableError("not_found", "table %s does not exist" % key)
            with self._transaction() as conn:
                conn.execute("DROP TABLE %s" % table.sqlite_name)
                conn.execute("DELETE FROM _zb_tables WHERE name = ?", (key,))
            del self._tables[key]
            return True

    def drop_all(self):
        for table in self.tables():
            self.drop_table(table.name, if_exists=True)

    # ------------------------------------------------------------ rows

    def insert_rows(self, table, column_names, rows):
        """Insert stored-form rows in one transaction."""
        sql = "INSERT INTO %s (%s) VALUES (%s)" % (
            table.sqlite_name, ", ".join(quote_ident(c) for c in column_names),
            ", ".join("?" * len(column_names)))
        with self._lock, self._transaction() as conn:
            conn.executemany(sql, rows)

    def rows(self, table):
        """All rows in insertion order, as control-API JSON values."""
        with self._lock:
            cursor = self._conn.execute("SELECT %s FROM %s ORDER BY rowid" % (
                ", ".join(quote_ident(c.name) for c in table.columns), table.sqlite_name))
            data = cursor.fetchall()
        return [[admin_value(c.dtype, v) for c, v in zip(table.columns, row)] for row in data]

    def count(self, table):
        with self._lock:
            return self._conn.execute("SELECT count(*) FROM %s" % table.sqlite_name).fetchone()[0]

    def raw_sql(self, sql):
        """Run raw SQLite SQL (control API); return (column names, rows)."""
        with self._lock:
            cursor = self._conn.execute(sql)
            names = [d[0] for d in cursor.description or ()]
            data = cursor.fetchall() if cursor.description else []
        return names, data

    def _transaction(self):
        return _Transaction(self._conn)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (or ROLLBACK on error) on an autocommit connection."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
