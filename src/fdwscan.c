/*-------------------------------------------------------------------------
 * fdwscan.c
 *	  Running the history FDW's planned statements on the SQL warehouse:
 *	  scans, DELETE and TRUNCATE, and zerobus.execute_remote().
 *
 * A scan submits one statement (with its parameters evaluated then),
 * streams the result chunk by chunk, and converts each value from the API's
 * text to the column's PostgreSQL type; a value that does not convert is an
 * ERROR naming the column.  A rescan with the same parameter values
 * re-reads the result from its first chunk; with new values it runs a new
 * statement.  DELETE with pushed-down conditions and TRUNCATE run as one
 * remote statement each.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/explain.h"
#include "common/base64.h"
#include "common/shortest_dec.h"
#include "executor/executor.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/date.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "deparse.h"
#include "fdw.h"
#include "jscan.h"
#include "sqlapi.h"

/* How one remote value becomes a datum. */
typedef enum ZbConvKind
{
	CONV_INPUT,					/* the type's input function */
	CONV_BYTEA,					/* base64 text (we send base64(col)) */
	CONV_JSON,					/* json/jsonb: JSON text, or a quoted scalar */
	CONV_ARRAY,					/* a PostgreSQL array from a JSON array */
	CONV_AVG					/* numeric sum / count */
} ZbConvKind;

typedef struct ZbConv
{
	ZbConvKind	kind;
	AttrNumber	attnum;			/* slot column (1-based) */
	int			remote;			/* first remote column */
	Oid			typid;
	int32		typmod;
	FmgrInfo	inproc;
	Oid			ioparam;
	bool		json_quote;		/* CONV_JSON: the remote type is not JSON-shaped */
	/* CONV_ARRAY */
	Oid			elemtype;
	FmgrInfo	elem_inproc;
	Oid			elem_ioparam;
	int16		elmlen;
	bool		elmbyval;
	char		elmalign;
} ZbConv;

typedef struct ZbScanState
{
	Relation	rel;			/* NULL for a grouping scan */
	TupleDesc	tupdesc;		/* of the scan tuple */
	char	   *sql;
	List	   *retrieved_attrs;
	List	   *out_kinds;
	Oid			relid;			/* the foreign table */
	char	   *relname;		/* for error context */

	/* parameters */
	int			nparams;
	List	   *param_exprs;	/* ExprState * */
	Oid		   *param_types;
	ZbSqlParam *params;

	/* the running statement */
	MemoryContext cxt;			/* statement and parameters live here */
	ZbSession  *conn;
	ZbSqlStatement *st;
	bool		executed;
	int			nconv;
	ZbConv	   *conv;
	char	  **values;
	ZbSqlStats	totals;			/* over every statement of this scan */

	/* conversion error context */
	int			cur_conv;

	/* direct modify */
	bool		set_processed;
	int64		num_affected;
} ZbScanState;

/* A count from the API (num_affected_rows): an integer, or an error. */
int64
zb_strtoint64(const char *s)
{
	char	   *end;
	long long	v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_FDW_REPLY_HANDLE),
				 errmsg("invalid row count from the Databricks SQL API: \"%s\"", s)));
	return (int64) v;
}

/* ---------------------------------------------------------------- options */

static bool
zb_table_external_links(Oid relid, bool server_default)
{
	ForeignTable *ft = GetForeignTable(relid);
	ListCell   *lc;

	foreach(lc, ft->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "disposition") == 0)
			return zb_parse_disposition(defGetString(def));
	}
	return server_default;
}

/* ---------------------------------------------------------------- parameters */

/* Databricks DECIMAL(p,s) for a numeric's text, or NULL if it does not fit. */
static char *
zb_decimal_type(const char *text)
{
	const char *p = text;
	const char *dot;
	int			intdigits;
	int			scale;
	int			precision;

	if (*p == '-')
		p++;
	while (*p == '0')
		p++;
	dot = strchr(p, '.');
	intdigits = dot ? (int) (dot - p) : (int) strlen(p);
	scale = dot ? (int) strlen(dot + 1) : 0;
	precision = Max(intdigits + scale, 1);
	if (precision > 38)
		return NULL;
	return psprintf("DECIMAL(%d,%d)", precision, scale);
}

