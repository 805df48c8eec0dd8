/*-------------------------------------------------------------------------
 * sqlapi.c
 *	  Client of the Databricks SQL Statement Execution API (docs/DESIGN.md,
 *	  "The SQL Statement Execution API").
 *
 * A statement is POSTed with a bounded wait_timeout, then polled while
 * PENDING or RUNNING.  Its result is read chunk by chunk: one chunk's bytes
 * are held at a time, and rows are pulled out of them one by one with
 * jscan, so a million-row result costs one chunk of memory.  Chunks come
 * INLINE (in the API responses) or as EXTERNAL_LINKS (pre-signed URLs,
 * fetched without our Authorization header but with the headers the link
 * lists; neither is ever logged).
 *
 * No statement is left running remotely: from the moment a submit returns
 * a statement id until the statement reaches a terminal state, it is listed
 * in a backend-wide registry, and the transaction (or subtransaction) abort
 * callback cancels whatever is listed, within a budget of 750 ms.
 * Every request waits in the interruptible wait loop (net.c), the OAuth
 * token fetch included.  Only the submit's own HTTP exchange holds
 * interrupts, because its answer carries the id needed to cancel the
 * statement: a cancel, statement_timeout or terminate arriving then gives
 * the answer a grace of SQLAPI_SUBMIT_GRACE_MS to arrive (the id is then
 * registered and the abort cancels the statement), and otherwise abandons
 * the submit with a WARNING that the statement may run on.
 *
 * Requests retry 429/503 (honouring Retry-After), refresh the OAuth token
 * once on 401, and retry idempotent requests on transport errors.  Remote
 * failures become ERRORs with an FDW SQLSTATE, the remote error_code and
 * message in the detail, and the remote SQL (which holds no values: they
 * travel as parameters) in the context.  Tokens and pre-signed URLs never
 * appear in a message.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/attnum.h"
#include "access/xact.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "http.h"
#include "jscan.h"
#include "sqlapi.h"

#define STATEMENTS_PATH "/api/2.0/sql/statements"
#define SQLAPI_MAX_ATTEMPTS 5		/* 429/503: the server asked us to come back */
#define SQLAPI_TRANSPORT_ATTEMPTS 3 /* network errors: brief outages only */
#define SQLAPI_MAX_RETRY_AFTER_S 30
#define SQLAPI_FIRST_POLL_MS 5
#define SQLAPI_MAX_POLL_MS 1000
#define SQLAPI_CANCEL_WAIT_MS 5000	/* the server's statement_timeout: interruptible */
#define SQLAPI_CANCEL_BUDGET_MS 750	/* every cancel of one abort, together */
#define SQLAPI_SUBMIT_GRACE_MS 500	/* an interrupted submit's answer may still come */
#define SQLAPI_MAX_RESPONSE (64 * 1024 * 1024)
#define SQLAPI_MAX_EXTERNAL_CHUNK ((size_t) 256 * 1024 * 1024)
#define SQLAPI_ID_LEN 128

typedef enum SqlReq
{
	REQ_SUBMIT,
	REQ_POLL,
	REQ_CHUNK,
	REQ_CANCEL,
	REQ_EXTERNAL
} SqlReq;

/* One ResultData object: a chunk's position and where its rows are. */
typedef struct ResultData
{
	bool		present;
	int			chunk_index;
	int			next_chunk_index;	/* -1: none */
	char	   *next_link;		/* next_chunk_internal_link, or NULL */
	bool		has_data;
	size_t		data_start;		/* data_array span in the body */
	size_t		data_end;
	char	   *ext_url;		/* EXTERNAL_LINKS: the first link */
	List	   *ext_headers;	/* "Name: value" strings */
} ResultData;

/* What we read of a StatementResponse (or an error body). */
typedef struct StatementResponse
{
	char	   *statement_id;
	char	   *state;
	char	   *error_code;
	char	   *error_message;
	char	   *message;		/* top-level message of a refused request */
	bool		has_manifest;
	int			column_count;
	List	   *columns;		/* ZbSqlColumn * */
	int64		total_row_count;
	int			total_chunk_count;
	bool		truncated;
	char	   *format;
	ResultData	result;
} StatementResponse;

struct ZbSqlStatement
{
	MemoryContext cxt;
	MemoryContext chunk_cxt;	/* reset for each chunk: holds its bytes */
	ZbSession  *conn;
	const char *sql;
	char	   *id;
	bool		external;
	int			ncols;
	ZbSqlColumn *cols;
	int64		total_rows;		/* -1 if the manifest did not say */
	int			total_chunks;
	int64		rows_read;		/* since the first chunk (a rewind restarts it) */

	/* the chunk being read */
	int			chunk_index;	/* -1 before the first */
	char	   *body;
	size_t		body_len;
	JScan		rows;
	size_t		rows_start;		/* where the data_array starts in body */
	bool		rows_first;
	bool		in_rows;
	int			next_chunk;		/* -1: no more */
	char	   *next_link;

	/* the row being handed out */
	StringInfoData rowbuf;
	int		   *offsets;
	bool		convert;		/* server encoding is not UTF-8 */

	ZbSqlStats	stats;
};

/*
 * Statements submitted and not yet known to be finished.  Each holds its
 * session (session.c), so that the abort's cancel can still use it after
 * its scan's memory is gone, and even if ALTER SERVER made it stale.
 */
typedef struct InFlight
{
	struct InFlight *next;
	MemoryContext cxt;			/* the entry's; its deletion releases the hold */
	char		id[SQLAPI_ID_LEN];
	int			nest_level;
	ZbSession  *session;
} InFlight;

static InFlight *inflight = NULL;
static bool callbacks_registered = false;

/* What a submit's answer said, taken in while interrupts are still held. */
typedef struct SqlSubmit
{
	StatementResponse *r;		/* the parsed 200 response, or NULL */
	const char *perr;			/* why it is not usable, or NULL */
	InFlight   *f;				/* registered for cancellation, or NULL */
} SqlSubmit;

static InFlight *sqlapi_register(ZbSession *conn, const char *id);

static void sqlapi_xact_callback(XactEvent event, void *arg);
static void sqlapi_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
									SubTransactionId parentSubid, void *arg);

/* ---------------------------------------------------------------- helpers */

/* A string in UTF-8 (the API's encoding) from the server encoding. */
static char *
sqlapi_to_utf8(const char *s)
{
	return pg_server_to_any(s, strlen(s), PG_UTF8);
}

static void
sqlapi_append_json(StringInfo buf, const char *key, const char *value)
{
	if (buf->len > 0 && buf->data[buf->len - 1] != '{')
		appendStringInfoChar(buf, ',');
	escape_json(buf, key);
	appendStringInfoChar(buf, ':');
	escape_json(buf, sqlapi_to_utf8(value));
}

/* The first line of a remote message, for errmsg. */
static char *
sqlapi_first_line(const char *msg)
{
	const char *nl = strchr(msg, '\n');
	size_t		len = nl ? (size_t) (nl - msg) : strlen(msg);

	if (len > 300)
		len = 300;
	return pnstrdup(msg, len);
}

/*
 * Text from a remote response, made safe for a message: converted to the
 * server encoding if valid UTF-8, else replaced.
 */
static char *
sqlapi_remote_text(const char *s)
{
	if (s == NULL)
		return NULL;
	if (!pg_verify_mbstr(PG_UTF8, s, strlen(s), true))
		return pstrdup("(invalid UTF-8 in the remote message)");
	return pg_any_to_server(s, strlen(s), PG_UTF8);
}

