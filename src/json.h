/*-------------------------------------------------------------------------
 * json.h
 *	  Reading fields out of JSON from remote services, without throwing
 *	  on malformed input.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_JSON_H
#define ZB_JSON_H

#include "lib/stringinfo.h"

/*
 * Extract scalar values at dotted paths ("status.error.message") from a JSON
 * document.  values[i] is the de-escaped text of the scalar (NULL when absent
 * or JSON null).  Returns false, with *errmsg set, if the text is not JSON.
 */
extern bool zb_json_get_fields(const char *json, size_t len, int npaths,
							   const char *const *paths, char **values,
							   char **errmsg);

/* Append s as a JSON string literal (with quotes). */
extern void zb_json_append_string(StringInfo buf, const char *s);

#endif							/* ZB_JSON_H */