static char *
zb_format_date(DateADT d, const char *what)
{
	int			y,
				m,
				day;

	if (DATE_NOT_FINITE(d))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("cannot send an infinite %s to Databricks", what)));
	j2date(d + POSTGRES_EPOCH_JDATE, &y, &m, &day);
	if (y < 1 || y > 9999)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("%s out of the Databricks range (years 1 to 9999)", what)));
	return psprintf("%04d-%02d-%02d", y, m, day);
}

static char *
zb_format_timestamp(Timestamp ts, bool utc)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_NOT_FINITE(ts))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("cannot send an infinite timestamp to Databricks")));
	/* no time zone argument: the fields of the UTC instant (or the naive value) */
	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	if (tm.tm_year < 1 || tm.tm_year > 9999)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of the Databricks range (years 1 to 9999)")));
	return psprintf("%04d-%02d-%02d%c%02d:%02d:%02d.%06d%s", tm.tm_year, tm.tm_mon, tm.tm_mday,
					utc ? 'T' : ' ', tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec,
					utc ? "Z" : "");
}

/* A value as a statement parameter: its text (NULL for NULL) and Databricks type. */
static void
zb_param_value(Oid type, Datum value, bool isnull, ZbSqlParam *p)
{
	char		buf[64];

	p->value = NULL;
	switch (type)
	{
		case BOOLOID:
			p->type = "BOOLEAN";
			if (!isnull)
				p->value = DatumGetBool(value) ? "true" : "false";
			return;
		case INT2OID:
			p->type = "SMALLINT";
			if (!isnull)
				p->value = psprintf("%d", (int) DatumGetInt16(value));
			return;
		case INT4OID:
			p->type = "INT";
			if (!isnull)
				p->value = psprintf("%d", DatumGetInt32(value));
			return;
		case INT8OID:
			p->type = "BIGINT";
			if (!isnull)
				p->value = psprintf(INT64_FORMAT, DatumGetInt64(value));
			return;
		case FLOAT4OID:
		case FLOAT8OID:
			p->type = type == FLOAT4OID ? "FLOAT" : "DOUBLE";
			if (!isnull)
			{
				double		d = type == FLOAT4OID ? DatumGetFloat4(value) : DatumGetFloat8(value);

				if (isnan(d))
					p->value = "NaN";
				else if (isinf(d))
					p->value = d > 0 ? "Infinity" : "-Infinity";
				else
				{
					if (type == FLOAT4OID)
						float_to_shortest_decimal_buf(DatumGetFloat4(value), buf);
					else
						double_to_shortest_decimal_buf(d, buf);
					p->value = pstrdup(buf);
				}
			}
			return;
		case NUMERICOID:
			if (isnull)
			{
				p->type = "DECIMAL(38,0)";
				return;
			}
			p->value = DatumGetCString(DirectFunctionCall1(numeric_out, value));
			if (strcmp(p->value, "NaN") == 0 || strstr(p->value, "Infinity"))
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
						 errmsg("cannot send numeric %s to Databricks", p->value),
						 errdetail("Databricks DECIMAL has no NaN or infinity.")));
			p->type = zb_decimal_type(p->value);
			if (p->type == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("numeric value has too many digits for Databricks"),
						 errdetail("Databricks DECIMAL holds at most 38 digits.")));
			return;
		case DATEOID:
			p->type = "DATE";
			if (!isnull)
				p->value = zb_format_date(DatumGetDateADT(value), "date");
			return;
		case TIMESTAMPOID:
			p->type = "TIMESTAMP_NTZ";
			if (!isnull)
				p->value = zb_format_timestamp(DatumGetTimestamp(value), false);
			return;
		case TIMESTAMPTZOID:
			p->type = "TIMESTAMP";
			if (!isnull)
				p->value = zb_format_timestamp(DatumGetTimestampTz(value), true);
			return;
		case NAMEOID:
			p->type = "STRING";
			if (!isnull)
				p->value = pstrdup(NameStr(*DatumGetName(value)));
			return;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			p->type = "STRING";
			if (!isnull)
				p->value = TextDatumGetCString(value);
			return;
	}
	elog(ERROR, "unexpected parameter type %u", type);
}