/* Sleep on the latch; services interrupts unless they are held. */
static void
sqlapi_sleep(long ms)
{
	if (ms <= 0)
		return;
	CHECK_FOR_INTERRUPTS();
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ms,
					 PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

static bool
sqlapi_terminal(const char *state)
{
	return state == NULL ||
		(strcmp(state, "PENDING") != 0 && strcmp(state, "RUNNING") != 0);
}

/* scheme://host[:port] of a URL, for comparing origins. */
static char *
sqlapi_origin(const char *url)
{
	const char *p = strstr(url, "://");
	const char *end;

	if (p == NULL)
		return pstrdup(url);
	end = p + 3;
	while (*end && *end != '/' && *end != '?' && *end != '#')
		end++;
	return pnstrdup(url, end - url);
}

/* ---------------------------------------------------------------- parsing */

static bool
sqlapi_read_text(JScan *js, StringInfo tmp, char **out)
{
	JScanKind	kind;

	resetStringInfo(tmp);
	if (!jscan_scalar(js, tmp, &kind))
		return false;
	*out = (kind == JS_NULL) ? NULL : pstrdup(tmp->data);
	return true;
}

static bool
sqlapi_read_int(JScan *js, StringInfo tmp, int64 *out)
{
	JScanKind	kind;
	char	   *end;

	resetStringInfo(tmp);
	if (!jscan_scalar(js, tmp, &kind))
		return false;
	if (kind == JS_NULL)
		return true;
	if (kind != JS_NUMBER && kind != JS_STRING)
	{
		js->err = "expected a number";
		return false;
	}
	errno = 0;
	*out = strtoll(tmp->data, &end, 10);
	if (errno != 0 || end == tmp->data || *end != '\0')
	{
		js->err = "expected an integer";
		return false;
	}
	return true;
}

static bool
sqlapi_read_bool(JScan *js, StringInfo tmp, bool *out)
{
	JScanKind	kind;

	resetStringInfo(tmp);
	if (!jscan_scalar(js, tmp, &kind))
		return false;
	*out = (kind == JS_TRUE);
	return true;
}

/*
 * The API's objects are read with one function, sqlapi_read_object(), from
 * a table per object: each member we use, its JSON type, and where its
 * value goes.  Members not listed are skipped; a member of the wrong type
 * is an error.  Nested objects whose members belong to the same C struct
 * (status.error, manifest.schema) are read into it directly.
 */
typedef enum SqlFieldKind
{
	SF_TEXT,					/* char *: a string (NULL for null) */
	SF_INT,						/* int: an integer within [min, max] */
	SF_INT64,					/* int64: an integer */
	SF_BOOL,					/* bool: true, or false for anything else */
	SF_OBJECT,					/* a nested object, read with 'fields' */
	SF_CUSTOM					/* read by 'read' */
} SqlFieldKind;

typedef struct SqlField SqlField;
typedef bool (*SqlFieldReader) (JScan *js, StringInfo key, StringInfo tmp, void *dest);

struct SqlField
{
	const char *name;
	SqlFieldKind kind;
	size_t		offset;			/* of the destination, in the struct being read */
	bool		nullable;		/* null is accepted (and skipped) */
	int64		dflt;			/* SF_INT, SF_INT64: the value for null */
	int64		min;			/* SF_INT: the range accepted */
	int64		max;
	const char *range_err;
	const SqlField *fields;		/* SF_OBJECT: its members (offsets from 'offset') */
	int			present;		/* SF_OBJECT: a bool set when it is there, or -1 */
	SqlFieldReader read;		/* SF_CUSTOM */
};

#define SQLF_TEXT(n, st, m) {.name = (n), .kind = SF_TEXT, .offset = offsetof(st, m), .present = -1}
#define SQLF_INT(n, st, m, d, lo, hi, e) \
	{.name = (n), .kind = SF_INT, .offset = offsetof(st, m), .dflt = (d), .min = (lo), \
	 .max = (hi), .range_err = (e), .present = -1}
#define SQLF_INT64(n, st, m, d) \
	{.name = (n), .kind = SF_INT64, .offset = offsetof(st, m), .dflt = (d), .present = -1}
#define SQLF_BOOL(n, st, m) {.name = (n), .kind = SF_BOOL, .offset = offsetof(st, m), .present = -1}
#define SQLF_CUSTOM(n, off, fn) \
	{.name = (n), .kind = SF_CUSTOM, .offset = (off), .nullable = true, .read = (fn), .present = -1}
#define SQLF_END {.name = NULL}

static bool sqlapi_read_object(JScan *js, StringInfo key, StringInfo tmp,
							   const SqlField *fields, char *base);

/* An object of string values: a link's http_headers, as "Name: value" lines. */
static bool
sqlapi_read_headers(JScan *js, StringInfo key, StringInfo tmp, void *dest)
{
	List	  **headers = (List **) dest;
	bool		first = true;
	bool		more;

	if (!jscan_begin(js, '{'))
		return false;
	while (jscan_next(js, '}', &first, &more) && more)
	{
		char	   *value;
		char	   *name;

		if (!jscan_key(js, key) || !sqlapi_read_text(js, tmp, &value))
			return false;
		name = pstrdup(key->data);
		if (value == NULL || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n") || name[0] == '\0')
		{
			js->err = "invalid header in an external link";
			return false;
		}
		*headers = lappend(*headers, psprintf("%s: %s", name, value));
	}
	return js->err == NULL;
}

/* data_array: where the rows are in the body (read later, one at a time). */
static bool
sqlapi_read_data_array(JScan *js, StringInfo key, StringInfo tmp, void *dest)
{
	ResultData *rd = (ResultData *) dest;
	JScanKind	kind;

	if (!jscan_peek_kind(js, &kind))
		return false;
	if (kind != JS_ARRAY)
	{
		js->err = "data_array is not an array";
		return false;
	}
	rd->has_data = true;
	rd->data_start = js->pos;
	if (!jscan_skip(js))
		return false;
	rd->data_end = js->pos;
	return true;
}

/* Where a chunk sits and what follows it: members of both links and results. */
#define SQLF_CHUNK_FIELDS \
	SQLF_INT("chunk_index", ResultData, chunk_index, 0, 0, INT_MAX, "invalid chunk_index"), \
	SQLF_INT("next_chunk_index", ResultData, next_chunk_index, -1, -1, INT_MAX, \
			 "invalid next_chunk_index"), \
	SQLF_TEXT("next_chunk_internal_link", ResultData, next_link)

/* One element of external_links. */
static const SqlField link_fields[] = {
	SQLF_TEXT("external_link", ResultData, ext_url),
	SQLF_CUSTOM("http_headers", offsetof(ResultData, ext_headers), sqlapi_read_headers),
	SQLF_CHUNK_FIELDS,
	SQLF_END
};

/* Links after the first are not used, only checked to be objects. */
static const SqlField ignored_fields[] = {SQLF_END};

/* external_links: the first link is the chunk's (one link per chunk). */
static bool
sqlapi_read_links(JScan *js, StringInfo key, StringInfo tmp, void *dest)
{
	bool		first = true;
	bool		more;
	int			n = 0;

	if (!jscan_begin(js, '['))
		return false;
	while (jscan_next(js, ']', &first, &more) && more)
	{
		if (!sqlapi_read_object(js, key, tmp, n++ == 0 ? link_fields : ignored_fields,
								(char *) dest))
			return false;
	}
	return js->err == NULL;
}

/* A ResultData object: the "result" member, or a chunk response. */
static const SqlField result_fields[] = {
	SQLF_CUSTOM("data_array", 0, sqlapi_read_data_array),
	SQLF_CUSTOM("external_links", 0, sqlapi_read_links),
	SQLF_CHUNK_FIELDS,
	SQLF_END
};

static const SqlField column_fields[] = {
	SQLF_TEXT("name", ZbSqlColumn, name),
	SQLF_TEXT("type_name", ZbSqlColumn, type_name),
	SQLF_TEXT("type_text", ZbSqlColumn, type_text),
	SQLF_END
};

/* manifest.schema.columns */
static bool
sqlapi_read_columns(JScan *js, StringInfo key, StringInfo tmp, void *dest)
{
	List	  **columns = (List **) dest;
	bool		first = true;
	bool		more;

	if (!jscan_begin(js, '['))
		return false;
	while (jscan_next(js, ']', &first, &more) && more)
	{
		ZbSqlColumn *col = palloc0(sizeof(ZbSqlColumn));

		if (!sqlapi_read_object(js, key, tmp, column_fields, (char *) col))
			return false;
		if (col->name == NULL)
			col->name = pstrdup("?");
		if (col->type_name == NULL)
			col->type_name = pstrdup("STRING");
		if (col->type_text == NULL)
			col->type_text = pstrdup(col->type_name);
		*columns = lappend(*columns, col);
	}
	return js->err == NULL;
}

/* The rest of a StatementResponse; nested objects fill the response itself. */
static const SqlField schema_fields[] = {
	SQLF_INT("column_count", StatementResponse, column_count, 0, 0, MaxAttrNumber,
			 "invalid column_count"),
	SQLF_CUSTOM("columns", offsetof(StatementResponse, columns), sqlapi_read_columns),
	SQLF_END
};

static const SqlField manifest_fields[] = {
	{.name = "schema", .kind = SF_OBJECT, .fields = schema_fields, .present = -1},
	SQLF_INT64("total_row_count", StatementResponse, total_row_count, -1),
	SQLF_INT("total_chunk_count", StatementResponse, total_chunk_count, 0, 0, INT_MAX,
			 "invalid total_chunk_count"),
	SQLF_BOOL("truncated", StatementResponse, truncated),
	SQLF_TEXT("format", StatementResponse, format),
	SQLF_END
};

static const SqlField error_fields[] = {
	SQLF_TEXT("error_code", StatementResponse, error_code),
	SQLF_TEXT("message", StatementResponse, error_message),
	SQLF_END
};

static const SqlField status_fields[] = {
	SQLF_TEXT("state", StatementResponse, state),
	{.name = "error", .kind = SF_OBJECT, .nullable = true, .fields = error_fields, .present = -1},
	SQLF_END
};

#define SQLF_RESULT(n) \
	{.name = (n), .kind = SF_OBJECT, .offset = offsetof(StatementResponse, result), \
	 .nullable = true, .fields = result_fields, \
	 .present = offsetof(StatementResponse, result) + offsetof(ResultData, present)}

/* A StatementResponse, or a refused request's {error_code, message}. */
static const SqlField response_fields[] = {
	SQLF_TEXT("statement_id", StatementResponse, statement_id),
	{.name = "status", .kind = SF_OBJECT, .fields = status_fields, .present = -1},
	{.name = "manifest", .kind = SF_OBJECT, .nullable = true, .fields = manifest_fields,
	 .present = offsetof(StatementResponse, has_manifest)},
	SQLF_RESULT("result"),
	SQLF_TEXT("error_code", StatementResponse, error_code),
	SQLF_TEXT("message", StatementResponse, message),
	SQLF_END
};

/* A chunk response is a ResultData object (or null) at the top level. */
static const SqlField chunk_response = SQLF_RESULT("(chunk)");

/* One member's value, at js, into base + f->offset. */
static bool
sqlapi_read_field(JScan *js, StringInfo key, StringInfo tmp, const SqlField *f, char *base)
{
	char	   *dest = base + f->offset;
	JScanKind	kind;
	int64		v;

	if (f->nullable)
	{
		if (!jscan_peek_kind(js, &kind))
			return false;
		if (kind == JS_NULL)
			return jscan_skip(js);
	}
	switch (f->kind)
	{
		case SF_TEXT:
			return sqlapi_read_text(js, tmp, (char **) dest);
		case SF_INT:
			v = f->dflt;
			if (!sqlapi_read_int(js, tmp, &v))
				return false;
			if (v < f->min || v > f->max)
			{
				js->err = f->range_err;
				return false;
			}
			*(int *) dest = (int) v;
			return true;
		case SF_INT64:
			*(int64 *) dest = f->dflt;
			return sqlapi_read_int(js, tmp, (int64 *) dest);
		case SF_BOOL:
			return sqlapi_read_bool(js, tmp, (bool *) dest);
		case SF_OBJECT:
			if (f->present >= 0)
				*(bool *) (base + f->present) = true;
			return sqlapi_read_object(js, key, tmp, f->fields, dest);
		case SF_CUSTOM:
			return f->read(js, key, tmp, dest);
	}
	return false;
}

/* An object at js: its members listed in 'fields' into base, the rest skipped. */
static bool
sqlapi_read_object(JScan *js, StringInfo key, StringInfo tmp, const SqlField *fields,
				   char *base)
{
	bool		first = true;
	bool		more;

	if (!jscan_begin(js, '{'))
		return false;
	while (jscan_next(js, '}', &first, &more) && more)
	{
		const SqlField *f;

		if (!jscan_key(js, key))
			return false;
		for (f = fields; f->name; f++)
			if (strcmp(f->name, key->data) == 0)
				break;
		if (f->name == NULL ? !jscan_skip(js) : !sqlapi_read_field(js, key, tmp, f, base))
			return false;
	}
	return js->err == NULL;
}

/*
 * Parse a StatementResponse, a refused request's {error_code, message}, or
 * (top_is_result) a chunk's ResultData.  Returns NULL with *err set when
 * the body is not what the API sends.
 */
static StatementResponse *
sqlapi_parse(const char *body, size_t len, bool top_is_result, const char **err)
{
	StatementResponse *r = palloc0(sizeof(StatementResponse));
	StringInfoData key;
	StringInfoData tmp;
	JScan		js;
	bool		ok;

	r->result.next_chunk_index = -1;
	r->total_row_count = -1;	/* not stated */
	if (!pg_verify_mbstr(PG_UTF8, body, len, true))
	{
		*err = "the response is not valid UTF-8";
		return NULL;
	}
	initStringInfo(&key);
	initStringInfo(&tmp);
	jscan_init(&js, body, len);
	if (top_is_result)
		ok = sqlapi_read_field(&js, &key, &tmp, &chunk_response, (char *) r);
	else
		ok = sqlapi_read_object(&js, &key, &tmp, response_fields, (char *) r);
	if (ok && !jscan_at_end(&js))
	{
		js.err = "unexpected data after the JSON document";
		ok = false;
	}
	if (!ok)
	{
		*err = js.err ? js.err : "malformed JSON";
		return NULL;
	}
	return r;
}

/* ---------------------------------------------------------------- errors */

static int
sqlapi_errcode_for_class(const char *message)
{
	if (message == NULL)
		return ERRCODE_FDW_ERROR;
	if (strncmp(message, "[TABLE_OR_VIEW_NOT_FOUND]", 25) == 0)
		return ERRCODE_FDW_TABLE_NOT_FOUND;
	if (strncmp(message, "[SCHEMA_NOT_FOUND]", 18) == 0)
		return ERRCODE_FDW_SCHEMA_NOT_FOUND;
	if (strncmp(message, "[UNRESOLVED_COLUMN", 18) == 0)
		return ERRCODE_FDW_COLUMN_NAME_NOT_FOUND;
	return ERRCODE_FDW_ERROR;
}

static const char *
sqlapi_hint_for_class(const char *message)
{
	if (message == NULL)
		return NULL;
	if (strncmp(message, "[TABLE_OR_VIEW_NOT_FOUND]", 25) == 0)
		return "Check the foreign table's option \"table\" (catalog.schema.table), or the server's options \"catalog\" and \"schema\".";
	if (strncmp(message, "[UNRESOLVED_COLUMN", 18) == 0)
		return "Check the foreign table's column names, or map a column with the column option \"column_name\".";
	return NULL;
}

static void
sqlapi_report_failed(ZbSession *conn, const char *sql, StatementResponse *r)
{
	char	   *code = sqlapi_remote_text(r->error_code ? r->error_code : "UNKNOWN");
	char	   *msg = sqlapi_remote_text(r->error_message ? r->error_message
										 : "(no message)");
	const char *hint = sqlapi_hint_for_class(msg);

	ereport(ERROR,
			(errcode(sqlapi_errcode_for_class(msg)),
			 errmsg("remote statement failed: %s", sqlapi_first_line(msg)),
			 errdetail_internal("Databricks error_code %s: %s", code, msg),
			 hint ? errhint("%s", hint) : 0,
			 sql ? errcontext("remote SQL: %s", sql) : 0));
}

/* A refused request (HTTP status other than 200). */
static void
sqlapi_report_http(ZbSession *conn, SqlReq kind, const char *sql, ZbHttpResponse *resp)
{
	const ZbServerConfig *cfg = zb_session_config(conn);
	const char *perr = NULL;
	StatementResponse *r = sqlapi_parse(resp->body, resp->body_len, false, &perr);
	char	   *code = r && r->error_code ? sqlapi_remote_text(r->error_code) : NULL;
	char	   *msg = r && r->message ? sqlapi_remote_text(r->message) : NULL;
	const char *what;
	int			sqlstate;
	const char *hint = NULL;

	switch (kind)
	{
		case REQ_SUBMIT:
			what = "submitting the statement";
			break;
		case REQ_POLL:
			what = "polling the statement";
			break;
		case REQ_CHUNK:
			what = "fetching a result chunk";
			break;
		default:
			what = "cancelling the statement";
			break;
	}

	if (resp->status == 401)
	{
		sqlstate = ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION;
		hint = "Check client_id and client_secret in the user mapping.";
	}
	else if (resp->status == 403)
	{
		sqlstate = ERRCODE_INSUFFICIENT_PRIVILEGE;
		hint = "Grant the service principal CAN USE on the SQL warehouse and the privileges the query needs.";
	}
	else if (resp->status == 404 && kind == REQ_SUBMIT)
	{
		sqlstate = ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE;
		hint = psprintf("Check the server option \"warehouse_id\" (now \"%s\").",
						cfg->warehouse_id);
	}
	else if (resp->status == 429 || resp->status >= 500)
	{
		sqlstate = ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION;
		hint = "Databricks is overloaded or unavailable; retry later.";
	}
	else
		sqlstate = ERRCODE_FDW_ERROR;

	if (code || msg)
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg("Databricks SQL API refused %s: %s", what,
						msg ? sqlapi_first_line(msg) : code),
				 errdetail_internal("HTTP %ld, error_code %s: %s", resp->status,
						   code ? code : "(none)", msg ? msg : "(no message)"),
				 hint ? errhint("%s", hint) : 0,
				 sql ? errcontext("remote SQL: %s", sql) : 0));
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("Databricks SQL API refused %s: HTTP %ld", what, resp->status),
			 errdetail("The response was not an API error object (content-type \"%s\", %zu bytes).",
					   resp->content_type, resp->body_len),
			 hint ? errhint("%s", hint) : 0,
			 sql ? errcontext("remote SQL: %s", sql) : 0));
}

