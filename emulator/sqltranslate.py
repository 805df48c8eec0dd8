"""Databricks SQL → SQLite: parsing, name resolution, typing and execution.

Statements are parsed with sqlglot's Databricks dialect, then walked bottom-up:
every expression is resolved against the emulated tables, given its Databricks
type (the manifest's column types come from there) and rewritten where SQLite
differs (casts, ``/``, ILIKE, LIKE escapes, temporal comparisons, functions
implemented in Python in ``sqlfunctions``). DDL (CREATE/DROP/TRUNCATE TABLE)
is parsed here directly, because the column types are Databricks' own.

Errors are SqlError with Databricks-style messages ("[ERROR_CLASS] ... SQLSTATE").
"""

import re
import sqlite3
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.dialects.databricks import Databricks
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

import deltatypes as dt
from deltatypes import DeltaType, TypeParseError, ValueRejected
from sqlfunctions import SqlFunctions
from store import TableError, quote_ident

DEFAULT_CATALOG = "main"
DEFAULT_SCHEMA = "default"
INFO_COLUMNS_TABLE = "zb_information_schema_columns"
INFO_COLUMNS = [  # (name, type) of <catalog>.information_schema.columns
    ("TABLE_CATALOG", dt.STRING), ("TABLE_SCHEMA", dt.STRING), ("TABLE_NAME", dt.STRING),
    ("COLUMN_NAME", dt.STRING), ("ORDINAL_POSITION", dt.INT), ("IS_NULLABLE", dt.STRING),
    ("FULL_DATA_TYPE", dt.STRING), ("DATA_TYPE", dt.STRING),
    ("CHARACTER_MAXIMUM_LENGTH", dt.BIGINT), ("NUMERIC_PRECISION", dt.INT),
    ("NUMERIC_PRECISION_RADIX", dt.INT), ("NUMERIC_SCALE", dt.INT),
]
BITS = {"TINYINT": 8, "SMALLINT": 16, "INT": 32, "BIGINT": 64, "FLOAT": 24, "DOUBLE": 53}
COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ)
BOOLEAN_NODES = (exp.And, exp.Or, exp.Not, exp.Is, exp.Exists, exp.Between, exp.In,
                 exp.Like, exp.ILike, exp.Escape) + COMPARISONS
ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Mod)
NAME = r"(?:`(?:[^`]|``)+`|[A-Za-z0-9_]+)"
TABLE_NAME = r"(%s(?:\s*\.\s*%s){0,2})" % (NAME, NAME)
CREATE_RE = re.compile(r"^\s*CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?%s\s*\((.*)\)"
                       r"(?:\s+USING\s+DELTA)?\s*;?\s*$" % TABLE_NAME, re.I | re.S)
DROP_RE = re.compile(r"^\s*DROP\s+TABLE\s+(IF\s+EXISTS\s+)?%s\s*;?\s*$" % TABLE_NAME, re.I)
TRUNCATE_RE = re.compile(r"^\s*TRUNCATE\s+TABLE\s+%s\s*;?\s*$" % TABLE_NAME, re.I)
COLUMN_DEF_RE = re.compile(r"^\s*(%s)\s+(.+?)(\s+NOT\s+NULL)?(?:\s+COMMENT\s+'(?:[^'\\]|\\.)*')?"
                           r"\s*$" % NAME, re.I | re.S)


class SqlError(Exception):
    """A statement failed; becomes status.state FAILED with this error."""

    def __init__(self, message, error_code="BAD_REQUEST"):
        super().__init__(message)
        self.message = message
        self.error_code = error_code


@dataclass
class QueryResult:
    """Columns [(name, DeltaType)] and rows of stored values."""

    columns: list
    rows: list


class _Parser(Databricks.Parser):
    """Databricks' parser, keeping date_format's pattern as written."""

    FUNCTIONS = {**Databricks.Parser.FUNCTIONS,
                 "DATE_FORMAT": lambda args: exp.Anonymous(this="date_format", expressions=args)}


class _Tokenizer(Databricks.Tokenizer):
    """Databricks' tokenizer; sqlglot 10.6 does not know TIMESTAMP_NTZ, so it is read as
    DATETIME (which Databricks itself does not have) and mapped back in _datatype."""

    KEYWORDS = {**Databricks.Tokenizer.KEYWORDS, "TIMESTAMP_NTZ": TokenType.DATETIME}


class EmulatorDialect(Databricks):
    Parser = _Parser
    Tokenizer = _Tokenizer