/* ---------------------------------------------------------------- conversion */

static void
zb_conv_error_callback(void *arg)
{
	ZbScanState *fs = (ZbScanState *) arg;
	ZbConv	   *c;
	const ZbSqlColumn *col;

	if (fs->cur_conv < 0 || fs->cur_conv >= fs->nconv || fs->st == NULL)
		return;
	c = &fs->conv[fs->cur_conv];
	col = zb_sql_column(fs->st, c->remote);
	if (fs->rel)
		errcontext("column \"%s\" of foreign table \"%s\" (remote type %s)",
				   NameStr(TupleDescAttr(fs->tupdesc, c->attnum - 1)->attname),
				   RelationGetRelationName(fs->rel), col->type_text);
	else
		errcontext("processing expression at position %d in select list of a remote query on foreign table \"%s\" (remote type %s)",
				   c->attnum, fs->relname, col->type_text);
}

static void
zb_setup_conversions(ZbScanState *fs)
{
	int			n = list_length(fs->retrieved_attrs);
	int			remote = 0;
	int			i = 0;
	ListCell   *la;
	ListCell   *lk;

	fs->conv = palloc0(sizeof(ZbConv) * Max(1, n));
	fs->nconv = n;
	forboth(la, fs->retrieved_attrs, lk, fs->out_kinds)
	{
		ZbConv	   *c = &fs->conv[i++];
		Form_pg_attribute att;
		Oid			infunc;

		c->attnum = lfirst_int(la);
		att = TupleDescAttr(fs->tupdesc, c->attnum - 1);
		c->typid = att->atttypid;
		c->typmod = att->atttypmod;
		c->remote = remote;
		getTypeInputInfo(c->typid, &infunc, &c->ioparam);
		fmgr_info(infunc, &c->inproc);
		if (lfirst_int(lk) == ZB_OUT_AVG)
		{
			c->kind = CONV_AVG;
			remote += 2;
			continue;
		}
		remote++;
		if (c->typid == BYTEAOID)
			c->kind = CONV_BYTEA;
		else if (c->typid == JSONOID || c->typid == JSONBOID)
			c->kind = CONV_JSON;
		else if (OidIsValid(get_element_type(c->typid)) && get_typlen(c->typid) == -1)
		{
			Oid			einfunc;

			c->kind = CONV_ARRAY;
			c->elemtype = get_element_type(c->typid);
			get_typlenbyvalalign(c->elemtype, &c->elmlen, &c->elmbyval, &c->elmalign);
			getTypeInputInfo(c->elemtype, &einfunc, &c->elem_ioparam);
			fmgr_info(einfunc, &c->elem_inproc);
		}
		else
			c->kind = CONV_INPUT;
	}
}

/* Check the result's shape against ours, and settle per-column details. */
static void
zb_check_result(ZbScanState *fs)
{
	int			expected = 0;
	int			i;

	for (i = 0; i < fs->nconv; i++)
		expected += fs->conv[i].kind == CONV_AVG ? 2 : 1;
	/* a scan that needs no column asks for SELECT NULL */
	if (expected == 0 && zb_sql_ncolumns(fs->st) == 1)
		return;
	if (zb_sql_ncolumns(fs->st) != expected)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_COLUMN_NUMBER),
				 errmsg("remote result has %d columns, expected %d",
						zb_sql_ncolumns(fs->st), expected),
				 fs->rel ? errhint("Check the \"query\" option of foreign table \"%s\": it must return the table's columns.",
								   RelationGetRelationName(fs->rel)) : 0,
				 errcontext("remote SQL: %s", fs->sql)));
	for (i = 0; i < fs->nconv; i++)
	{
		ZbConv	   *c = &fs->conv[i];
		const char *t = zb_sql_column(fs->st, c->remote)->type_name;

		if (c->kind == CONV_JSON)
			c->json_quote = !(strcmp(t, "STRING") == 0 || strcmp(t, "ARRAY") == 0 ||
							  strcmp(t, "MAP") == 0 || strcmp(t, "STRUCT") == 0 ||
							  strcmp(t, "USER_DEFINED_TYPE") == 0 ||
							  strcmp(t, "VARIANT") == 0 || strcmp(t, "NULL") == 0 ||
							  strcmp(t, "BOOLEAN") == 0 || strcmp(t, "INT") == 0 ||
							  strcmp(t, "LONG") == 0 || strcmp(t, "SHORT") == 0 ||
							  strcmp(t, "BYTE") == 0 || strcmp(t, "DECIMAL") == 0 ||
							  strcmp(t, "DOUBLE") == 0 || strcmp(t, "FLOAT") == 0);
	}
}