static void
sqlapi_report_malformed(const char *sql, const char *what, const char *perr)
{
	ereport(ERROR,
			(errcode(ERRCODE_FDW_REPLY_HANDLE),
			 errmsg("invalid response from the Databricks SQL API while %s", what),
			 errdetail_internal("%s", perr),
			 sql ? errcontext("remote SQL: %s", sql) : 0));
}

/* ---------------------------------------------------------------- HTTP */

/*
 * A submit's 200 answer: parse it and, if it names a statement still
 * running, register the id for cancellation.  Runs with interrupts held.
 */
static void
sqlapi_note_submitted(ZbSession *conn, ZbHttpResponse *resp, SqlSubmit *submit)
{
	StatementResponse *r = sqlapi_parse(resp->body, resp->body_len, false, &submit->perr);

	submit->r = r;
	if (r && r->statement_id && !sqlapi_terminal(r->state))
	{
		if (strlen(r->statement_id) >= SQLAPI_ID_LEN ||
			strspn(r->statement_id, "0123456789abcdefABCDEF-_") != strlen(r->statement_id))
			submit->perr = "invalid statement_id";
		else
			submit->f = sqlapi_register(conn, r->statement_id);
	}
}

/*
 * One API request, with retries.  Returns true when a final HTTP response
 * arrived (any status), false with err on token or transport failure.
 * Never throws for remote failures (only on out-of-memory, or an interrupt
 * while waiting when interrupts are not held).
 *
 * A submit (submit != NULL) holds interrupts during its HTTP exchange only
 * (the token fetch and the waits between attempts stay interruptible), and
 * registers the statement id of a 200 answer before it services them.
 */