def unsupported(what):
    return SqlError("[EMULATOR_UNSUPPORTED] %s is not supported by the zerobus emulator's SQL "
                    "subset. SQLSTATE: 0A000" % what)


def table_not_found(parts):
    return SqlError("[TABLE_OR_VIEW_NOT_FOUND] The table or view %s cannot be found. Verify the "
                    "spelling and correctness of the schema and catalog.\nIf you did not qualify "
                    "the name with a schema, verify the current_schema() output, or qualify the "
                    "name with the correct schema and catalog. SQLSTATE: 42P01"
                    % ".".join("`%s`" % p for p in parts))


def parse_error(detail):
    return SqlError("[PARSE_SYNTAX_ERROR] Syntax error: %s. SQLSTATE: 42601" % detail)


def _unquote(name):
    name = name.strip()
    return name[1:-1].replace("``", "`") if name.startswith("`") else name


def _split_name(text):
    return [_unquote(p) for p in re.findall(NAME, text)]


def sqlite_ident(name):
    """A quoted SQLite identifier node. sqlglot does not escape quotes in names it
    prints, so the escaping is done here: a double quote inside is doubled."""
    return exp.Identifier(this=name.replace('"', '""'), quoted=True)


# Lexemes that matter for finding identifiers: backtick identifiers, strings (with
# backslash escapes), comments, and runs of anything else.
_LEXEME = re.compile(r"`(?:[^`]|``)*`|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
                     r"|--[^\n]*|/\*.*?\*/|[^`'\"/-]+|.", re.S)
_PLAIN_IDENT = re.compile(r"^`[A-Za-z0-9_ ]*`$")


def protect_identifiers(sql):
    """Replace backtick identifiers holding anything but letters, digits, spaces and _
    (sqlglot 10.6 mis-tokenizes doubled backticks) with placeholder names; return
    (sql, {placeholder: original name}). Strings and comments are left alone."""
    names, out = {}, []
    for match in _LEXEME.finditer(sql):
        token = match.group(0)
        if token.startswith("`") and len(token) >= 2 and token.endswith("`") \
                and not _PLAIN_IDENT.match(token):
            placeholder = "zb_ident_%d" % len(names)
            names[placeholder] = token[1:-1].replace("``", "`")
            token = "`%s`" % placeholder
        out.append(token)
    return "".join(out), names


def restore_identifiers(tree, names):
    """Put the original names back into a tree parsed from protect_identifiers' SQL."""
    if names:
        for node in tree.find_all(exp.Identifier):
            if node.name in names:
                node.set("this", names[node.name])


def call(name, *args):
    """A call of one of our SQLite functions."""
    return exp.Anonymous(this=name, expressions=list(args))


def type_literal(dtype):
    return exp.Literal.string(dtype.text)