static Datum
zb_convert_array(ZbConv *c, const char *text)
{
	JScan		js;
	StringInfoData v;
	bool		first = true;
	bool		more;
	int			n = 0;
	int			cap = 16;
	Datum	   *elems;
	bool	   *nulls;
	int			dims[1];
	int			lbs[1] = {1};

	if (text[0] != '[')			/* a PostgreSQL array literal */
		return InputFunctionCall(&c->inproc, (char *) text, c->ioparam, c->typmod);
	elems = palloc(sizeof(Datum) * cap);
	nulls = palloc(sizeof(bool) * cap);
	initStringInfo(&v);
	jscan_init(&js, text, strlen(text));
	if (!jscan_begin(&js, '['))
		goto bad;
	while (jscan_next(&js, ']', &first, &more) && more)
	{
		JScanKind	kind;

		resetStringInfo(&v);
		if (!jscan_peek_kind(&js, &kind))
			goto bad;
		if (kind == JS_ARRAY || kind == JS_OBJECT)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
					 errmsg("cannot convert a nested JSON value to an element of type %s",
							format_type_be(c->elemtype)),
					 errhint("Declare the column as jsonb to keep nested values.")));
		if (!jscan_scalar(&js, &v, &kind))
			goto bad;
		if (n == cap)
		{
			cap *= 2;
			elems = repalloc(elems, sizeof(Datum) * cap);
			nulls = repalloc(nulls, sizeof(bool) * cap);
		}
		nulls[n] = (kind == JS_NULL);
		elems[n] = nulls[n] ? (Datum) 0
			: InputFunctionCall(&c->elem_inproc, v.data, c->elem_ioparam, -1);
		n++;
	}
	if (js.err || !jscan_at_end(&js))
		goto bad;
	dims[0] = n;
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, c->elemtype,
											  c->elmlen, c->elmbyval, c->elmalign));
bad:
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
			 errmsg("invalid JSON array for type %s: %s", format_type_be(c->typid),
					js.err ? js.err : "malformed")));
	return (Datum) 0;
}