static bool
sqlapi_try(ZbSession *conn, SqlReq kind, const char *method, const char *url,
		   const char *body, long timeout_ms, TimestampTz deadline, List *extra_headers,
		   ZbHttpResponse *resp, ZbError *err, ZbSqlStats *stats, SqlSubmit *submit)
{
	const ZbServerConfig *cfg = zb_session_config(conn);
	bool		auth = (kind != REQ_EXTERNAL);
	bool		refreshed = false;
	long		backoff_ms = 250;
	int			attempt;
	char	   *origin = NULL;

	if (kind == REQ_EXTERNAL && cfg->ca_file)
		origin = sqlapi_origin(cfg->workspace_url);

	for (attempt = 1;; attempt++)
	{
		const char *hdrs[16];
		int			nh = 0;
		char	   *authz = NULL;
		ZbHttpRequest req;
		ListCell   *lc;
		bool		ok;
		long		wait_ms;

		if (auth)
		{
			const char *token = zb_session_token(conn, ZB_TOKEN_SQL, NULL, deadline, err);

			if (token == NULL)
				return false;
			authz = psprintf("Authorization: Bearer %s", token);
			hdrs[nh++] = authz;
			hdrs[nh++] = "Accept: application/json";
			if (body)
				hdrs[nh++] = "Content-Type: application/json";
		}
		foreach(lc, extra_headers)
		{
			if (nh < lengthof(hdrs))
				hdrs[nh++] = (const char *) lfirst(lc);
		}

		zb_session_init_request(conn, &req);
		req.method = method;
		req.url = url;
		/* a private CA is for the workspace; cloud storage has public ones */
		if (kind == REQ_EXTERNAL && (origin == NULL || strcmp(sqlapi_origin(url), origin) != 0))
			req.ca_file = NULL;
		req.connect_timeout_ms = Min(req.connect_timeout_ms, timeout_ms);
		req.timeout_ms = timeout_ms;
		req.headers = hdrs;
		req.nheaders = nh;
		req.body = body;
		req.body_len = body ? strlen(body) : 0;
		req.max_response_bytes = kind == REQ_EXTERNAL ? SQLAPI_MAX_EXTERNAL_CHUNK
			: SQLAPI_MAX_RESPONSE;

		if (submit)
		{
			/*
			 * Until the statement id is registered, an interrupt must not
			 * lose the answer that carries it: hold interrupts, and let a
			 * pending one wait a short grace for the answer.  One that is
			 * already pending ends the query here, before anything is sent.
			 */
			CHECK_FOR_INTERRUPTS();
			HOLD_INTERRUPTS();
			req.interrupt_grace_ms = SQLAPI_SUBMIT_GRACE_MS;
		}
		ok = zb_http_request(&req, resp, err);
		if (authz)
		{
			memset(authz, 0, strlen(authz));
			pfree(authz);
		}
		if (submit)
		{
			if (ok && resp->status == 200)
				sqlapi_note_submitted(conn, resp, submit);
			else if (resp->interrupted && resp->request_sent)
				ereport(WARNING,
						(errcode(ERRCODE_FDW_ERROR),
						 errmsg("the remote statement may still run on the warehouse"),
						 errdetail("The query was interrupted while its statement was being submitted, and the statement id did not arrive within %d ms, so the statement could not be cancelled.",
								   SQLAPI_SUBMIT_GRACE_MS),
						 cfg->wait_timeout_s > 0
						 ? errhint("With the server option wait_timeout above 0s the submit waits for the statement; with '0s' it answers at once.")
						 : 0));
			RESUME_INTERRUPTS();
			/* an interrupt that arrived during the submit ends the query here */
			CHECK_FOR_INTERRUPTS();
		}
		if (stats)
		{
			stats->requests++;
			stats->bytes += resp->body_len;
		}

		if (!ok)
		{
			/*
			 * A submit that may have reached the server is not repeated: it
			 * could start a second statement.  Refused connections are safe.
			 */
			bool		may_retry = !resp->interrupted && err->retryable &&
				(kind != REQ_SUBMIT || err->curl_code == CURLE_COULDNT_CONNECT);

			if (!may_retry || attempt >= SQLAPI_TRANSPORT_ATTEMPTS || kind == REQ_CANCEL)
				return false;
			wait_ms = backoff_ms;
		}
		else if (resp->status == 401 && auth && !refreshed)
		{
			/* an expired or revoked token: fetch a new one, once */
			zb_session_token_refused(conn, ZB_TOKEN_SQL, NULL);
			refreshed = true;
			continue;
		}
		else if ((resp->status == 429 || resp->status == 503) &&
				 attempt < SQLAPI_MAX_ATTEMPTS && kind != REQ_CANCEL)
		{
			wait_ms = resp->retry_after_s >= 0
				? Min(resp->retry_after_s, SQLAPI_MAX_RETRY_AFTER_S) * 1000L
				: backoff_ms;
		}
		else
			return true;

		sqlapi_sleep(wait_ms);
		backoff_ms = Min(backoff_ms * 2, 8000);
	}
}

