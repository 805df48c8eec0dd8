/*-------------------------------------------------------------------------
 * jscan.h
 *	  A pull scanner over JSON text: walk objects and arrays in place, copy
 *	  out only the scalars asked for, skip the rest.
 *
 * Built for SQL Statement API responses, whose result chunks can be tens of
 * megabytes: rows are read one at a time from the received bytes, so memory
 * is the chunk plus one row, never a parsed tree.  The input is untrusted:
 * every function returns false with js->err set on malformed text (nothing
 * is thrown, except out-of-memory), nesting is bounded, and strings are
 * checked for control characters and broken escapes.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_JSCAN_H
#define ZB_JSCAN_H

#include "lib/stringinfo.h"

#define JSCAN_MAX_DEPTH 64

typedef struct JScan
{
	const char *s;
	size_t		pos;
	size_t		end;
	int			depth;
	const char *err;			/* static text describing the first error */
} JScan;

typedef enum JScanKind
{
	JS_STRING,
	JS_NUMBER,
	JS_TRUE,
	JS_FALSE,
	JS_NULL,
	JS_OBJECT,
	JS_ARRAY
} JScanKind;

extern void jscan_init(JScan *js, const char *s, size_t len);
extern bool jscan_peek_kind(JScan *js, JScanKind *kind);
extern bool jscan_string(JScan *js, StringInfo out);
extern bool jscan_scalar(JScan *js, StringInfo out, JScanKind *kind);
extern bool jscan_skip(JScan *js);
extern bool jscan_begin(JScan *js, char open);
extern bool jscan_next(JScan *js, char close, bool *first, bool *more);
extern bool jscan_key(JScan *js, StringInfo key);
extern bool jscan_at_end(JScan *js);

#endif							/* ZB_JSCAN_H */