static Datum
zb_convert(ZbScanState *fs, ZbConv *c, char **values, bool *isnull)
{
	const char *text = values[c->remote];

	*isnull = false;
	switch (c->kind)
	{
		case CONV_AVG:
			{
				const char *sum = values[c->remote];
				const char *cnt = values[c->remote + 1];
				Datum		s;
				Datum		n;

				if (sum == NULL || cnt == NULL)
				{
					*isnull = true;
					return (Datum) 0;
				}
				s = DirectFunctionCall3(numeric_in, CStringGetDatum(sum),
										ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
				n = DirectFunctionCall3(numeric_in, CStringGetDatum(cnt),
										ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
				if (DatumGetBool(DirectFunctionCall2(numeric_eq, n,
													 DirectFunctionCall1(int4_numeric, Int32GetDatum(0)))))
				{
					*isnull = true;
					return (Datum) 0;
				}
				/* exactly PostgreSQL's avg(): numeric_div(sum, count) */
				return DirectFunctionCall2(numeric_div, s, n);
			}
		default:
			break;
	}
	if (text == NULL)
	{
		*isnull = true;
		return (Datum) 0;
	}
	switch (c->kind)
	{
		case CONV_BYTEA:
			{
				int			len = strlen(text);
				int			maxlen = pg_b64_dec_len(len);
				bytea	   *b = palloc(VARHDRSZ + maxlen);
				int			n = zb_b64_decode(text, len, VARDATA(b), maxlen);

				if (n < 0)
					ereport(ERROR,
							(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
							 errmsg("invalid base64 data for type bytea")));
				SET_VARSIZE(b, VARHDRSZ + n);
				return PointerGetDatum(b);
			}
		case CONV_JSON:
			if (c->json_quote)
			{
				StringInfoData q;

				initStringInfo(&q);
				escape_json(&q, text);
				return InputFunctionCall(&c->inproc, q.data, c->ioparam, c->typmod);
			}
			return InputFunctionCall(&c->inproc, (char *) text, c->ioparam, c->typmod);
		case CONV_ARRAY:
			return zb_convert_array(c, text);
		default:
			return InputFunctionCall(&c->inproc, (char *) text, c->ioparam, c->typmod);
	}
}

/* ---------------------------------------------------------------- execution */

static ZbScanState *
zb_scan_state_init(ForeignScanState *node, ForeignScan *fsplan, EState *estate)
{
	ZbScanState *fs = palloc0(sizeof(ZbScanState));
	ListCell   *lc;
	int			i;

	fs->sql = strVal(list_nth(fsplan->fdw_private, ZbScanSql));
	fs->retrieved_attrs = (List *) list_nth(fsplan->fdw_private, ZbScanRetrievedAttrs);
	fs->out_kinds = (List *) list_nth(fsplan->fdw_private, ZbScanOutKinds);
	fs->relname = strVal(list_nth(fsplan->fdw_private, ZbScanRelationName));
	fs->relid = (Oid) intVal(list_nth(fsplan->fdw_private, ZbScanTableOid));
	fs->cxt = AllocSetContextCreate(estate->es_query_cxt, "zerobus scan",
									ALLOCSET_DEFAULT_SIZES);
	fs->cur_conv = -1;

	fs->nparams = list_length(fsplan->fdw_exprs);
	if (fs->nparams > 0)
	{
		fs->param_exprs = ExecInitExprList(fsplan->fdw_exprs, (PlanState *) node);
		fs->param_types = palloc(sizeof(Oid) * fs->nparams);
		fs->params = palloc0(sizeof(ZbSqlParam) * fs->nparams);
		i = 0;
		foreach(lc, fsplan->fdw_exprs)
		{
			fs->param_types[i] = exprType((Node *) lfirst(lc));
			fs->params[i].name = psprintf("p%d", i + 1);
			i++;
		}
	}
	return fs;
}

/* Evaluate the parameters and run the statement. */
static void
zb_scan_execute(ForeignScanState *node, ZbScanState *fs)
{
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	MemoryContext old;
	ListCell   *lc;
	int			i = 0;

	if (fs->st)
	{
		zb_sql_release(fs->st);
		fs->st = NULL;
	}
	MemoryContextReset(fs->cxt);
	old = MemoryContextSwitchTo(fs->cxt);
	if (fs->conn == NULL)
	{
		/* resolved once per scan (options changed since take effect here) */
		Oid			serverid = ((ForeignScan *) node->ss.ps.plan)->fs_server;

		MemoryContextSwitchTo(GetMemoryChunkContext(fs));
		fs->conn = zb_sql_connect(serverid, GetUserId());
		MemoryContextSwitchTo(fs->cxt);
	}
	foreach(lc, fs->param_exprs)
	{
		ExprState  *expr = (ExprState *) lfirst(lc);
		bool		isnull;
		Datum		v;

		v = ExecEvalExpr(expr, econtext, &isnull);
		zb_param_value(fs->param_types[i], v, isnull, &fs->params[i]);
		i++;
	}
	fs->st = zb_sql_execute(fs->conn, fs->sql, fs->nparams, fs->params,
							zb_table_external_links(fs->relid,
													zb_session_config(fs->conn)->external_links));
	MemoryContextSwitchTo(old);

	if (fs->conv == NULL)
	{
		old = MemoryContextSwitchTo(GetMemoryChunkContext(fs));
		zb_setup_conversions(fs);
		fs->values = palloc0(sizeof(char *) * Max(1, zb_sql_ncolumns(fs->st)));
		MemoryContextSwitchTo(old);
	}
	else if (zb_sql_ncolumns(fs->st) > 0)
	{
		old = MemoryContextSwitchTo(GetMemoryChunkContext(fs));
		fs->values = repalloc(fs->values, sizeof(char *) * zb_sql_ncolumns(fs->st));
		MemoryContextSwitchTo(old);
	}
	zb_check_result(fs);
	fs->executed = true;
}

static void
zb_begin_scan(ForeignScanState *node, int eflags)
{
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;
	EState	   *estate = node->ss.ps.state;
	ZbScanState *fs;

	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
	{
		node->fdw_state = NULL;
		return;
	}
	fs = zb_scan_state_init(node, fsplan, estate);
	node->fdw_state = fs;
	if (fsplan->scan.scanrelid > 0)
	{
		fs->rel = node->ss.ss_currentRelation;
		fs->tupdesc = RelationGetDescr(fs->rel);
		fs->out_kinds = NIL;
		for (int i = 0; i < list_length(fs->retrieved_attrs); i++)
			fs->out_kinds = lappend_int(fs->out_kinds, ZB_OUT_PLAIN);
	}
	else
		fs->tupdesc = node->ss.ss_ScanTupleSlot->tts_tupleDescriptor;
}

static void
zb_accumulate(ZbScanState *fs)
{
	if (fs->st)
	{
		const ZbSqlStats *s = zb_sql_stats(fs->st);

		fs->totals.rows += s->rows;
		fs->totals.chunks += s->chunks;
		fs->totals.bytes += s->bytes;
		fs->totals.requests += s->requests;
	}
}

static TupleTableSlot *
zb_iterate_scan(ForeignScanState *node)
{
	ZbScanState *fs = (ZbScanState *) node->fdw_state;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;
	ErrorContextCallback errcb;
	int			i;

	if (!fs->executed)
		zb_scan_execute(node, fs);

	ExecClearTuple(slot);
	if (!zb_sql_next_row(fs->st, fs->values))
		return slot;

	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	errcb.callback = zb_conv_error_callback;
	errcb.arg = fs;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	for (i = 0; i < fs->nconv; i++)
	{
		ZbConv	   *c = &fs->conv[i];

		fs->cur_conv = i;
		slot->tts_values[c->attnum - 1] = zb_convert(fs, c, fs->values,
													  &slot->tts_isnull[c->attnum - 1]);
	}
	fs->cur_conv = -1;
	error_context_stack = errcb.previous;
	ExecStoreVirtualTuple(slot);
	return slot;
}

static void
zb_rescan(ForeignScanState *node)
{
	ZbScanState *fs = (ZbScanState *) node->fdw_state;

	if (!fs->executed)
		return;
	/* new parameter values need a new statement; otherwise read it again */
	if (node->ss.ps.chgParam != NULL)
	{
		zb_accumulate(fs);
		zb_sql_release(fs->st);
		fs->st = NULL;
		fs->executed = false;
	}
	else
		zb_sql_rewind(fs->st);
}

static void
zb_end_scan(ForeignScanState *node)
{
	ZbScanState *fs = (ZbScanState *) node->fdw_state;

	if (fs == NULL)
		return;
	if (fs->st)
	{
		zb_accumulate(fs);
		zb_sql_release(fs->st);
		fs->st = NULL;
	}
}

static void
zb_explain_scan(ForeignScanState *node, ExplainState *es)
{
	ForeignScan *plan = (ForeignScan *) node->ss.ps.plan;
	ZbScanState *fs = (ZbScanState *) node->fdw_state;

	if (plan->scan.scanrelid == 0)
		ExplainPropertyText("Relations",
							strVal(list_nth(plan->fdw_private, ZbScanRelationName)), es);
	if (es->verbose)
		ExplainPropertyText("Remote SQL", strVal(list_nth(plan->fdw_private, ZbScanSql)), es);
	if (es->analyze && fs)
	{
		ZbSqlStats	t = fs->totals;

		if (fs->st)
		{
			const ZbSqlStats *s = zb_sql_stats(fs->st);

			t.rows += s->rows;
			t.chunks += s->chunks;
			t.bytes += s->bytes;
			t.requests += s->requests;
		}
		ExplainPropertyInteger("Remote Rows", NULL, t.rows, es);
		ExplainPropertyInteger("Remote Chunks", NULL, t.chunks, es);
		if (es->costs)
		{
			ExplainPropertyInteger("Remote Bytes", NULL, t.bytes, es);
			ExplainPropertyInteger("Remote Requests", NULL, t.requests, es);
		}
	}
}

/*
 * The executor requires this callback to exist for DELETE even when the
 * DELETE runs directly; planning never chooses row-by-row deletes.
 */
static TupleTableSlot *
zb_exec_delete(EState *estate, ResultRelInfo *rinfo, TupleTableSlot *slot,
			   TupleTableSlot *planSlot)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot delete from foreign table \"%s\" row by row",
					RelationGetRelationName(rinfo->ri_RelationDesc))));
	return NULL;
}