/* Turn a token or transport failure into an ERROR. */
static void
sqlapi_report_error(ZbSession *conn, SqlReq kind, const char *sql, ZbError *err)
{
	const ZbServerConfig *cfg = zb_session_config(conn);

	if (kind == REQ_EXTERNAL)
	{
		/* the URL is a credential: name the failure, not the link */
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("could not fetch a result chunk from cloud storage: %s",
						err->kind == ZB_ERR_CONFIG
						? "a plain http:// link to an address that is not loopback was refused"
						: err->curl_code ? curl_easy_strerror(err->curl_code)
						: err->kind == ZB_ERR_PROTOCOL ? "response too large"
						: zb_error_kind_name(err)),
				 sql ? errcontext("remote SQL: %s", sql) : 0));
	}
	if (err->kind == ZB_ERR_AUTH || (err->kind == ZB_ERR_HTTP && err->http_status > 0 &&
									 strstr(err->message, "token endpoint")))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("could not get an OAuth token for server \"%s\"", cfg->servername),
				 errdetail_internal("%s", err->message),
				 err->kind == ZB_ERR_AUTH
				 ? errhint("Check client_id and client_secret in the user mapping.") : 0));
	ereport(ERROR,
			(errcode(err->kind == ZB_ERR_TIMEOUT ? ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION
					 : err->kind == ZB_ERR_PROTOCOL ? ERRCODE_FDW_REPLY_HANDLE
					 : ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
			 errmsg("could not reach the Databricks SQL API of server \"%s\"",
					cfg->servername),
			 errdetail_internal("%s", err->message),
			 err->kind == ZB_ERR_TLS
			 ? errhint("Check the server option ca_file, or the workspace_url host name.")
			 : err->kind == ZB_ERR_CONFIG
			 ? errhint("Use https:// for a workspace; plain http:// is only for an emulator on a loopback address.")
			 : errhint("Check the server option workspace_url and that this host can reach it."),
			 sql ? errcontext("remote SQL: %s", sql) : 0));
}

static void
sqlapi_request(ZbSession *conn, SqlReq kind, const char *sql, const char *method,
			   const char *url, const char *body, List *extra_headers,
			   ZbHttpResponse *resp, ZbSqlStats *stats)
{
	ZbError		err;

	if (!sqlapi_try(conn, kind, method, url, body, zb_session_config(conn)->request_timeout_ms,
					0, extra_headers, resp, &err, stats, NULL))
		sqlapi_report_error(conn, kind, sql, &err);
}

/* ---------------------------------------------------------------- registry */

static void
sqlapi_register_callbacks(void)
{
	if (!callbacks_registered)
	{
		RegisterXactCallback(sqlapi_xact_callback, NULL);
		RegisterSubXactCallback(sqlapi_subxact_callback, NULL);
		callbacks_registered = true;
	}
}

static InFlight *
sqlapi_register(ZbSession *conn, const char *id)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "zerobus in-flight statement",
											  ALLOCSET_SMALL_SIZES);
	InFlight   *f = MemoryContextAllocZero(cxt, sizeof(InFlight));

	sqlapi_register_callbacks();
	f->cxt = cxt;
	strlcpy(f->id, id, sizeof(f->id));
	f->nest_level = GetCurrentTransactionNestLevel();
	f->session = conn;
	zb_session_hold(conn, cxt);
	f->next = inflight;
	inflight = f;
	return f;
}

static void
sqlapi_unregister(InFlight *f)
{
	InFlight  **p;

	for (p = &inflight; *p; p = &(*p)->next)
	{
		if (*p == f)
		{
			*p = f->next;
			MemoryContextDelete(f->cxt);
			return;
		}
	}
}

/*
 * Cancel a statement and wait until Databricks reports it in a terminal
 * state, all before 'deadline' (the token fetch too, if one is needed).
 * Never throws for remote failures: it also runs during transaction abort,
 * with interrupts held, where the deadline is what bounds it.  Returns
 * false if the cancel could not be confirmed.
 */
