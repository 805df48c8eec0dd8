/*-------------------------------------------------------------------------
 * http.c
 *	  One-shot HTTP requests over libcurl, driven by zb_multi_wait().
 *
 * Requests run on the caller's multi handle (a session's REST handle,
 * session.c), whose connection cache keeps TLS connections to the
 * workspace alive between calls (OAuth, SQL statements, polls, chunk
 * fetches).  Each request gets a fresh easy handle;
 * if an interrupt raises an ERROR while we wait, the handle is detached and
 * freed on the way out (which closes its connection).  A caller holding
 * interrupts may give a request a grace period instead (see
 * ZbHttpRequest.interrupt_grace_ms).  A plain http:// request is sent only
 * to a loopback address (net.c).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "http.h"

typedef struct HttpExchange
{
	MemoryContext cxt;
	ZbBuf		body;
	size_t		max_body;
	bool		too_big;
	bool		oom;
	char		content_type[128];
	long		retry_after_s;
} HttpExchange;

/*
 * The request in flight.  An ERROR detaches it on the way out; a FATAL
 * (terminate) does not unwind: proc_exit runs the transaction abort, whose
 * remote cancel makes a request of its own while the interrupted one is
 * still attached.  That one will never be looked at again, so it is
 * detached here first.
 */
static CURL *http_inflight = NULL;
static ZbMulti *http_inflight_multi = NULL;
static struct curl_slist *http_inflight_headers = NULL;

static void
http_detach_inflight(void)
{
	if (http_inflight)
	{
		zb_multi_remove(http_inflight_multi, http_inflight);
		curl_easy_cleanup(http_inflight);
		curl_slist_free_all(http_inflight_headers);
		http_inflight = NULL;
		http_inflight_multi = NULL;
		http_inflight_headers = NULL;
	}
}

/*
 * A REST handle is about to be freed: a request left attached to it (see
 * above) is detached first.
 */
void
zb_http_forget_multi(ZbMulti *multi)
{
	if (http_inflight && http_inflight_multi == multi)
		http_detach_inflight();
}

static size_t
http_write_cb(char *ptr, size_t size, size_t nmemb, void *userp)
{
	HttpExchange *x = (HttpExchange *) userp;
	size_t		n = size * nmemb;

	if (x->body.len + n > x->max_body)
	{
		x->too_big = true;
		return 0;
	}
	if (!zb_buf_reserve(x->cxt, &x->body, n + 1, true))
	{
		x->oom = true;
		return 0;
	}
	memcpy(x->body.data + x->body.len, ptr, n);
	x->body.len += n;
	return n;
}

static size_t
http_header_cb(char *buffer, size_t size, size_t nitems, void *userp)
{
	HttpExchange *x = (HttpExchange *) userp;
	size_t		n = size * nitems;
	char		line[256];
	size_t		len = Min(n, sizeof(line) - 1);
	char	   *v;

	memcpy(line, buffer, len);
	line[len] = '\0';
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		line[--len] = '\0';
	if (strncmp(line, "HTTP/", 5) == 0)
	{
		/* a new response (after 100-continue, say): forget earlier headers */
		x->content_type[0] = '\0';
		x->retry_after_s = -1;
		return n;
	}
	v = strchr(line, ':');
	if (v == NULL)
		return n;
	*v++ = '\0';
	while (*v == ' ')
		v++;
	if (pg_strcasecmp(line, "content-type") == 0)
		strlcpy(x->content_type, v, sizeof(x->content_type));
	else if (pg_strcasecmp(line, "retry-after") == 0)
	{
		char	   *end;
		long		s = strtol(v, &end, 10);

		if (end != v && s >= 0)
			x->retry_after_s = Min(s, 3600);
	}
	return n;
}

/*
 * Perform one request.  Returns true when an HTTP response arrived (any
 * status: the caller interprets it), false with err on transport failure.
 */