static void
zb_begin_direct_modify(ForeignScanState *node, int eflags)
{
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;
	ZbScanState *fs;

	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
	{
		node->fdw_state = NULL;
		return;
	}
	fs = zb_scan_state_init(node, fsplan, node->ss.ps.state);
	fs->set_processed = intVal(list_nth(fsplan->fdw_private, ZbScanTableOid + 1));
	if (fsplan->scan.scanrelid == 0)
		fs->rel = ExecOpenScanRelation(node->ss.ps.state,
									   node->resultRelInfo->ri_RangeTableIndex, eflags);
	else
		fs->rel = node->ss.ss_currentRelation;
	fs->num_affected = -1;
	node->fdw_state = fs;
}

static TupleTableSlot *
zb_iterate_direct_modify(ForeignScanState *node)
{
	ZbScanState *fs = (ZbScanState *) node->fdw_state;
	EState	   *estate = node->ss.ps.state;
	Instrumentation *instr = node->ss.ps.instrument;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;

	if (fs->num_affected == -1)
	{
		ExprContext *econtext = node->ss.ps.ps_ExprContext;
		MemoryContext old = MemoryContextSwitchTo(fs->cxt);
		ListCell   *lc;
		int			i = 0;
		char	   *values[2];

		fs->conn = zb_sql_connect(GetForeignTable(RelationGetRelid(fs->rel))->serverid,
								  GetUserId());
		foreach(lc, fs->param_exprs)
		{
			bool		isnull;
			Datum		v = ExecEvalExpr((ExprState *) lfirst(lc), econtext, &isnull);

			zb_param_value(fs->param_types[i], v, isnull, &fs->params[i]);
			i++;
		}
		fs->st = zb_sql_execute(fs->conn, fs->sql, fs->nparams, fs->params, false);
		fs->num_affected = 0;
		/* Databricks reports num_affected_rows as the result's first column */
		if (zb_sql_ncolumns(fs->st) >= 1 && zb_sql_ncolumns(fs->st) <= 2 &&
			zb_sql_next_row(fs->st, values) && values[0])
			fs->num_affected = zb_strtoint64(values[0]);
		MemoryContextSwitchTo(old);
	}
	if (fs->set_processed)
		estate->es_processed += fs->num_affected;
	if (instr)
		instr->tuplecount += fs->num_affected;
	return ExecClearTuple(slot);
}