static bool
sqlapi_cancel(ZbSession *conn, const char *id, TimestampTz deadline)
{
	char	   *base = psprintf("%s%s/%s", zb_session_config(conn)->workspace_url,
								STATEMENTS_PATH, id);
	char	   *url = psprintf("%s/cancel", base);
	ZbHttpResponse resp;
	ZbError		err;
	long		sleep_ms = 20;

	if (zb_ms_until(deadline) == 0)
		zb_error_set(&err, ZB_ERR_TIMEOUT, false, "no time was left to send the cancel");
	else if (sqlapi_try(conn, REQ_CANCEL, "POST", url, "{}", zb_ms_until(deadline), deadline,
						NIL, &resp, &err, NULL, NULL))
	{
		if (resp.status != 200)
			zb_error_set(&err, ZB_ERR_HTTP, false, "HTTP %ld", resp.status);
	}
	if (err.kind != ZB_OK)
	{
		ereport(WARNING,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("could not cancel remote statement %s", id),
				 errdetail_internal("%s", err.message)));
		return false;
	}
	/* cancel is asynchronous: poll until the statement has stopped */
	while (zb_ms_until(deadline) > 0)
	{
		const char *perr;
		StatementResponse *r;

		if (!sqlapi_try(conn, REQ_CANCEL, "GET", base, NULL, zb_ms_until(deadline) + 1,
						deadline, NIL, &resp, &err, NULL, NULL))
			break;
		if (resp.status != 200)
			break;
		r = sqlapi_parse(resp.body, resp.body_len, false, &perr);
		if (r == NULL || sqlapi_terminal(r->state))
			return true;
		sqlapi_sleep(Min(sleep_ms, zb_ms_until(deadline)));
		sleep_ms = Min(sleep_ms * 2, 500);
	}
	/* accepted, and Databricks stops it on its own time: not worth a warning */
	ereport(DEBUG1,
			(errmsg_internal("remote statement %s accepted its cancel but was not seen stopped in time",
							 id)));
	return false;
}

/* Cancel the in-flight statements of nest level >= level (0: all). */
static void
sqlapi_cancel_inflight(int level)
{
	MemoryContext cxt;
	MemoryContext old;
	InFlight   *f;
	InFlight   *next;
	TimestampTz deadline;

	if (inflight == NULL)
		return;
	/* one budget for all of them: an abort (or a terminate) must not linger */
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), SQLAPI_CANCEL_BUDGET_MS);
	cxt = AllocSetContextCreate(TopMemoryContext, "zerobus statement cancel",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	for (f = inflight; f; f = next)
	{
		next = f->next;
		if (f->nest_level < level)
			continue;
		PG_TRY();
		{
			(void) sqlapi_cancel(f->session, f->id, deadline);
		}
		PG_CATCH();
		{
			/* out of memory during abort: report, and do not loop */
			EmitErrorReport();
			FlushErrorState();
		}
		PG_END_TRY();
		MemoryContextReset(cxt);
		sqlapi_unregister(f);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

static void
sqlapi_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			sqlapi_cancel_inflight(0);
			break;
		default:
			break;
	}
}

static void
sqlapi_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		sqlapi_cancel_inflight(GetCurrentTransactionNestLevel());
}

/* ---------------------------------------------------------------- connect */

/*
 * The session statements of 'userid' on a server run in (held until the
 * current memory context goes), with the options the SQL API needs.
 */
ZbSession *
zb_sql_connect(Oid serverid, Oid userid)
{
	ZbSession  *conn = zb_session_get(serverid, userid);

	zb_session_require(conn, ZB_NEED_SQL);
	return conn;
}

/* ---------------------------------------------------------------- execute */

static char *
sqlapi_submit_body(ZbSession *conn, const char *sql, int nparams, const ZbSqlParam *params,
				   bool external_links)
{
	const ZbServerConfig *cfg = zb_session_config(conn);
	StringInfoData b;
	int			i;

	initStringInfo(&b);
	appendStringInfoChar(&b, '{');
	sqlapi_append_json(&b, "statement", sql);
	sqlapi_append_json(&b, "warehouse_id", cfg->warehouse_id);
	if (cfg->catalog)
		sqlapi_append_json(&b, "catalog", cfg->catalog);
	if (cfg->schema)
		sqlapi_append_json(&b, "schema", cfg->schema);
	appendStringInfo(&b, ",\"wait_timeout\":\"%lds\",\"on_wait_timeout\":\"CONTINUE\"",
					 cfg->wait_timeout_s);
	appendStringInfo(&b, ",\"disposition\":\"%s\",\"format\":\"JSON_ARRAY\"",
					 external_links ? "EXTERNAL_LINKS" : "INLINE");
	if (nparams > 0)
	{
		appendStringInfoString(&b, ",\"parameters\":[");
		for (i = 0; i < nparams; i++)
		{
			if (i > 0)
				appendStringInfoChar(&b, ',');
			appendStringInfoChar(&b, '{');
			sqlapi_append_json(&b, "name", params[i].name);
			if (params[i].value)
				sqlapi_append_json(&b, "value", params[i].value);
			sqlapi_append_json(&b, "type", params[i].type);
			appendStringInfoChar(&b, '}');
		}
		appendStringInfoChar(&b, ']');
	}
	appendStringInfoChar(&b, '}');
	return b.data;
}

/* Set up reading rows from body[start..end) (a data_array or a bare array). */
static void
sqlapi_start_rows(ZbSqlStatement *st, size_t start, size_t end)
{
	jscan_init(&st->rows, st->body, end);
	st->rows.pos = start;
	st->rows_start = start;
	if (!jscan_begin(&st->rows, '['))
		sqlapi_report_malformed(st->sql, "reading a result chunk", st->rows.err);
	st->rows_first = true;
	st->in_rows = true;
}

/*
 * Load a chunk's rows from a ResultData: inline data, or the external link
 * (fetched now).  The ResultData and the body live in chunk_cxt.
 */
static void sqlapi_fetch_chunk(ZbSqlStatement *st, int n, const char *link, bool refreshing);

static void
sqlapi_refetch_link(ZbSqlStatement *st, int n)
{
	sqlapi_fetch_chunk(st, n, NULL, true);
}

static void
sqlapi_load_result(ZbSqlStatement *st, ResultData *rd, bool refreshing)
{
	st->chunk_index = rd->chunk_index;
	st->next_chunk = rd->next_chunk_index;
	st->next_link = rd->next_link;
	st->in_rows = false;

	if (st->external)
	{
		ZbHttpResponse resp;
		const char *perr;

		if (rd->ext_url == NULL)
		{
			if (st->total_chunks == 0)
				return;
			sqlapi_report_malformed(st->sql, "reading a result chunk",
									"an EXTERNAL_LINKS result without a link");
		}
		sqlapi_request(st->conn, REQ_EXTERNAL, st->sql, "GET", rd->ext_url, NULL,
					   rd->ext_headers, &resp, &st->stats);
		if ((resp.status == 403 || resp.status == 404 || resp.status == 410) && !refreshing)
		{
			/* an expired pre-signed link: ask for a fresh one, once */
			sqlapi_refetch_link(st, rd->chunk_index);
			return;
		}
		if (resp.status != 200)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
					 errmsg("could not fetch result chunk %d from cloud storage: HTTP %ld",
							rd->chunk_index, resp.status),
					 resp.status == 403 ? errhint("The pre-signed link may have expired (links live about 15 minutes); run the query again.") : 0,
					 errcontext("remote SQL: %s", st->sql)));
		if (!pg_verify_mbstr(PG_UTF8, resp.body, resp.body_len, true))
		{
			perr = "the chunk is not valid UTF-8";
			sqlapi_report_malformed(st->sql, "reading a result chunk", perr);
		}
		st->body = resp.body;
		st->body_len = resp.body_len;
		sqlapi_start_rows(st, 0, resp.body_len);
	}
	else
	{
		if (!rd->has_data)
			return;
		sqlapi_start_rows(st, rd->data_start, rd->data_end);
	}
	st->stats.chunks++;
}