class Executor:
    """Runs one statement on a SQLite connection of the store."""

    def __init__(self, store, conn, catalog=None, schema=None, parameters=None):
        self.store = store
        self.conn = conn
        self.catalog = (catalog or DEFAULT_CATALOG).lower()
        self.schema = (schema or DEFAULT_SCHEMA).lower()
        self.parameters = parameters or {}  # name -> (value text or None, DeltaType)
        self.bindings = {}
        self.functions = SqlFunctions(conn)
        self._types = {}
        self._info_schema_loaded = set()

    # ------------------------------------------------------------ entry point

    def execute(self, sql):
        """Run ``sql``; return a QueryResult."""
        for pattern, handler in ((CREATE_RE, self._create), (DROP_RE, self._drop),
                                 (TRUNCATE_RE, self._truncate)):
            match = pattern.match(sql)
            if match:
                return handler(match)
        sql, names = protect_identifiers(sql)
        try:
            statements = sqlglot.parse(sql, read=EmulatorDialect)
        except (ParseError, TokenError) as exc:
            raise parse_error(str(exc).splitlines()[0]) from None
        statements = [s for s in statements if s is not None]
        if len(statements) != 1:
            raise parse_error("expected exactly one statement")
        tree = statements[0]
        restore_identifiers(tree, names)
        if isinstance(tree, exp.Select):
            sql_text, columns = self._select(tree)
            return QueryResult(columns, self._run(sql_text).fetchall())
        if isinstance(tree, exp.Delete):
            return self._delete(tree)
        if isinstance(tree, exp.Insert):
            return self._insert(tree)
        if isinstance(tree, exp.Drop) or (isinstance(tree, exp.Command)
                                          and str(tree.this).upper() in ("CREATE", "TRUNCATE")):
            raise parse_error("unsupported form of %s" % str(tree.this or "DROP").upper())
        raise unsupported("The statement %s" % type(tree).__name__.upper())

    def _run(self, sql_text, bindings=None):
        self.functions.error = None
        try:
            return self.conn.execute(sql_text, self.bindings if bindings is None else bindings)
        except sqlite3.OperationalError as exc:
            if str(exc) == "interrupted":
                raise
            if self.functions.error is not None:
                raise SqlError(str(self.functions.error)) from None
            raise SqlError("[INTERNAL_ERROR] The emulator's SQLite backend failed: %s "
                           "(translated SQL: %s)" % (exc, sql_text), "INTERNAL_ERROR") from None
        except sqlite3.Error as exc:
            raise SqlError("[INTERNAL_ERROR] %s" % exc, "INTERNAL_ERROR") from None

    # ------------------------------------------------------------ DDL

    def _resolve_name(self, parts):
        parts = [p.lower() for p in parts]
        if len(parts) == 1:
            parts = [self.catalog, self.schema] + parts
        elif len(parts) == 2:
            parts = [self.catalog] + parts
        return parts

    def _create(self, match):
        parts = self._resolve_name(_split_name(match.group(2)))
        specs = []
        for definition in _split_top_level(match.group(3)):
            column = COLUMN_DEF_RE.match(definition)
            if not column:
                raise parse_error("cannot parse column definition %r" % definition.strip())
            specs.append({"name": _unquote(column.group(1)), "type": column.group(2).strip(),
                          "nullable": column.group(3) is None})
        try:
            self.store.create_table(".".join(parts), specs, if_not_exists=bool(match.group(1)))
        except TableError as exc:
            if exc.kind == "exists":
                raise SqlError("[TABLE_OR_VIEW_ALREADY_EXISTS] Cannot create table or view %s "
                               "because it already exists. SQLSTATE: 42P07"
                               % ".".join("`%s`" % p for p in parts)) from None
            raise SqlError("[INVALID_TABLE_DEFINITION] %s" % exc) from None
        return QueryResult([], [])

    def _drop(self, match):
        parts = self._resolve_name(_split_name(match.group(2)))
        try:
            self.store.drop_table(".".join(parts), if_exists=bool(match.group(1)))
        except TableError:
            raise table_not_found(parts) from None
        return QueryResult([], [])

    def _truncate(self, match):
        table = self._table(_split_name(match.group(1)))
        self._run("DELETE FROM %s" % table.sqlite_name, {})
        return QueryResult([], [])

    def _table(self, parts):
        parts = self._resolve_name(parts)
        table = self.store.get(".".join(parts))
        if table is None:
            raise table_not_found(parts)
        return table

    # ------------------------------------------------------------ DML

    def _delete(self, tree):
        table = self._table(_table_parts(tree.this))
        scope = Scope()
        scope.add_source(None, {c.name.lower(): (c.name, c.dtype) for c in table.columns})
        where = tree.args.get("where")
        sql_text = "DELETE FROM %s" % table.sqlite_name
        if where is not None:
            node, _ = self._expr(where.this, scope)
            sql_text += " WHERE " + node.sql(dialect="sqlite")
        cursor = self._run(sql_text)
        return QueryResult([("num_affected_rows", dt.BIGINT)], [(cursor.rowcount,)])

    def _insert(self, tree):
        target = tree.this
        names = None
        if isinstance(target, exp.Schema):
            names = [c.name for c in target.expressions]
            target = target.this
        table = self._table(_table_parts(target))
        if names is None:
            columns = table.columns
        else:
            columns = []
            for name in names:
                column = table.column(name)
                if column is None:
                    raise _unresolved_column(name, [c.name for c in table.columns])
                columns.append(column)
        source = tree.expression
        if isinstance(source, exp.Values):
            selects = [exp.Select(expressions=list(row.expressions)) for row in source.expressions]
        elif isinstance(source, exp.Select):
            selects = [source]
        else:
            raise unsupported("INSERT from %s" % type(source).__name__)
        rows = []
        for select in selects:
            sql_text, types = self._select(select)
            if len(types) != len(columns):
                raise SqlError("[INSERT_COLUMN_ARITY_MISMATCH] Cannot write to %s: the table "
                               "has %d target columns but the inserted data has %d. "
                               "SQLSTATE: 21S01" % (table.quoted_name(), len(columns),
                                                    len(types)))
            for raw in self._run(sql_text).fetchall():
                rows.append(self._assign(table, columns, types, raw))
        others = [c for c in table.columns if c not in columns and not c.nullable]
        if others and rows:
            raise _not_null(others[0].name)
        self.store.insert_rows(table, [c.name for c in columns], rows)
        return QueryResult([("num_affected_rows", dt.BIGINT), ("num_inserted_rows", dt.BIGINT)],
                           [(len(rows), len(rows))])

    @staticmethod
    def _assign(table, columns, types, raw):
        row = []
        for column, (_, source), value in zip(columns, types, raw):
            if value is None and not column.nullable:
                raise _not_null(column.name)
            try:
                row.append(dt.cast_value(value, source, column.dtype))
            except ValueRejected as exc:
                raise SqlError(str(exc)) from None
        return row

    # ------------------------------------------------------------ SELECT

    def _select(self, tree, outer=None):
        """Translate a SELECT; return (SQLite text, [(name, DeltaType)])."""
        for key in ("with", "laterals", "windows"):
            if tree.args.get(key):
                raise unsupported(key.upper())
        scope = Scope(outer)
        sources = []
        from_ = tree.args.get("from")
        if from_ is not None:
            sources.extend(from_.expressions)
        for join in tree.args.get("joins") or []:
            sources.append(join.this)
        for source in sources:
            self._bind_source(source, scope)
        for join in tree.args.get("joins") or []:
            if join.args.get("on") is not None:
                join.set("on", self._expr(join.args["on"], scope)[0])
            if join.args.get("using"):
                raise unsupported("JOIN ... USING")
        outputs, columns = [], []
        for item in tree.expressions:
            for node in self._expand_star(item, scope):
                name = node.alias if isinstance(node, exp.Alias) else (
                    node.name if isinstance(node, exp.Column) else node.sql(dialect="databricks"))
                inner = node.this if isinstance(node, exp.Alias) else node
                translated, dtype = self._expr(inner, scope)
                outputs.append(exp.Alias(this=translated, alias=exp.Identifier(
                    this="c%d" % len(outputs), quoted=True)))
                columns.append((name, dtype))
                scope.output_aliases[name.lower()] = dtype
        tree.set("expressions", outputs)
        aliases = {name.lower(): "c%d" % i for i, (name, _) in enumerate(columns)}
        scope.alias_targets = aliases
        if tree.args.get("where") is not None:
            tree.args["where"].set("this", self._expr(tree.args["where"].this, scope)[0])
        group = tree.args.get("group")
        if group is not None:
            group.set("expressions", [self._group_item(e, scope, columns)
                                      for e in group.expressions])
        if tree.args.get("having") is not None:
            tree.args["having"].set("this", self._expr(tree.args["having"].this, scope,
                                                       allow_alias=True)[0])
        order = tree.args.get("order")
        if order is not None:
            for ordered in order.expressions:
                ordered.set("this", self._group_item(ordered.this, scope, columns))
        for key in ("limit", "offset"):
            clause = tree.args.get(key)
            if clause is not None:
                clause.set("expression", self._expr(clause.expression, scope)[0])
        if tree.args.get("offset") is not None and tree.args.get("limit") is None:
            tree.set("limit", exp.Limit(expression=exp.Literal.number(-1)))  # SQLite needs one
        return tree.sql(dialect="sqlite"), columns

    def _group_item(self, node, scope, columns):
        """A GROUP BY / ORDER BY item: a position, an output alias or an expression."""
        if isinstance(node, exp.Literal) and not node.is_string:
            position = int(node.this)
            if not 1 <= position <= len(columns):
                raise SqlError("[ORDER_BY_POS_OUT_OF_RANGE] position %d is not in the select "
                               "list (1..%d). SQLSTATE: 42805" % (position, len(columns)))
            return node
        return self._expr(node, scope, allow_alias=True)[0]

    def _bind_source(self, source, scope):
        alias = source.alias
        if isinstance(source, exp.Table):
            parts = _table_parts(source)
            if len(parts) == 3 and parts[1].lower() == "information_schema" or \
                    len(parts) == 2 and parts[0].lower() == "information_schema":
                columns = self._information_schema(parts)
                sqlite_name = INFO_COLUMNS_TABLE
            else:
                table = self._table(parts)
                columns = {c.name.lower(): (c.name, c.dtype) for c in table.columns}
                sqlite_name = table.name
            alias = alias or parts[-1]
            replacement = exp.Table(this=sqlite_ident(sqlite_name),
                                    alias=exp.TableAlias(this=sqlite_ident(alias)))
        elif isinstance(source, exp.Subquery) and isinstance(source.this, exp.Select):
            if not alias:
                raise parse_error("a subquery in FROM needs an alias")
            _, outputs = self._select(source.this, scope.outer)
            columns = {n.lower(): ("c%d" % i, t) for i, (n, t) in enumerate(outputs)}
            replacement = exp.Subquery(this=source.this,
                                       alias=exp.TableAlias(this=sqlite_ident(alias)))
        else:
            raise unsupported("FROM %s" % type(source).__name__)
        scope.add_source(alias.lower(), columns, alias)
        source.replace(replacement)

    def _information_schema(self, parts):
        if parts[-1].lower() != "columns":
            raise table_not_found(self._resolve_name(parts))
        catalog = parts[0].lower() if len(parts) == 3 else self.catalog
        if catalog not in self._info_schema_loaded:
            self._load_information_schema(catalog)
        return {name.lower(): (name, dtype) for name, dtype in INFO_COLUMNS}

    def _load_information_schema(self, catalog):
        """Fill a TEMP table with <catalog>.information_schema.columns."""
        names = ", ".join(quote_ident(n) for n, _ in INFO_COLUMNS)
        self.conn.execute("CREATE TEMP TABLE IF NOT EXISTS %s (%s)" % (INFO_COLUMNS_TABLE, names))
        rows = []
        for table in self.store.tables():
            if table.catalog != catalog:
                continue
            for c in table.columns:
                kind = c.dtype.name
                precision = c.dtype.precision if kind == "DECIMAL" else BITS.get(kind)
                rows.append((table.catalog, table.schema, table.table, c.name, c.position,
                             "YES" if c.nullable else "NO", c.dtype.text.lower(), kind,
                             c.dtype.length, precision,
                             10 if kind == "DECIMAL" else (2 if kind in BITS else None),
                             c.dtype.scale if kind == "DECIMAL" else (
                                 0 if c.dtype.is_integral else None)))
        self.conn.executemany("INSERT INTO %s VALUES (%s)" % (
            INFO_COLUMNS_TABLE, ", ".join("?" * len(INFO_COLUMNS))), rows)
        self._info_schema_loaded.add(catalog)

    def _expand_star(self, item, scope):
        if isinstance(item, exp.Star):
            return [exp.Column(this=sqlite_ident(name), table=sqlite_ident(alias))
                    for alias, name, _ in scope.all_columns()]
        if isinstance(item, exp.Column) and isinstance(item.this, exp.Star):
            qualifier = item.table.lower()
            if qualifier not in scope.sources:
                raise SqlError("[CANNOT_RESOLVE_STAR_EXPAND] Cannot resolve %s.* given input "
                               "columns. SQLSTATE: 42704" % item.table)
            return [exp.Column(this=sqlite_ident(name), table=sqlite_ident(alias))
                    for alias, name, _ in scope.all_columns() if alias.lower() == qualifier]
        return [item]

    # ------------------------------------------------------------ expressions

    def _expr(self, node, scope, allow_alias=False):
        """Translate one expression bottom-up; return (new node, DeltaType).
        The type is also remembered for the node, so parents can coerce it."""
        new, dtype = self._translate(node, scope, allow_alias)
        self._types[id(new)] = dtype
        return new, dtype

    def _translate(self, node, scope, allow_alias):
        if isinstance(node, exp.Column):
            return self._column(node, scope, allow_alias)
        if isinstance(node, exp.Subquery) or isinstance(node, exp.Select):
            select = node.this if isinstance(node, exp.Subquery) else node
            _, outputs = self._select(select, scope)
            if len(outputs) != 1:
                raise SqlError("[INVALID_SUBQUERY_EXPRESSION] a scalar subquery must return "
                               "one column. SQLSTATE: 42823")
            return exp.Subquery(this=select), outputs[0][1]
        if isinstance(node, exp.Placeholder):
            return self._placeholder(node)
        if isinstance(node, exp.Literal):
            return node, _literal_type(node)
        if isinstance(node, exp.Null):
            return node, dt.VOID
        if isinstance(node, exp.Boolean):
            return exp.Literal.number(1 if node.this else 0), dt.BOOLEAN
        if isinstance(node, (exp.Star, exp.DataType)):
            return node, dt.VOID
        if isinstance(node, (exp.Cast, exp.TryCast)):
            inner, source = self._expr(node.this, scope, allow_alias)
            return _cast(inner, source, _datatype(node.args["to"]))
        if isinstance(node, exp.Anonymous):
            return self._function(node, scope, allow_alias)
        types = []
        for key, value in list(node.args.items()):
            if isinstance(value, exp.Expression):
                new, dtype = self._expr(value, scope, allow_alias)
                node.set(key, new)
                types.append(dtype)
            elif isinstance(value, list) and value and isinstance(value[0], exp.Expression):
                pairs = [self._expr(v, scope, allow_alias) for v in value]
                node.set(key, [p[0] for p in pairs])
                types.extend(p[1] for p in pairs)
        return self._typed(node, types)

    def _column(self, node, scope, allow_alias):
        if node.args.get("db") or node.args.get("catalog"):
            raise unsupported("a column qualified with a schema or catalog")
        found = scope.lookup(node.name, node.table)
        if found is None:
            if allow_alias and not node.table and node.name.lower() in scope.alias_targets:
                return (exp.Column(this=exp.Identifier(
                    this=scope.alias_targets[node.name.lower()], quoted=True)),
                    scope.output_aliases[node.name.lower()])
            raise _unresolved_column(node.sql(dialect="databricks"), scope.column_names())
        alias, name, dtype = found
        column = exp.Column(this=sqlite_ident(name))
        if alias is not None:
            column.set("table", sqlite_ident(alias))
        return column, dtype

    def _placeholder(self, node):
        name = node.name
        if not name or name not in self.parameters:
            raise SqlError("[UNBOUND_SQL_PARAMETER] Found the unbound parameter: %s. Please, fix "
                           "`args` and provide a mapping of the parameter to either a SQL "
                           "literal or collection constructor functions such as `map()`, "
                           "`array()`, `struct()`. SQLSTATE: 42P02" % (name or "?"))
        value, dtype = self.parameters[name]
        self.bindings[name] = value
        param = exp.Placeholder(this=name)
        if dtype.name == "STRING":
            return param, dt.STRING
        return call("zb_cast", param, type_literal(dt.STRING), type_literal(dtype)), dtype

    def _function(self, node, scope, allow_alias):
        name = node.name.lower()
        args = [self._expr(a, scope, allow_alias) for a in node.expressions]
        if name in ("base64", "unbase64", "to_json"):
            _arity(name, args, 1)
            if name == "base64":
                return call("zb_base64", args[0][0]), dt.STRING
            if name == "unbase64":
                return call("zb_unbase64", args[0][0]), DeltaType("BINARY")
            return call("zb_to_json", args[0][0], type_literal(args[0][1])), dt.STRING
        if name == "from_json":
            _arity(name, args, 2)
            (value, _), (schema, _) = args
            if not (isinstance(schema, exp.Literal) and schema.is_string):
                raise SqlError("[INVALID_SCHEMA.NON_STRING_LITERAL] The input schema of from_json "
                               "must be a string literal. SQLSTATE: 42K07")
            try:
                target = dt.parse_type(schema.this)
            except TypeParseError as exc:
                raise SqlError("[PARSE_SYNTAX_ERROR] Syntax error in the schema: %s. SQLSTATE: "
                               "42601" % exc) from None
            return call("zb_cast", value, type_literal(dt.STRING), type_literal(target)), target
        if name == "parse_json":
            _arity(name, args, 1)
            return call("zb_parse_json", args[0][0]), DeltaType("VARIANT")
        if name == "date_format":
            _arity(name, args, 2)
            (value, vtype), (fmt, _) = args
            if vtype.is_string:
                value, vtype = _cast(value, vtype, dt.TIMESTAMP)
            return call("zb_date_format", value, type_literal(vtype), fmt), dt.STRING
        raise SqlError("[UNRESOLVED_ROUTINE] Cannot resolve routine `%s` on search path "
                       "[`system`.`builtin`, `system`.`session`]. SQLSTATE: 42883" % node.name)

    def _typed(self, node, types):
        """Type (and rewrite) a node whose children are already translated."""
        if isinstance(node, (exp.Paren, exp.Alias, exp.Ordered)):
            return node, types[0]
        if isinstance(node, exp.Count):
            return node, dt.BIGINT
        if isinstance(node, exp.Sum):
            arg = types[0]
            if arg.name == "DECIMAL":
                return call("zb_decimal_sum", node.this), dt.decimal_type(arg.precision + 10,
                                                                           arg.scale)
            return node, dt.BIGINT if arg.is_integral or arg.name == "BOOLEAN" else dt.DOUBLE
        if isinstance(node, exp.Avg):
            return node, dt.DOUBLE
        if isinstance(node, (exp.Min, exp.Max, exp.Abs, exp.Round, exp.Neg)):
            return node, types[0]
        if isinstance(node, (exp.Lower, exp.Upper)):
            return node, dt.STRING
        if isinstance(node, exp.Length):
            return node, dt.INT
        if isinstance(node, (exp.Coalesce, exp.IfNull)):
            known = [t for t in types if t.name != "VOID"]
            return node, known[0] if known else dt.VOID
        if isinstance(node, exp.Concat):
            return (call("zb_concat", *[call("zb_cast", e, type_literal(t), type_literal(
                dt.STRING)) for e, t in zip(node.expressions, types)]), dt.STRING)
        if isinstance(node, exp.DPipe):
            parts = [node.this, node.expression]
            return (call("zb_concat", *[call("zb_cast", e, type_literal(t), type_literal(
                dt.STRING)) for e, t in zip(parts, types)]), dt.STRING)
        if isinstance(node, exp.Div):
            return exp.Div(this=exp.Mul(this=exp.Literal.number("1.0"), expression=node.this),
                           expression=node.expression), dt.DOUBLE
        if isinstance(node, exp.IntDiv):
            return node, dt.BIGINT
        if isinstance(node, ARITHMETIC):
            return node, _wider(types)
        if isinstance(node, COMPARISONS + (exp.Between,)):
            self._coerce(node, ["this", "expression", "low", "high"])
            return node, dt.BOOLEAN
        if isinstance(node, exp.In):
            if node.args.get("query") is not None:
                return node, dt.BOOLEAN
            self._coerce(node, ["this"], list_key="expressions")
            return node, dt.BOOLEAN
        if isinstance(node, exp.ILike):
            like = exp.Like(this=exp.Lower(this=node.this), expression=exp.Lower(
                this=node.expression))
            return _escaped(like, node), dt.BOOLEAN
        if isinstance(node, exp.Like):
            return _escaped(node, node), dt.BOOLEAN
        if isinstance(node, BOOLEAN_NODES):
            return node, dt.BOOLEAN
        if isinstance(node, exp.Case):  # types: each WHEN's result type, then ELSE's
            return node, next((t for t in types if t.name != "VOID"), dt.VOID)
        if isinstance(node, exp.If):  # types: condition, result(, else)
            return node, types[1]
        if isinstance(node, (exp.Distinct, exp.Tuple)):
            return node, types[0] if types else dt.VOID
        raise unsupported("The expression %s (%s)" % (node.sql(dialect="databricks"),
                                                      type(node).__name__))

    def _coerce(self, node, keys, list_key=None):
        """Databricks' implicit casts in comparisons: a STRING compared with a
        numeric, boolean or temporal expression is cast to that type."""
        items = [(key, node.args.get(key)) for key in keys if node.args.get(key) is not None]
        items += [(list_key, e) for e in node.args.get(list_key) or []] if list_key else []
        typed = [(key, e, self._node_type(e)) for key, e in items]
        target = next((t for _, _, t in typed if t.name in dt.NUMERIC or t.name in (
            "BOOLEAN", "DATE", "TIMESTAMP", "TIMESTAMP_NTZ")), None)
        if target is None:
            return
        # a DATE compared with a timestamp is that day's midnight
        target = next((t for _, _, t in typed if t.name in ("TIMESTAMP", "TIMESTAMP_NTZ")),
                      target) if target.name == "DATE" else target
        replaced = []
        for key, expression, dtype in typed:
            if dtype.is_string or (dtype.name == "DATE" and target.name != "DATE"):
                expression = call("zb_cast", expression, type_literal(dtype), type_literal(target))
            if key == list_key:
                replaced.append(expression)
            else:
                node.set(key, expression)
        if list_key:
            node.set(list_key, replaced)

    def _node_type(self, node):
        """The type _expr recorded for a translated node."""
        return self._types.get(id(node), dt.VOID)


