/*-------------------------------------------------------------------------
 * json.c
 *	  Small JSON helpers on PostgreSQL's own JSON parser.
 *
 * Responses from the token endpoint and the SQL API are untrusted bytes:
 * pg_parse_json() reports a syntax error as a value, so a malformed body
 * becomes a ZbError, not an ERROR thrown from deep inside a worker.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/json.h"

#include "compat.h"
#include "json.h"

#define JSON_MAX_DEPTH 64

typedef struct FieldState
{
	int			depth;
	const char *path[JSON_MAX_DEPTH];	/* field names; NULL inside arrays */
	int			npaths;
	const char *const *paths;
	char	  **values;
} FieldState;

static bool
json_path_matches(FieldState *st, const char *target)
{
	const char *p = target;
	int			i;

	for (i = 0; i < st->depth; i++)
	{
		size_t		len;

		if (st->path[i] == NULL)
			return false;
		len = strlen(st->path[i]);
		if (strncmp(p, st->path[i], len) != 0)
			return false;
		p += len;
		if (i < st->depth - 1)
		{
			if (*p != '.')
				return false;
			p++;
		}
	}
	return *p == '\0';
}

static ZB_JSON_CB
json_field_start(void *state, char *fname, bool isnull)
{
	FieldState *st = (FieldState *) state;

	if (st->depth < JSON_MAX_DEPTH)
		st->path[st->depth] = fname;
	st->depth++;
	ZB_JSON_CB_OK;
}

static ZB_JSON_CB
json_field_end(void *state, char *fname, bool isnull)
{
	((FieldState *) state)->depth--;
	ZB_JSON_CB_OK;
}

static ZB_JSON_CB
json_array_elem_start(void *state, bool isnull)
{
	FieldState *st = (FieldState *) state;

	if (st->depth < JSON_MAX_DEPTH)
		st->path[st->depth] = NULL;
	st->depth++;
	ZB_JSON_CB_OK;
}

static ZB_JSON_CB
json_array_elem_end(void *state, bool isnull)
{
	((FieldState *) state)->depth--;
	ZB_JSON_CB_OK;
}

static ZB_JSON_CB
json_scalar(void *state, char *token, JsonTokenType tokentype)
{
	FieldState *st = (FieldState *) state;
	int			i;

	if (st->depth > JSON_MAX_DEPTH)
		ZB_JSON_CB_OK;
	for (i = 0; i < st->npaths; i++)
	{
		if (json_path_matches(st, st->paths[i]))
		{
			st->values[i] = (tokentype == JSON_TOKEN_NULL) ? NULL : pstrdup(token);
			break;
		}
	}
	ZB_JSON_CB_OK;
}

bool
zb_json_get_fields(const char *json, size_t len, int npaths, const char *const *paths,
				   char **values, char **errmsg)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	FieldState	st;
	JsonParseErrorType rc;

	memset(values, 0, sizeof(char *) * npaths);
	memset(&st, 0, sizeof(st));
	st.npaths = npaths;
	st.paths = paths;
	st.values = values;

	memset(&sem, 0, sizeof(sem));
	sem.semstate = &st;
	sem.object_field_start = json_field_start;
	sem.object_field_end = json_field_end;
	sem.array_element_start = json_array_elem_start;
	sem.array_element_end = json_array_elem_end;
	sem.scalar = json_scalar;

	lex = zb_json_lex_cstring(unconstify(char *, json), len, PG_UTF8, true);
	rc = pg_parse_json(lex, &sem);
	if (rc != JSON_SUCCESS)
	{
		*errmsg = json_errdetail(rc, lex);
		return false;
	}
	return true;
}

void
zb_json_append_string(StringInfo buf, const char *s)
{
	escape_json(buf, s);
}
