/*-------------------------------------------------------------------------
 * jscan.c
 *	  A non-throwing pull scanner over JSON text (see jscan.h).
 *
 * Usage pattern, for an object:
 *
 *		bool first = true, more;
 *		if (!jscan_begin(js, '{')) fail;
 *		while (jscan_next(js, '}', &first, &more) && more)
 *		{
 *			if (!jscan_key(js, key)) fail;
 *			... read or jscan_skip() the value ...
 *		}
 *		if (js->err) fail;
 *
 * Arrays are the same with '[' / ']' and no key.  Strings are decoded
 * (escapes, \uXXXX with surrogate pairs) into UTF-8; \u0000 is refused,
 * as PostgreSQL text cannot hold it.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "jscan.h"

void
jscan_init(JScan *js, const char *s, size_t len)
{
	js->s = s;
	js->pos = 0;
	js->end = len;
	js->depth = 0;
	js->err = NULL;
}

static inline void
js_ws(JScan *js)
{
	while (js->pos < js->end)
	{
		char		c = js->s[js->pos];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		js->pos++;
	}
}

static inline bool
js_fail(JScan *js, const char *err)
{
	if (js->err == NULL)
		js->err = err;
	return false;
}

bool
jscan_at_end(JScan *js)
{
	js_ws(js);
	return js->pos == js->end;
}

bool
jscan_peek_kind(JScan *js, JScanKind *kind)
{
	if (js->err)
		return false;
	js_ws(js);
	if (js->pos >= js->end)
		return js_fail(js, "unexpected end of JSON");
	switch (js->s[js->pos])
	{
		case '"':
			*kind = JS_STRING;
			return true;
		case '{':
			*kind = JS_OBJECT;
			return true;
		case '[':
			*kind = JS_ARRAY;
			return true;
		case 't':
			*kind = JS_TRUE;
			return true;
		case 'f':
			*kind = JS_FALSE;
			return true;
		case 'n':
			*kind = JS_NULL;
			return true;
		case '-':
		case '0':
		case '1':
		case '2':
		case '3':
		case '4':
		case '5':
		case '6':
		case '7':
		case '8':
		case '9':
			*kind = JS_NUMBER;
			return true;
	}
	return js_fail(js, "unexpected character in JSON");
}

static int
js_hex4(const char *p)
{
	int			v = 0;
	int			i;

	for (i = 0; i < 4; i++)
	{
		char		c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

static void
js_append_utf8(StringInfo out, uint32 cp)
{
	char		b[4];
	int			n;

	if (cp < 0x80)
	{
		b[0] = cp;
		n = 1;
	}
	else if (cp < 0x800)
	{
		b[0] = 0xC0 | (cp >> 6);
		b[1] = 0x80 | (cp & 0x3F);
		n = 2;
	}
	else if (cp < 0x10000)
	{
		b[0] = 0xE0 | (cp >> 12);
		b[1] = 0x80 | ((cp >> 6) & 0x3F);
		b[2] = 0x80 | (cp & 0x3F);
		n = 3;
	}
	else
	{
		b[0] = 0xF0 | (cp >> 18);
		b[1] = 0x80 | ((cp >> 12) & 0x3F);
		b[2] = 0x80 | ((cp >> 6) & 0x3F);
		b[3] = 0x80 | (cp & 0x3F);
		n = 4;
	}
	appendBinaryStringInfo(out, b, n);
}

/*
 * A string value; decoded into out (appended, NUL-terminated) unless out is
 * NULL.  Raw bytes are copied as they are: the caller validates the
 * encoding of the whole document once.
 */
bool
jscan_string(JScan *js, StringInfo out)
{
	const char *s = js->s;
	size_t		p;

	if (js->err)
		return false;
	js_ws(js);
	if (js->pos >= js->end || s[js->pos] != '"')
		return js_fail(js, "expected a JSON string");
	p = js->pos + 1;
	for (;;)
	{
		size_t		run = p;

		/* copy a run of plain bytes at once */
		while (p < js->end && s[p] != '"' && s[p] != '\\' && (unsigned char) s[p] >= 0x20)
			p++;
		if (out && p > run)
			appendBinaryStringInfo(out, s + run, p - run);
		if (p >= js->end)
			return js_fail(js, "unterminated JSON string");
		if (s[p] == '"')
		{
			js->pos = p + 1;
			return true;
		}
		if ((unsigned char) s[p] < 0x20)
			return js_fail(js, "control character in JSON string");
		/* a backslash escape */
		if (p + 1 >= js->end)
			return js_fail(js, "unterminated JSON string");
		switch (s[p + 1])
		{
			case '"':
			case '\\':
			case '/':
				if (out)
					appendStringInfoChar(out, s[p + 1]);
				p += 2;
				break;
			case 'b':
				if (out)
					appendStringInfoChar(out, '\b');
				p += 2;
				break;
			case 'f':
				if (out)
					appendStringInfoChar(out, '\f');
				p += 2;
				break;
			case 'n':
				if (out)
					appendStringInfoChar(out, '\n');
				p += 2;
				break;
			case 'r':
				if (out)
					appendStringInfoChar(out, '\r');
				p += 2;
				break;
			case 't':
				if (out)
					appendStringInfoChar(out, '\t');
				p += 2;
				break;
			case 'u':
				{
					int			cp;

					if (p + 6 > js->end || (cp = js_hex4(s + p + 2)) < 0)
						return js_fail(js, "invalid \\u escape in JSON string");
					p += 6;
					if (cp >= 0xD800 && cp <= 0xDBFF)
					{
						int			lo;

						if (p + 6 > js->end || s[p] != '\\' || s[p + 1] != 'u' ||
							(lo = js_hex4(s + p + 2)) < 0 || lo < 0xDC00 || lo > 0xDFFF)
							return js_fail(js, "invalid surrogate pair in JSON string");
						p += 6;
						cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					}
					else if (cp >= 0xDC00 && cp <= 0xDFFF)
						return js_fail(js, "invalid surrogate pair in JSON string");
					if (cp == 0)
						return js_fail(js, "\\u0000 cannot be stored in text");
					if (out)
						js_append_utf8(out, (uint32) cp);
					break;
				}
			default:
				return js_fail(js, "invalid escape in JSON string");
		}
	}
}