class Scope:
    """Names visible in a SELECT: its sources' columns and its output aliases."""

    def __init__(self, outer=None):
        self.outer = outer
        self.sources = {}  # alias (lower) or None -> {column lower: (name, DeltaType)}
        self.display = {}  # alias (lower) -> alias as written
        self.output_aliases = {}
        self.alias_targets = {}

    def add_source(self, key, columns, display=None):
        if key in self.sources:
            raise SqlError("[AMBIGUOUS_REFERENCE] the table alias `%s` is used twice. "
                           "SQLSTATE: 42704" % display)
        self.sources[key] = columns
        self.display[key] = display

    def lookup(self, name, qualifier):
        """(alias, column name, DeltaType) or None; raises on ambiguity."""
        name = name.lower()
        if qualifier:
            columns = self.sources.get(qualifier.lower())
            if columns is not None and name in columns:
                return (self.display[qualifier.lower()],) + columns[name]
        else:
            hits = [(self.display[k],) + cols[name] for k, cols in self.sources.items()
                    if name in cols]
            if len(hits) > 1:
                raise SqlError("[AMBIGUOUS_REFERENCE] Reference `%s` is ambiguous. "
                               "SQLSTATE: 42704" % name)
            if hits:
                return hits[0]
        return self.outer.lookup(name, qualifier) if self.outer else None

    def all_columns(self):
        return [(self.display[k], n, t) for k, cols in self.sources.items()
                for n, t in cols.values()]

    def column_names(self):
        return ["`%s`.`%s`" % (a, n) if a else "`%s`" % n for a, n, _ in self.all_columns()]