static void
zb_end_direct_modify(ForeignScanState *node)
{
	ZbScanState *fs = (ZbScanState *) node->fdw_state;

	if (fs && fs->st)
	{
		zb_sql_release(fs->st);
		fs->st = NULL;
	}
}

static void
zb_explain_direct_modify(ForeignScanState *node, ExplainState *es)
{
	ForeignScan *plan = (ForeignScan *) node->ss.ps.plan;

	if (es->verbose)
		ExplainPropertyText("Remote SQL", strVal(list_nth(plan->fdw_private, ZbScanSql)), es);
}

static void
zb_exec_truncate(List *rels, DropBehavior behavior, bool restart_seqs)
{
	ListCell   *lc;

	foreach(lc, rels)
	{
		Relation	rel = (Relation) lfirst(lc);
		Oid			relid = RelationGetRelid(rel);
		StringInfoData sql;
		ZbSession  *conn;
		ZbSqlStatement *st;

		if (zb_rel_is_query(relid))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot truncate foreign table \"%s\"", RelationGetRelationName(rel)),
					 errdetail("It is defined by a query, not a table.")));
		initStringInfo(&sql);
		zb_deparse_truncate(&sql, rel);
		conn = zb_sql_connect(GetForeignTable(relid)->serverid, GetUserId());
		st = zb_sql_execute(conn, sql.data, 0, NULL, false);
		zb_sql_release(st);
	}
}

