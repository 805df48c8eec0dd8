/*-------------------------------------------------------------------------
 * http.h
 *	  One-shot HTTP requests (OAuth, SQL Statement API) through libcurl,
 *	  waited for in the PostgreSQL wait loop and reusing connections.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_HTTP_H
#define ZB_HTTP_H

#include "net.h"

typedef struct ZbHttpRequest
{
	const char *method;			/* "GET", "POST" */
	const char *url;
	const char *ca_file;
	long		connect_timeout_ms;
	long		timeout_ms;		/* the whole exchange; 0 = no limit */
	const char *const *headers; /* "Name: value" lines */
	int			nheaders;
	const char *body;			/* NULL for none */
	size_t		body_len;
	const char *basic_user;		/* HTTP Basic auth, or NULL */
	const char *basic_password;
	size_t		max_response_bytes;
	uint32		wait_event_info;
} ZbHttpRequest;

typedef struct ZbHttpResponse
{
	long		status;
	char	   *body;			/* NUL-terminated, palloc'd */
	size_t		body_len;
	char		content_type[128];
	long		retry_after_s;	/* Retry-After in seconds, -1 if absent */
} ZbHttpResponse;

extern bool zb_http_request(const ZbHttpRequest *req, ZbHttpResponse *resp, ZbError *err);
extern char *zb_http_form_escape(const char *s);

#endif							/* ZB_HTTP_H */