def _unresolved_column(name, candidates):
    return SqlError("[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column, variable, or function "
                    "parameter with name %s cannot be resolved. Did you mean one of the "
                    "following? [%s]. SQLSTATE: 42703" % (
                        name if name.startswith("`") else "`%s`" % name,
                        ", ".join(candidates[:5])))


def _not_null(column):
    return SqlError("[DELTA_NOT_NULL_CONSTRAINT_VIOLATED] NOT NULL constraint violated for "
                    "column: %s. SQLSTATE: 23502" % column)


def _arity(name, args, count):
    if len(args) != count:
        raise SqlError("[WRONG_NUM_ARGS.WITHOUT_SUGGESTION] The `%s` requires %d parameters but "
                       "the actual number is %d. SQLSTATE: 42605" % (name, count, len(args)))


def _table_parts(table):
    if not isinstance(table, exp.Table):
        raise unsupported("this table reference")
    return [part.name for part in (table.args.get(k) for k in ("catalog", "db", "this")) if part]


def _datatype(node):
    if node.this == exp.DataType.Type.DATETIME:
        return dt.parse_type("TIMESTAMP_NTZ")
    try:
        return dt.parse_type(node.sql(dialect="databricks"))
    except TypeParseError as exc:
        raise unsupported("the data type %s (%s)" % (node.sql(dialect="databricks"), exc))


