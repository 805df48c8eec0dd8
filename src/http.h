/*-------------------------------------------------------------------------
 * http.h
 *	  One-shot HTTP requests (OAuth, SQL Statement API) through libcurl,
 *	  waited for in the PostgreSQL wait loop and reusing the connections of
 *	  the caller's REST handle (one per session: session.c).
 *-------------------------------------------------------------------------
 */
#ifndef ZB_HTTP_H
#define ZB_HTTP_H

#include "net.h"

typedef struct ZbHttpRequest
{
	ZbMulti    *multi;			/* the REST handle: its connections are reused */
	const char *user_agent;		/* the client identifier (User-Agent) */
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

	/*
	 * 0: an interrupt ends the request at once (with the usual ERROR).
	 * Above 0: the caller holds interrupts, because the answer must not be
	 * lost (the SQL API submit: it carries the id needed to cancel the
	 * statement).  A pending cancel or terminate then lets the request go
	 * on for at most this many milliseconds; past that it is abandoned and
	 * the response says 'interrupted'.  The caller services the interrupt.
	 */
	long		interrupt_grace_ms;
} ZbHttpRequest;

typedef struct ZbHttpResponse
{
	long		status;
	char	   *body;			/* NUL-terminated, palloc'd */
	size_t		body_len;
	char		content_type[128];
	long		retry_after_s;	/* Retry-After in seconds, -1 if absent */
	bool		interrupted;	/* abandoned after interrupt_grace_ms */
	bool		request_sent;	/* the whole request went out */
} ZbHttpResponse;

extern bool zb_http_request(const ZbHttpRequest *req, ZbHttpResponse *resp, ZbError *err);
extern void zb_http_forget_multi(ZbMulti *multi);
extern char *zb_http_form_escape(const char *s);

#endif							/* ZB_HTTP_H */