bool
zb_http_request(const ZbHttpRequest *req, ZbHttpResponse *resp, ZbError *err)
{
	HttpExchange x;
	CURL	   *easy;
	struct curl_slist *volatile headers = NULL;
	char		errbuf[CURL_ERROR_SIZE];
	ZbPeerCheck peer;
	CURLcode	result = CURLE_OK;
	volatile TimestampTz deadline = 0;
	volatile bool interrupted = false;
	curl_off_t	uploaded = 0;
	long		request_size = 0;
	bool		ok;
	int			i;

	zb_error_clear(err);
	memset(resp, 0, sizeof(ZbHttpResponse));
	memset(&x, 0, sizeof(x));
	x.cxt = CurrentMemoryContext;
	x.max_body = req->max_response_bytes ? req->max_response_bytes : 64 * 1024 * 1024;
	x.retry_after_s = -1;

	Assert(req->multi != NULL);
	http_detach_inflight();

	easy = curl_easy_init();
	if (easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));

	for (i = 0; i < req->nheaders; i++)
		headers = curl_slist_append(headers, req->headers[i]);
	headers = curl_slist_append(headers, "Expect:");

	zb_curl_set_common(easy, req->ca_file, req->connect_timeout_ms, errbuf);
	zb_curl_set_url(easy, req->url, &peer);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_USERAGENT,
					 req->user_agent ? req->user_agent : "zerobus_fdw/" ZEROBUS_FDW_VERSION);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, http_write_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, http_header_cb);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, &x);
	curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
	if (req->timeout_ms > 0)
	{
		curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, req->timeout_ms);
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), req->timeout_ms + 1000);
	}
	if (req->basic_user)
	{
		curl_easy_setopt(easy, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
		curl_easy_setopt(easy, CURLOPT_USERNAME, req->basic_user);
		curl_easy_setopt(easy, CURLOPT_PASSWORD, req->basic_password ? req->basic_password : "");
	}
	if (strcmp(req->method, "POST") == 0)
	{
		curl_easy_setopt(easy, CURLOPT_POST, 1L);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body ? req->body : "");
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
						 (curl_off_t) (req->body ? req->body_len : 0));
	}
	else if (strcmp(req->method, "GET") != 0)
		curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);

	PG_TRY();
	{
		TimestampTz grace_end = 0;

		Assert(req->interrupt_grace_ms == 0 || InterruptHoldoffCount > 0);
		zb_multi_add(req->multi, easy);
		http_inflight = easy;
		http_inflight_multi = req->multi;
		http_inflight_headers = headers;
		while (!zb_multi_done(req->multi, easy, &result))
		{
			long		wait_ms = deadline ? zb_ms_until(deadline) : -1;

			if (deadline && wait_ms == 0)
			{
				result = CURLE_OPERATION_TIMEDOUT;
				break;
			}
			if (req->interrupt_grace_ms > 0 && zb_interrupt_pending())
			{
				long		left;

				if (grace_end == 0)
					grace_end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															req->interrupt_grace_ms);
				left = zb_ms_until(grace_end);
				if (left == 0)
				{
					interrupted = true;
					break;
				}
				wait_ms = wait_ms < 0 ? left : Min(wait_ms, left);
			}
			zb_multi_wait(req->multi, wait_ms, req->wait_event_info);
		}
	}
	PG_CATCH();
	{
		http_inflight = NULL;
		http_inflight_multi = NULL;
		zb_multi_remove(req->multi, easy);
		curl_easy_cleanup(easy);
		curl_slist_free_all(headers);
		PG_RE_THROW();
	}
	PG_END_TRY();
	http_inflight = NULL;
	http_inflight_multi = NULL;

	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &resp->status);
	curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &request_size);
	curl_easy_getinfo(easy, CURLINFO_SIZE_UPLOAD_T, &uploaded);
	resp->request_sent = request_size > 0 &&
		uploaded >= (curl_off_t) (req->body ? req->body_len : 0);
	zb_multi_remove(req->multi, easy);
	curl_easy_cleanup(easy);
	curl_slist_free_all(headers);

	if (interrupted)
	{
		zb_error_set(err, ZB_ERR_TRANSPORT, false,
					 "interrupted while waiting for %s", req->url);
		resp->interrupted = true;
		resp->status = 0;
		ok = false;
	}
	else if (zb_peer_refused(&peer, err, req->url))
		ok = false;
	else if (x.too_big)
	{
		zb_error_set(err, ZB_ERR_PROTOCOL, false,
					 "response from %s exceeds %zu bytes", req->url, x.max_body);
		ok = false;
	}
	else if (x.oom)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while receiving a response from %s", req->url)));
	else if (result != CURLE_OK)
	{
		zb_error_from_curl(err, result, errbuf, req->url);
		ok = false;
	}
	else
		ok = true;

	if (!zb_buf_reserve(x.cxt, &x.body, 1, false))
		elog(ERROR, "out of memory");
	x.body.data[x.body.len] = '\0';
	resp->body = (char *) x.body.data;
	resp->body_len = x.body.len;
	strlcpy(resp->content_type, x.content_type, sizeof(resp->content_type));
	resp->retry_after_s = x.retry_after_s;
	return ok;
}

/* application/x-www-form-urlencoded escaping of one value. */
char *
zb_http_form_escape(const char *s)
{
	char	   *e = curl_easy_escape(NULL, s, 0);
	char	   *r;

	if (e == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	r = pstrdup(e);
	curl_free(e);
	return r;
}
