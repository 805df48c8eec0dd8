/*-------------------------------------------------------------------------
 * fdwimport.c
 *	  What PostgreSQL learns about remote tables from the warehouse: IMPORT
 *	  FOREIGN SCHEMA (tables and columns, from information_schema.columns)
 *	  and ANALYZE (a table's row count).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "foreign/foreign.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/rel.h"

#include "deparse.h"
#include "fdw.h"
#include "sqlapi.h"

/* ---------------------------------------------------------------- ANALYZE */

/*
 * ANALYZE asks Databricks for the table's row count (one count(*), run
 * remotely) so that the planner's estimates start from the real size.  It
 * returns no sample rows: fetching a representative sample would mean
 * scanning the table, so column statistics keep their defaults.
 */
static int
zb_acquire_sample_rows(Relation rel, int elevel, HeapTuple *rows, int targrows,
					   double *totalrows, double *totaldeadrows)
{
	Oid			relid = RelationGetRelid(rel);
	StringInfoData sql;
	ZbSession  *conn;
	ZbSqlStatement *st;
	char	   *values[1];

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT count(*) FROM ");
	zb_deparse_relation(&sql, rel);
	conn = zb_sql_connect(GetForeignTable(relid)->serverid, GetUserId());
	st = zb_sql_execute(conn, sql.data, 0, NULL, false);
	*totalrows = 0;
	if (zb_sql_ncolumns(st) == 1 && zb_sql_next_row(st, values) && values[0])
		*totalrows = (double) zb_strtoint64(values[0]);
	*totaldeadrows = 0;
	zb_sql_release(st);
	ereport(elevel,
			(errmsg("\"%s\": %.0f rows in the remote table; no sample taken",
					RelationGetRelationName(rel), *totalrows)));
	return 0;
}

static bool
zb_analyze(Relation relation, AcquireSampleRowsFunc *func, BlockNumber *totalpages)
{
	*func = zb_acquire_sample_rows;
	*totalpages = 1;
	return true;
}

/* ---------------------------------------------------------------- import */

/* The PostgreSQL type for a Databricks type (information_schema's full_data_type). */
static char *
zb_map_type(const char *dbtype)
{
	char	   *t = asc_tolower(dbtype, strlen(dbtype));
	int			p;
	int			s;

	if (strcmp(t, "tinyint") == 0 || strcmp(t, "smallint") == 0 || strcmp(t, "byte") == 0 ||
		strcmp(t, "short") == 0)
		return "smallint";
	if (strcmp(t, "int") == 0 || strcmp(t, "integer") == 0)
		return "integer";
	if (strcmp(t, "bigint") == 0 || strcmp(t, "long") == 0)
		return "bigint";
	if (strcmp(t, "boolean") == 0)
		return "boolean";
	if (strcmp(t, "float") == 0 || strcmp(t, "real") == 0)
		return "real";
	if (strcmp(t, "double") == 0)
		return "double precision";
	if (strcmp(t, "string") == 0)
		return "text";
	if (strcmp(t, "date") == 0)
		return "date";
	if (strcmp(t, "timestamp") == 0 || strcmp(t, "timestamp_ltz") == 0)
		return "timestamp with time zone";
	if (strcmp(t, "timestamp_ntz") == 0)
		return "timestamp without time zone";
	if (strcmp(t, "binary") == 0)
		return "bytea";
	if (strcmp(t, "variant") == 0 || strncmp(t, "array<", 6) == 0 ||
		strncmp(t, "map<", 4) == 0 || strncmp(t, "struct<", 7) == 0)
		return "jsonb";
	if (strcmp(t, "decimal") == 0)
		return "numeric(10,0)";
	if (sscanf(t, "decimal(%d,%d)", &p, &s) == 2 && p >= 1 && p <= 38 && s >= 0 && s <= p)
		return psprintf("numeric(%d,%d)", p, s);
	if (sscanf(t, "varchar(%d)", &p) == 1 && p >= 1)
		return psprintf("varchar(%d)", p);
	if (sscanf(t, "char(%d)", &p) == 1 && p >= 1)
		return psprintf("character(%d)", p);
	return "text";
}