static bool
js_literal(JScan *js, const char *word)
{
	size_t		len = strlen(word);

	if (js->end - js->pos < len || memcmp(js->s + js->pos, word, len) != 0)
		return js_fail(js, "invalid literal in JSON");
	js->pos += len;
	return true;
}

static bool
js_number(JScan *js)
{
	const char *s = js->s;
	size_t		p = js->pos;
	size_t		digits;

	if (p < js->end && s[p] == '-')
		p++;
	if (p < js->end && s[p] == '0')
		p++;
	else
	{
		digits = p;
		while (p < js->end && s[p] >= '0' && s[p] <= '9')
			p++;
		if (p == digits)
			return js_fail(js, "invalid number in JSON");
	}
	if (p < js->end && s[p] == '.')
	{
		p++;
		digits = p;
		while (p < js->end && s[p] >= '0' && s[p] <= '9')
			p++;
		if (p == digits)
			return js_fail(js, "invalid number in JSON");
	}
	if (p < js->end && (s[p] == 'e' || s[p] == 'E'))
	{
		p++;
		if (p < js->end && (s[p] == '+' || s[p] == '-'))
			p++;
		digits = p;
		while (p < js->end && s[p] >= '0' && s[p] <= '9')
			p++;
		if (p == digits)
			return js_fail(js, "invalid number in JSON");
	}
	js->pos = p;
	return true;
}

/*
 * A scalar: strings are decoded, numbers and true/false copied as written;
 * null leaves out untouched.  Objects and arrays are an error.
 */
bool
jscan_scalar(JScan *js, StringInfo out, JScanKind *kind)
{
	size_t		start;

	if (!jscan_peek_kind(js, kind))
		return false;
	start = js->pos;
	switch (*kind)
	{
		case JS_STRING:
			return jscan_string(js, out);
		case JS_NUMBER:
			if (!js_number(js))
				return false;
			break;
		case JS_TRUE:
			if (!js_literal(js, "true"))
				return false;
			break;
		case JS_FALSE:
			if (!js_literal(js, "false"))
				return false;
			break;
		case JS_NULL:
			return js_literal(js, "null");
		default:
			return js_fail(js, "expected a JSON scalar");
	}
	if (out)
		appendBinaryStringInfo(out, js->s + start, js->pos - start);
	return true;
}

bool
jscan_begin(JScan *js, char open)
{
	if (js->err)
		return false;
	js_ws(js);
	if (js->pos >= js->end || js->s[js->pos] != open)
		return js_fail(js, open == '{' ? "expected a JSON object" : "expected a JSON array");
	if (++js->depth > JSCAN_MAX_DEPTH)
		return js_fail(js, "JSON nested too deeply");
	js->pos++;
	return true;
}

/*
 * Step to the next member or element of the open container.  *more is
 * false (and the container is closed) at its end.
 */
bool
jscan_next(JScan *js, char close, bool *first, bool *more)
{
	*more = false;
	if (js->err)
		return false;
	js_ws(js);
	if (js->pos >= js->end)
		return js_fail(js, "unexpected end of JSON");
	if (js->s[js->pos] == close)
	{
		js->pos++;
		js->depth--;
		return true;
	}
	if (!*first)
	{
		if (js->s[js->pos] != ',')
			return js_fail(js, "expected ',' in JSON");
		js->pos++;
		js_ws(js);
		if (js->pos < js->end && js->s[js->pos] == close)
			return js_fail(js, "trailing ',' in JSON");
	}
	*first = false;
	*more = true;
	return true;
}

/* A member's key and the ':' after it. */
bool
jscan_key(JScan *js, StringInfo key)
{
	resetStringInfo(key);
	if (!jscan_string(js, key))
		return false;
	js_ws(js);
	if (js->pos >= js->end || js->s[js->pos] != ':')
		return js_fail(js, "expected ':' in JSON object");
	js->pos++;
	return true;
}

/* Skip one value of any kind, checking its syntax. */
bool
jscan_skip(JScan *js)
{
	JScanKind	kind;
	bool		first = true;
	bool		more;

	if (!jscan_peek_kind(js, &kind))
		return false;
	switch (kind)
	{
		case JS_OBJECT:
			if (!jscan_begin(js, '{'))
				return false;
			while (jscan_next(js, '}', &first, &more) && more)
			{
				if (!jscan_string(js, NULL))
					return false;
				js_ws(js);
				if (js->pos >= js->end || js->s[js->pos] != ':')
					return js_fail(js, "expected ':' in JSON object");
				js->pos++;
				if (!jscan_skip(js))
					return false;
			}
			return js->err == NULL;
		case JS_ARRAY:
			if (!jscan_begin(js, '['))
				return false;
			while (jscan_next(js, ']', &first, &more) && more)
			{
				if (!jscan_skip(js))
					return false;
			}
			return js->err == NULL;
		default:
			return jscan_scalar(js, NULL, &kind);
	}
}
