/*-------------------------------------------------------------------------
 * sqlparse.c
 *	  Reading the SQL Statement Execution API's JSON responses: statement
 *	  responses, refused requests' error objects, and result chunks.
 *
 * Bodies are untrusted: they are checked to be UTF-8 and read with jscan
 * (a pull scanner that never throws on malformed input), member by member
 * from a table per object; anything unexpected is a message for the caller
 * to report, never an ERROR from here.  A chunk's rows are not read here:
 * only where they are (sqlresult.c reads them one at a time).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/attnum.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "sqlapi_int.h"

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
StatementResponse *
zb_sql_parse_response(const char *body, size_t len, bool top_is_result, const char **err)
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