/* Fetch chunk n (through its internal link if we have one). */
static void
sqlapi_fetch_chunk(ZbSqlStatement *st, int n, const char *link, bool refreshing)
{
	MemoryContext old;
	ZbHttpResponse resp;
	StatementResponse *r;
	const char *perr = NULL;
	char	   *url;

	MemoryContextReset(st->chunk_cxt);
	st->body = NULL;
	st->in_rows = false;
	old = MemoryContextSwitchTo(st->chunk_cxt);
	/* internal links are paths on the workspace: never another host */
	if (link && link[0] == '/' && strncmp(link, STATEMENTS_PATH "/", strlen(STATEMENTS_PATH) + 1) == 0)
		url = psprintf("%s%s", zb_session_config(st->conn)->workspace_url, link);
	else
		url = psprintf("%s%s/%s/result/chunks/%d", zb_session_config(st->conn)->workspace_url,
					   STATEMENTS_PATH, st->id, n);
	sqlapi_request(st->conn, REQ_CHUNK, st->sql, "GET", url, NULL, NIL, &resp, &st->stats);
	if (resp.status != 200)
		sqlapi_report_http(st->conn, REQ_CHUNK, st->sql, &resp);
	r = sqlapi_parse(resp.body, resp.body_len, true, &perr);
	if (r == NULL)
		sqlapi_report_malformed(st->sql, "reading a result chunk", perr);
	if (r->result.chunk_index != n)
		sqlapi_report_malformed(st->sql, "reading a result chunk",
								psprintf("asked for chunk %d, got chunk %d", n,
										 r->result.chunk_index));
	st->body = resp.body;
	st->body_len = resp.body_len;
	sqlapi_load_result(st, &r->result, refreshing);
	MemoryContextSwitchTo(old);
}

/*
 * Run a statement to completion and position at its first row.  FAILED and
 * CANCELED statements, refused requests and unreachable services raise an
 * ERROR.  The statement's memory is a child of the current context.
 */
ZbSqlStatement *
zb_sql_execute(ZbSession *conn, const char *sql, int nparams, const ZbSqlParam *params,
			   bool external_links)
{
	const ZbServerConfig *cfg = zb_session_config(conn);
	ZbSqlStatement *st;
	MemoryContext cxt;
	MemoryContext old;
	char	   *body;
	char	   *poll_url;
	ZbHttpResponse resp;
	StatementResponse *r;
	const char *perr = NULL;
	InFlight   *f = NULL;
	SqlSubmit	submit;
	ZbError		err;
	TimestampTz deadline = 0;
	long		sleep_ms = SQLAPI_FIRST_POLL_MS;
	int			i;
	ListCell   *lc;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "zerobus statement",
								ALLOCSET_DEFAULT_SIZES);
	st = MemoryContextAllocZero(cxt, sizeof(ZbSqlStatement));
	st->cxt = cxt;
	st->chunk_cxt = AllocSetContextCreate(cxt, "zerobus result chunk",
										  ALLOCSET_DEFAULT_SIZES);
	st->conn = conn;
	st->sql = MemoryContextStrdup(cxt, sql);
	st->external = external_links;
	st->chunk_index = -1;
	st->next_chunk = -1;
	st->convert = GetDatabaseEncoding() != PG_UTF8 && GetDatabaseEncoding() != PG_SQL_ASCII;

	old = MemoryContextSwitchTo(st->chunk_cxt);
	body = sqlapi_submit_body(conn, sql, nparams, params, external_links);
	if (cfg->statement_timeout_ms > 0)
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											   cfg->statement_timeout_ms);

	/*
	 * The submit: its exchange runs with interrupts held and registers the
	 * statement id before servicing one (sqlapi_try).  The server holds the
	 * answer up to wait_timeout, so that is added to the request timeout.
	 */
	memset(&submit, 0, sizeof(submit));
	memset(&resp, 0, sizeof(resp));
	if (!sqlapi_try(conn, REQ_SUBMIT, "POST",
					psprintf("%s%s", cfg->workspace_url, STATEMENTS_PATH),
					body, cfg->request_timeout_ms + cfg->wait_timeout_s * 1000L,
					0, NIL, &resp, &err, &st->stats, &submit))
	{
		if (resp.interrupted)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("canceling statement: interrupted while submitting the remote statement"),
					 errcontext("remote SQL: %s", sql)));
		sqlapi_report_error(conn, REQ_SUBMIT, sql, &err);
	}
	f = submit.f;
	r = submit.r;
	perr = submit.perr;

	if (resp.status != 200)
		sqlapi_report_http(conn, REQ_SUBMIT, sql, &resp);
	if (r == NULL || perr)
		sqlapi_report_malformed(sql, "submitting the statement", perr ? perr : "no statement");
	if (r->statement_id == NULL)
		sqlapi_report_malformed(sql, "submitting the statement", "no statement_id");
	st->id = MemoryContextStrdup(cxt, r->statement_id);

	/* poll while PENDING or RUNNING */
	while (!sqlapi_terminal(r->state))
	{
		if (deadline && zb_ms_until(deadline) == 0)
		{
			if (f)
			{
				sqlapi_cancel(conn, st->id,
							  TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														  SQLAPI_CANCEL_WAIT_MS));
				sqlapi_unregister(f);
				f = NULL;
			}
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("remote statement cancelled after the server's statement_timeout of %ld ms",
							cfg->statement_timeout_ms),
					 errcontext("remote SQL: %s", sql)));
		}
		sqlapi_sleep(deadline ? Min(sleep_ms, zb_ms_until(deadline)) : sleep_ms);
		sleep_ms = Min(sleep_ms * 2, SQLAPI_MAX_POLL_MS);

		MemoryContextSwitchTo(old);
		MemoryContextReset(st->chunk_cxt);
		MemoryContextSwitchTo(st->chunk_cxt);
		poll_url = psprintf("%s%s/%s", cfg->workspace_url, STATEMENTS_PATH, st->id);
		sqlapi_request(conn, REQ_POLL, sql, "GET", poll_url, NULL, NIL, &resp, &st->stats);
		if (resp.status != 200)
			sqlapi_report_http(conn, REQ_POLL, sql, &resp);
		r = sqlapi_parse(resp.body, resp.body_len, false, &perr);
		if (r == NULL)
			sqlapi_report_malformed(sql, "polling the statement", perr);
	}
	if (f)
	{
		sqlapi_unregister(f);
		f = NULL;
	}

	if (strcmp(r->state, "FAILED") == 0)
		sqlapi_report_failed(conn, sql, r);
	if (strcmp(r->state, "SUCCEEDED") != 0)
		ereport(ERROR,
				(errcode(strcmp(r->state, "CANCELED") == 0 ? ERRCODE_QUERY_CANCELED
						 : ERRCODE_FDW_ERROR),
				 errmsg("remote statement ended in state %s", r->state),
				 strcmp(r->state, "CANCELED") == 0
				 ? errdetail("The statement was cancelled on the Databricks side.")
				 : errdetail("Its result is no longer available."),
				 errcontext("remote SQL: %s", sql)));

	/* the manifest: columns and chunk counts, kept for the statement's life */
	if (!r->has_manifest)
		sqlapi_report_malformed(sql, "reading the result", "a SUCCEEDED statement without a manifest");
	if (r->format && strcmp(r->format, "JSON_ARRAY") != 0)
		sqlapi_report_malformed(sql, "reading the result",
								psprintf("unexpected result format \"%s\"", r->format));
	if (list_length(r->columns) != r->column_count)
		sqlapi_report_malformed(sql, "reading the result",
								psprintf("column_count is %d but %d columns are described",
										 r->column_count, list_length(r->columns)));
	st->ncols = r->column_count;
	st->cols = MemoryContextAllocZero(cxt, sizeof(ZbSqlColumn) * Max(1, st->ncols));
	i = 0;
	foreach(lc, r->columns)
	{
		ZbSqlColumn *c = (ZbSqlColumn *) lfirst(lc);

		st->cols[i].name = MemoryContextStrdup(cxt, c->name);
		st->cols[i].type_name = MemoryContextStrdup(cxt, c->type_name);
		st->cols[i].type_text = MemoryContextStrdup(cxt, c->type_text);
		i++;
	}
	st->total_rows = r->total_row_count;
	st->total_chunks = r->total_chunk_count;
	st->offsets = MemoryContextAllocZero(cxt, sizeof(int) * Max(1, st->ncols));
	MemoryContextSwitchTo(cxt);
	initStringInfo(&st->rowbuf);

	/* the first chunk came with the response */
	MemoryContextSwitchTo(st->chunk_cxt);
	st->body = resp.body;
	st->body_len = resp.body_len;
	if (r->result.present && st->total_chunks > 0)
		sqlapi_load_result(st, &r->result, false);
	else if (st->total_chunks > 0)
		st->next_chunk = 0;
	MemoryContextSwitchTo(old);
	return st;
}