/* ---------------------------------------------------------------- execute_remote */

/*
 * zerobus.execute_remote(server, statement, VARIADIC args text[]): run one
 * statement on the server's SQL warehouse, with args as the STRING
 * parameters :p1, :p2, ...  Returns num_affected_rows for DML, else the
 * number of rows the statement returned.  Not granted to PUBLIC.
 */
PG_FUNCTION_INFO_V1(zerobus_execute_remote);

Datum
zerobus_execute_remote(PG_FUNCTION_ARGS)
{
	char	   *servername = NameStr(*PG_GETARG_NAME(0));
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(1));
	ArrayType  *args = PG_GETARG_ARRAYTYPE_P(2);
	Oid			serverid = zb_server_oid(servername);
	ZbSession  *conn;
	ZbSqlStatement *st;
	ZbSqlParam *params = NULL;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	int64		result = 0;
	char	  **values;

	zb_check_server_usage(serverid, servername);

	deconstruct_array(args, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n > 0)
		params = palloc0(sizeof(ZbSqlParam) * n);
	for (i = 0; i < n; i++)
	{
		params[i].name = psprintf("p%d", i + 1);
		params[i].value = nulls[i] ? NULL : TextDatumGetCString(elems[i]);
		params[i].type = "STRING";
	}
	conn = zb_sql_connect(serverid, GetUserId());
	st = zb_sql_execute(conn, sql, n, params, false);
	values = palloc0(sizeof(char *) * Max(1, zb_sql_ncolumns(st)));
	if (zb_sql_ncolumns(st) > 0 &&
		strcmp(zb_sql_column(st, 0)->name, "num_affected_rows") == 0)
	{
		if (zb_sql_next_row(st, values) && values[0])
			result = zb_strtoint64(values[0]);
	}
	else if (zb_sql_ncolumns(st) > 0)
	{
		while (zb_sql_next_row(st, values))
			result++;
	}
	zb_sql_release(st);
	PG_RETURN_INT64(result);
}

/* The executor's callbacks for scans, DELETE and TRUNCATE. */
void
zb_fdw_scan_routines(FdwRoutine *routine)
{
	routine->BeginForeignScan = zb_begin_scan;
	routine->IterateForeignScan = zb_iterate_scan;
	routine->ReScanForeignScan = zb_rescan;
	routine->EndForeignScan = zb_end_scan;
	routine->ExplainForeignScan = zb_explain_scan;
	routine->ExecForeignDelete = zb_exec_delete;
	routine->BeginDirectModify = zb_begin_direct_modify;
	routine->IterateDirectModify = zb_iterate_direct_modify;
	routine->EndDirectModify = zb_end_direct_modify;
	routine->ExplainDirectModify = zb_explain_direct_modify;
	routine->ExecForeignTruncate = zb_exec_truncate;
}