def _literal_type(node):
    if node.is_string:
        return dt.STRING
    text = node.this
    if re.match(r"^\d+$", text):
        return dt.INT if int(text) <= 2**31 - 1 else dt.BIGINT
    if "e" in text.lower():
        return dt.DOUBLE
    digits = text.replace(".", "").lstrip("0") or "0"
    scale = len(text.split(".")[1]) if "." in text else 0
    return dt.decimal_type(max(len(digits), scale, 1), scale)


def _cast(node, source, target):
    if source == target and target.name != "DECIMAL":
        return node, target
    return call("zb_cast", node, type_literal(source), type_literal(target)), target


def _wider(types):
    names = {t.name for t in types}
    if names & {"DOUBLE", "FLOAT"} or names & {"STRING", "VARCHAR", "CHAR"}:
        return dt.DOUBLE
    decimals = [t for t in types if t.name == "DECIMAL"]
    if decimals:
        return dt.decimal_type(38, max(t.scale for t in decimals))
    if "BIGINT" in names:
        return dt.BIGINT
    return dt.INT


def _escaped(like, original):
    """Databricks' LIKE escape character is a backslash; SQLite has none by default."""
    if isinstance(original.parent, exp.Escape):
        return like
    return exp.Escape(this=like, expression=exp.Literal.string("\\"))


def _split_top_level(text):
    """Split a column list at commas outside (), <> and quotes."""
    parts, depth, current, quote = [], 0, [], None
    for char in text:
        if quote:
            current.append(char)
            if char == quote:
                quote = None
            continue
        if char in "`'":
            quote = char
        elif char in "(<":
            depth += 1
        elif char in ")>":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if "".join(current).strip():
        parts.append("".join(current))
    return parts