static List *
zb_import_schema(ImportForeignSchemaStmt *stmt, Oid serverOid)
{
	ForeignServer *server = GetForeignServer(serverOid);
	ZbSession  *conn = zb_sql_connect(serverOid, GetUserId());
	char	   *remote = stmt->remote_schema;
	const char *dot = strchr(remote, '.');
	char	   *catalog;
	char	   *schema;
	StringInfoData sql;
	List	   *params = NIL;
	ZbSqlParam *pa;
	ZbSqlStatement *st;
	char	   *values[4];
	List	   *commands = NIL;
	StringInfoData cmd;
	char	   *cur_table = NULL;
	bool		skip = false;
	int			ncols = 0;
	ListCell   *lc;
	int			i;

	if (dot)
	{
		catalog = pnstrdup(remote, dot - remote);
		schema = pstrdup(dot + 1);
	}
	else
	{
		catalog = zb_session_config(conn)->catalog;
		schema = pstrdup(remote);
	}
	if (catalog == NULL || catalog[0] == '\0' || schema[0] == '\0' || strchr(schema, '.'))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_SCHEMA_NOT_FOUND),
				 errmsg("invalid remote schema \"%s\"", remote),
				 errhint("Name it as \"catalog.schema\" (for example \"main.default\"), or set the server option \"catalog\" and name just the schema.")));

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT `table_name`, `column_name`, `full_data_type`, `is_nullable` FROM ");
	zb_append_identifier(&sql, catalog);
	appendStringInfoString(&sql, ".`information_schema`.`columns` WHERE (`table_schema` = :p1)");
	params = lappend(params, asc_tolower(schema, strlen(schema)));
	if (stmt->list_type == FDW_IMPORT_SCHEMA_LIMIT_TO ||
		stmt->list_type == FDW_IMPORT_SCHEMA_EXCEPT)
	{
		appendStringInfoString(&sql, stmt->list_type == FDW_IMPORT_SCHEMA_LIMIT_TO
							   ? " AND (`table_name` IN (" : " AND (`table_name` NOT IN (");
		i = 0;
		foreach(lc, stmt->table_list)
		{
			RangeVar   *rv = (RangeVar *) lfirst(lc);

			params = lappend(params, rv->relname);
			appendStringInfo(&sql, "%s:p%d", i++ > 0 ? ", " : "", list_length(params));
		}
		appendStringInfoString(&sql, "))");
	}
	appendStringInfoString(&sql, " ORDER BY `table_name`, `ordinal_position`");

	pa = palloc0(sizeof(ZbSqlParam) * list_length(params));
	i = 0;
	foreach(lc, params)
	{
		pa[i].name = psprintf("p%d", i + 1);
		pa[i].value = (char *) lfirst(lc);
		pa[i].type = "STRING";
		i++;
	}
	st = zb_sql_execute(conn, sql.data, list_length(params), pa, false);
	if (zb_sql_ncolumns(st) != 4)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_COLUMN_NUMBER),
				 errmsg("unexpected result from information_schema.columns")));

	initStringInfo(&cmd);
	for (;;)
	{
		bool		more = zb_sql_next_row(st, values);

		if (cur_table && (!more || values[0] == NULL || strcmp(values[0], cur_table) != 0))
		{
			/* finish the previous table */
			if (!skip)
			{
				appendStringInfo(&cmd, "\n) SERVER %s OPTIONS (table %s)",
								 quote_identifier(server->servername),
								 quote_literal_cstr(psprintf("%s.%s.%s", catalog, schema, cur_table)));
				commands = lappend(commands, pstrdup(cmd.data));
			}
			cur_table = NULL;
		}
		if (!more)
			break;
		if (values[0] == NULL || values[1] == NULL || values[2] == NULL)
			continue;
		if (cur_table == NULL)
		{
			cur_table = pstrdup(values[0]);
			skip = !zb_valid_name(catalog) || !zb_valid_name(schema) ||
				!zb_valid_name(cur_table);
			if (skip)
				ereport(NOTICE,
						(errmsg("skipping remote table \"%s.%s.%s\": its name is not made of ASCII letters, digits and underscores",
								catalog, schema, cur_table),
						 errhint("Create a foreign table for it with the \"query\" option.")));
			resetStringInfo(&cmd);
			appendStringInfo(&cmd, "CREATE FOREIGN TABLE %s.%s (",
							 quote_identifier(stmt->local_schema), quote_identifier(cur_table));
			ncols = 0;
		}
		if (skip)
			continue;
		appendStringInfo(&cmd, "%s\n  %s %s", ncols++ > 0 ? "," : "",
						 quote_identifier(values[1]), zb_map_type(values[2]));
		if (strlen(values[1]) >= NAMEDATALEN)
			appendStringInfo(&cmd, " OPTIONS (column_name %s)", quote_literal_cstr(values[1]));
		if (values[3] && strcmp(values[3], "NO") == 0)
			appendStringInfoString(&cmd, " NOT NULL");
	}
	zb_sql_release(st);

	if (commands == NIL && stmt->list_type != FDW_IMPORT_SCHEMA_LIMIT_TO)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_SCHEMA_NOT_FOUND),
				 errmsg("remote schema \"%s.%s\" does not exist or has no tables", catalog, schema)));
	return commands;
}

/* The callbacks for ANALYZE and IMPORT FOREIGN SCHEMA. */
void
zb_fdw_import_routines(FdwRoutine *routine)
{
	routine->AnalyzeForeignTable = zb_analyze;
	routine->ImportForeignSchema = zb_import_schema;
}