int
zb_sql_ncolumns(ZbSqlStatement *st)
{
	return st->ncols;
}

const ZbSqlColumn *
zb_sql_column(ZbSqlStatement *st, int i)
{
	Assert(i >= 0 && i < st->ncols);
	return &st->cols[i];
}

int64
zb_sql_total_rows(ZbSqlStatement *st)
{
	return st->total_rows;
}

const char *
zb_sql_statement_id(ZbSqlStatement *st)
{
	return st->id;
}

const ZbSqlStats *
zb_sql_stats(ZbSqlStatement *st)
{
	return &st->stats;
}

/* Parse the next row of the current chunk into st->rowbuf. */
static bool
sqlapi_parse_row(ZbSqlStatement *st, char **values)
{
	JScan	   *js = &st->rows;
	bool		first = true;
	bool		more;
	int			n = 0;
	int			i;

	resetStringInfo(&st->rowbuf);
	if (!jscan_begin(js, '['))
		return false;
	while (jscan_next(js, ']', &first, &more) && more)
	{
		JScanKind	kind;
		int			start = st->rowbuf.len;

		if (n >= st->ncols)
		{
			js->err = "a row has more values than the result has columns";
			return false;
		}
		if (!jscan_scalar(js, &st->rowbuf, &kind))
			return false;
		if (kind == JS_NULL)
			st->offsets[n] = -1;
		else
		{
			appendStringInfoChar(&st->rowbuf, '\0');
			st->offsets[n] = start;
		}
		n++;
	}
	if (js->err)
		return false;
	if (n != st->ncols)
	{
		js->err = "a row has fewer values than the result has columns";
		return false;
	}
	for (i = 0; i < n; i++)
	{
		if (st->offsets[i] < 0)
			values[i] = NULL;
		else if (st->convert)
			values[i] = pg_any_to_server(st->rowbuf.data + st->offsets[i],
										 strlen(st->rowbuf.data + st->offsets[i]), PG_UTF8);
		else
			values[i] = st->rowbuf.data + st->offsets[i];
	}
	return true;
}

/*
 * The result ended: it must have ended where the manifest said it would.  A
 * chunk whose link to the next one was lost would otherwise end the scan
 * early and silently return part of the rows.
 */
static void
sqlapi_check_complete(ZbSqlStatement *st)
{
	if (st->total_chunks > 0 && st->chunk_index != st->total_chunks - 1)
		sqlapi_report_malformed(st->sql, "reading the result",
								psprintf("the result ended after chunk %d, but the manifest announced %d chunks",
										 st->chunk_index, st->total_chunks));
	if (st->total_rows >= 0 && st->rows_read != st->total_rows)
		sqlapi_report_malformed(st->sql, "reading the result",
								psprintf("the result ended after " INT64_FORMAT " rows, but the manifest announced " INT64_FORMAT,
										 st->rows_read, st->total_rows));
}

/*
 * The next row: values[i] points at column i's text (NULL for SQL NULL),
 * valid until the next call.  Returns false after the last row.
 */
bool
zb_sql_next_row(ZbSqlStatement *st, char **values)
{
	for (;;)
	{
		if (st->in_rows)
		{
			bool		more;

			if (!jscan_next(&st->rows, ']', &st->rows_first, &more))
				sqlapi_report_malformed(st->sql, "reading a result chunk", st->rows.err);
			if (more)
			{
				if (!sqlapi_parse_row(st, values))
					sqlapi_report_malformed(st->sql,
											psprintf("reading row %lld of the result",
													 (long long) st->stats.rows + 1),
											st->rows.err);
				st->stats.rows++;
				st->rows_read++;
				return true;
			}
			st->in_rows = false;
		}
		if (st->next_chunk < 0)
		{
			sqlapi_check_complete(st);
			return false;
		}
		if (st->next_chunk >= st->total_chunks)
			sqlapi_report_malformed(st->sql, "reading a result chunk",
									psprintf("chunk %d points to chunk %d, but the result has %d chunks",
											 st->chunk_index, st->next_chunk, st->total_chunks));
		CHECK_FOR_INTERRUPTS();
		sqlapi_fetch_chunk(st, st->next_chunk, st->next_link, false);
	}
}

/* Read the result again from its first row (a rescan with the same parameters). */
void
zb_sql_rewind(ZbSqlStatement *st)
{
	if (st->total_chunks == 0)
		return;
	st->rows_read = 0;
	if (st->chunk_index == 0 && st->body != NULL && !st->external)
	{
		/* still holding chunk 0: no need to fetch it again */
		JScan		js = st->rows;

		jscan_init(&st->rows, st->body, js.end);
		st->rows.pos = st->rows_start;
		if (!jscan_begin(&st->rows, '['))
			sqlapi_report_malformed(st->sql, "reading a result chunk", st->rows.err);
		st->rows_first = true;
		st->in_rows = true;
		st->next_chunk = st->total_chunks > 1 ? 1 : -1;
		st->next_link = NULL;
		return;
	}
	st->in_rows = false;
	st->next_chunk = 0;
	st->next_link = NULL;
}

void
zb_sql_release(ZbSqlStatement *st)
{
	MemoryContextDelete(st->cxt);
}
