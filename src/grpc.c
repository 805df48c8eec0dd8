/*-------------------------------------------------------------------------
 * grpc.c
 *	  A bidirectional gRPC call over libcurl HTTP/2.
 *
 * Wire format (gRPC over HTTP/2): a POST to /Service/Method with
 * content-type application/grpc and te: trailers; each message in either
 * direction is a 1-byte compressed flag (always 0 here), a 4-byte big-endian
 * length and the protobuf bytes.  The status comes in the trailers
 * (grpc-status, grpc-message, percent-encoded), or in the headers of a
 * trailers-only response when the server fails the call at once.
 *
 * The request body is produced by libcurl's read callback from a send
 * buffer; when the buffer is empty the upload is paused
 * (CURL_READFUNC_PAUSE) and zb_grpc_send() resumes it.  The response body
 * is appended to a receive buffer whose frame headers are checked as they
 * arrive, so a peer announcing an absurd length is cut off at once.
 *
 * libcurl callbacks never ereport(): they record a problem in the call and
 * return an error code to libcurl.  Allocation inside them uses
 * MCXT_ALLOC_NO_OOM for the same reason.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/memutils.h"

#include "grpc.h"

#define GRPC_FRAME_HEADER 5
#define GRPC_ERRTEXT_MAX 512

struct ZbGrpcCall
{
	MemoryContext cxt;
	ZbMulti    *multi;
	CURL	   *easy;
	struct curl_slist *headers;
	char		errbuf[CURL_ERROR_SIZE];
	char	   *url;
	ZbPeerCheck peer;			/* h2c: only to a loopback address */
	size_t		max_message;

	/* request body */
	ZbBuf		send;
	bool		send_closed;
	bool		upload_paused;
	bool		response_ended; /* the server finished; end our side too */
	long		nudge_ms;		/* see grpc_nudge() */
	uint64		bytes_sent;

	/* response */
	ZbBuf		recv;
	size_t		scan_off;		/* frame headers validated up to here */
	long		http_status;
	bool		headers_done;
	bool		is_grpc;		/* content-type application/grpc* */
	char		content_type[64];
	bool		have_status;
	int			grpc_status;
	char		grpc_message[GRPC_ERRTEXT_MAX];
	char		body_excerpt[128];	/* start of a non-gRPC body, for errors */
	size_t		body_excerpt_len;

	/* a problem detected inside a callback */
	bool		cb_failed;
	char		cb_error[GRPC_ERRTEXT_MAX];

	bool		finished;
	CURLcode	result;
};

static void
grpc_put_frame_header(uint8 *p, size_t len)
{
	p[0] = 0;					/* not compressed */
	p[1] = (uint8) (len >> 24);
	p[2] = (uint8) (len >> 16);
	p[3] = (uint8) (len >> 8);
	p[4] = (uint8) len;
}

static size_t
grpc_get_frame_len(const uint8 *p)
{
	return ((size_t) p[1] << 24) | ((size_t) p[2] << 16) | ((size_t) p[3] << 8) | p[4];
}

static void
grpc_cb_fail(ZbGrpcCall *call, const char *fmt,...) pg_attribute_printf(2, 3);

static void
grpc_cb_fail(ZbGrpcCall *call, const char *fmt,...)
{
	va_list		ap;

	if (call->cb_failed)
		return;
	call->cb_failed = true;
	va_start(ap, fmt);
	vsnprintf(call->cb_error, sizeof(call->cb_error), fmt, ap);
	va_end(ap);
}

/* ---------- libcurl callbacks ---------- */

static size_t
grpc_read_cb(char *dest, size_t size, size_t nitems, void *userp)
{
	ZbGrpcCall *call = (ZbGrpcCall *) userp;
	size_t		room = size * nitems;
	size_t		avail = call->send.len - call->send.off;
	size_t		n;

	if (call->response_ended)
		return 0;				/* nothing more will be read: END_STREAM */
	if (avail == 0)
	{
		if (call->send_closed)
			return 0;			/* END_STREAM */
		call->upload_paused = true;
		return CURL_READFUNC_PAUSE;
	}
	n = Min(room, avail);
	memcpy(dest, call->send.data + call->send.off, n);
	call->send.off += n;
	call->bytes_sent += n;
	if (call->send.off == call->send.len)
		call->send.off = call->send.len = 0;
	return n;
}

/* Percent-decode grpc-message in place (gRPC spec: %XX escapes). */
static void
grpc_percent_decode(char *s)
{
	char	   *r = s;
	char	   *w = s;

	while (*r)
	{
		if (r[0] == '%' && isxdigit((unsigned char) r[1]) && isxdigit((unsigned char) r[2]))
		{
			char		hex[3] = {r[1], r[2], 0};

			*w++ = (char) strtol(hex, NULL, 16);
			r += 3;
		}
		else
			*w++ = *r++;
	}
	*w = '\0';
}

static size_t
grpc_header_cb(char *buffer, size_t size, size_t nitems, void *userp)
{
	ZbGrpcCall *call = (ZbGrpcCall *) userp;
	size_t		n = size * nitems;
	char		line[GRPC_ERRTEXT_MAX + 32];
	char	   *colon;
	char	   *value;
	size_t		len = Min(n, sizeof(line) - 1);

	memcpy(line, buffer, len);
	line[len] = '\0';
	/* strip CR/LF */
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		line[--len] = '\0';

	if (len == 0)
	{
		call->headers_done = true;
		return n;
	}
	if (strncmp(line, "HTTP/", 5) == 0)
	{
		const char *sp = strchr(line, ' ');

		call->http_status = sp ? strtol(sp + 1, NULL, 10) : 0;
		call->headers_done = false;
		return n;
	}
	colon = strchr(line, ':');
	if (colon == NULL)
		return n;
	*colon = '\0';
	value = colon + 1;
	while (*value == ' ' || *value == '\t')
		value++;

	if (pg_strcasecmp(line, "content-type") == 0)
	{
		strlcpy(call->content_type, value, sizeof(call->content_type));
		call->is_grpc = (pg_strncasecmp(value, "application/grpc", 16) == 0);
	}
	else if (pg_strcasecmp(line, "grpc-status") == 0)
	{
		char	   *end;
		long		code = strtol(value, &end, 10);

		if (end == value || code < 0 || code > 16)
			grpc_cb_fail(call, "invalid grpc-status \"%s\"", value);
		else
		{
			call->have_status = true;
			call->grpc_status = (int) code;
		}
	}
	else if (pg_strcasecmp(line, "grpc-message") == 0)
	{
		strlcpy(call->grpc_message, value, sizeof(call->grpc_message));
		grpc_percent_decode(call->grpc_message);
	}
	return n;
}

static size_t
grpc_write_cb(char *ptr, size_t size, size_t nmemb, void *userp)
{
	ZbGrpcCall *call = (ZbGrpcCall *) userp;
	size_t		n = size * nmemb;
	ZbBuf	   *b = &call->recv;

	if (!call->is_grpc || call->http_status != 200)
	{
		/* keep the start of a non-gRPC body for the error message */
		size_t		k = Min(n, sizeof(call->body_excerpt) - 1 - call->body_excerpt_len);

		memcpy(call->body_excerpt + call->body_excerpt_len, ptr, k);
		call->body_excerpt_len += k;
		call->body_excerpt[call->body_excerpt_len] = '\0';
		return n;
	}

	{
		size_t		before_off = b->off;

		if (!zb_buf_reserve(call->cxt, b, n, true))
		{
			grpc_cb_fail(call, "out of memory receiving %zu bytes", n);
			return 0;
		}
		/* compaction moved the buffer: keep scan_off relative to off */
		if (b->off != before_off)
			call->scan_off -= before_off - b->off;
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;

	/* validate every frame header we can see */
	while (call->scan_off + GRPC_FRAME_HEADER <= b->len)
	{
		const uint8 *h = b->data + call->scan_off;
		size_t		mlen = grpc_get_frame_len(h);

		if (h[0] != 0)
		{
			grpc_cb_fail(call, "received a compressed gRPC message (flag %u) without negotiating compression",
						 h[0]);
			return 0;
		}
		if (mlen > call->max_message)
		{
			grpc_cb_fail(call, "received a gRPC message of %zu bytes, above the limit of %zu bytes",
						 mlen, call->max_message);
			return 0;
		}
		if (call->scan_off + GRPC_FRAME_HEADER + mlen > b->len)
			break;
		call->scan_off += GRPC_FRAME_HEADER + mlen;
	}
	return n;
}

/* ---------- lifetime ---------- */

static void
grpc_release(void *arg)
{
	ZbGrpcCall *call = (ZbGrpcCall *) arg;

	if (call->easy)
	{
		/* the ZbMulti is released by its own callback, registered earlier */
		if (call->multi && zb_multi_handle(call->multi))
			curl_multi_remove_handle(zb_multi_handle(call->multi), call->easy);
		curl_easy_cleanup(call->easy);
		call->easy = NULL;
	}
	if (call->headers)
	{
		curl_slist_free_all(call->headers);
		call->headers = NULL;
	}
}

static void grpc_queue(ZbGrpcCall *call, const void *data, size_t len);

/*
 * Start a call.  Returns at once; the connection is made while the caller
 * waits in zb_grpc_wait().  All memory lives in a new child context of
 * 'parent'; zb_grpc_free() or deleting 'parent' releases it and libcurl's
 * handles.  With 'unary' (a message of unary_len bytes), the request body is
 * that one message, of known length, so that its last DATA frame carries
 * END_STREAM.
 */
static ZbGrpcCall *
grpc_start(const ZbGrpcTarget *target, const char *const *metadata, int nmetadata,
		   MemoryContext parent, const void *unary, size_t unary_len)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "zerobus gRPC call",
											  ALLOCSET_DEFAULT_SIZES);
	ZbGrpcCall *call;
	MemoryContextCallback *cb;
	bool		h2c;
	int			i;

	call = MemoryContextAllocZero(cxt, sizeof(ZbGrpcCall));
	call->cxt = cxt;
	call->max_message = target->max_message_bytes;
	call->url = MemoryContextStrdup(cxt, psprintf("%s%s", target->base_url, target->method_path));
	h2c = pg_strncasecmp(target->base_url, "http://", 7) == 0;

	/* the multi first, so that its callback runs after ours (LIFO) */
	call->multi = zb_multi_create(cxt);
	cb = MemoryContextAllocZero(cxt, sizeof(MemoryContextCallback));
	cb->func = grpc_release;
	cb->arg = call;
	MemoryContextRegisterResetCallback(cxt, cb);

	call->easy = curl_easy_init();
	if (call->easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));

	call->headers = curl_slist_append(call->headers, "content-type: application/grpc");
	call->headers = curl_slist_append(call->headers, "te: trailers");
	call->headers = curl_slist_append(call->headers, "grpc-accept-encoding: identity");
	call->headers = curl_slist_append(call->headers, "Expect:");
	for (i = 0; i < nmetadata; i++)
		call->headers = curl_slist_append(call->headers, metadata[i]);

	zb_curl_set_common(call->easy, target->ca_file, target->connect_timeout_ms, call->errbuf);
	zb_curl_set_url(call->easy, call->url, &call->peer);
	curl_easy_setopt(call->easy, CURLOPT_HTTP_VERSION,
					 h2c ? (long) CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE : (long) CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(call->easy, CURLOPT_POST, 1L);
	if (unary)
	{
		grpc_queue(call, unary, unary_len);
		call->send_closed = true;
		curl_easy_setopt(call->easy, CURLOPT_POSTFIELDSIZE_LARGE,
						 (curl_off_t) (GRPC_FRAME_HEADER + unary_len));
	}
	else
		curl_easy_setopt(call->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) -1);
	curl_easy_setopt(call->easy, CURLOPT_HTTPHEADER, call->headers);
	curl_easy_setopt(call->easy, CURLOPT_USERAGENT,
					 target->user_agent ? target->user_agent : "zerobus_fdw/" ZEROBUS_FDW_VERSION);
	curl_easy_setopt(call->easy, CURLOPT_READFUNCTION, grpc_read_cb);
	curl_easy_setopt(call->easy, CURLOPT_READDATA, call);
	curl_easy_setopt(call->easy, CURLOPT_WRITEFUNCTION, grpc_write_cb);
	curl_easy_setopt(call->easy, CURLOPT_WRITEDATA, call);
	curl_easy_setopt(call->easy, CURLOPT_HEADERFUNCTION, grpc_header_cb);
	curl_easy_setopt(call->easy, CURLOPT_HEADERDATA, call);
	curl_easy_setopt(call->easy, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024L);
	curl_easy_setopt(call->easy, CURLOPT_BUFFERSIZE, 256L * 1024L);

	zb_multi_add(call->multi, call->easy);
	return call;
}

/* A bidirectional call: messages are sent with zb_grpc_send*(). */
ZbGrpcCall *
zb_grpc_start(const ZbGrpcTarget *target, const char *const *metadata, int nmetadata,
			  MemoryContext parent)
{
	return grpc_start(target, metadata, nmetadata, parent, NULL, 0);
}

/*
 * A call that sends one message and half-closes in the same frame.  A
 * server that answers before it saw our END_STREAM resets the stream after
 * its trailers, and libcurl 7.88 then loses them (see zb_grpc_status's
 * callers); with the length known up front, END_STREAM travels with the
 * message and no reset follows.
 */
ZbGrpcCall *
zb_grpc_start_unary(const ZbGrpcTarget *target, const char *const *metadata, int nmetadata,
					MemoryContext parent, const void *data, size_t len)
{
	return grpc_start(target, metadata, nmetadata, parent, data, len);
}

void
zb_grpc_free(ZbGrpcCall *call)
{
	if (call)
		MemoryContextDelete(call->cxt);
}

/* ---------- sending ---------- */

static void
grpc_resume_upload(ZbGrpcCall *call)
{
	if (call->upload_paused && !call->finished)
	{
		call->upload_paused = false;
		curl_easy_pause(call->easy, CURLPAUSE_CONT);
	}
}

static void
grpc_queue(ZbGrpcCall *call, const void *data, size_t len)
{
	ZbBuf	   *b = &call->send;

	zb_buf_reserve(call->cxt, b, GRPC_FRAME_HEADER + len, false);
	grpc_put_frame_header(b->data + b->len, len);
	memcpy(b->data + b->len + GRPC_FRAME_HEADER, data, len);
	b->len += GRPC_FRAME_HEADER + len;
}

/* Queue one message (raw protobuf bytes). */
void
zb_grpc_send(ZbGrpcCall *call, const void *data, size_t len)
{
	Assert(!call->send_closed);
	grpc_queue(call, data, len);
	grpc_resume_upload(call);
}

/* Queue one protobuf-c message, packed straight into the send buffer. */
void
zb_grpc_send_message(ZbGrpcCall *call, const ProtobufCMessage *msg)
{
	ZbBuf	   *b = &call->send;
	size_t		len = protobuf_c_message_get_packed_size(msg);
	size_t		packed;

	Assert(!call->send_closed);
	zb_buf_reserve(call->cxt, b, GRPC_FRAME_HEADER + len, false);
	grpc_put_frame_header(b->data + b->len, len);
	packed = protobuf_c_message_pack(msg, b->data + b->len + GRPC_FRAME_HEADER);
	Assert(packed == len);
	b->len += GRPC_FRAME_HEADER + packed;
	grpc_resume_upload(call);
}

/* Half-close: no more messages from us (END_STREAM after the buffer drains). */
void
zb_grpc_close_send(ZbGrpcCall *call)
{
	call->send_closed = true;
	grpc_resume_upload(call);
}

size_t
zb_grpc_send_pending(ZbGrpcCall *call)
{
	return call->send.len - call->send.off;
}

uint64
zb_grpc_bytes_sent(ZbGrpcCall *call)
{
	return call->bytes_sent;
}

/* ---------- receiving ---------- */

/*
 * Next complete message, if any.  The bytes stay valid until the next call
 * into this module for the same call.
 */
bool
zb_grpc_next_message(ZbGrpcCall *call, const uint8 **data, size_t *len)
{
	ZbBuf	   *b = &call->recv;
	size_t		mlen;

	if (b->off + GRPC_FRAME_HEADER > call->scan_off)
		return false;			/* no validated complete frame */
	mlen = grpc_get_frame_len(b->data + b->off);
	*data = b->data + b->off + GRPC_FRAME_HEADER;
	*len = mlen;
	b->off += GRPC_FRAME_HEADER + mlen;
	return true;
}

/*
 * libcurl 7.88 keeps HTTP/2 frames under 1 KB in a connection buffer that
 * it flushes only on a later send or receive; if that flush meets a full
 * socket at the end of a burst and the upload then pauses, nothing asks for
 * the socket to become writable, and the tail of the last message waits
 * until the peer happens to send something.  Un-pausing makes libcurl
 * update the stream window and flush that buffer (http2_data_pause() ->
 * h2_session_send()), so while the caller awaits answers to what it sent,
 * each wait nudges the upload and is bounded: 5 ms at first, doubling to
 * 50 ms while nothing arrives.
 */
static long
grpc_nudge(ZbGrpcCall *call, bool awaiting, long timeout_ms)
{
	if (!awaiting || !call->upload_paused || call->finished || call->response_ended)
		return timeout_ms;
	grpc_resume_upload(call);	/* the read callback pauses it again */
	zb_multi_kick(call->multi);
	call->nudge_ms = call->nudge_ms ? Min(call->nudge_ms * 2, 50) : 5;
	return timeout_ms < 0 ? call->nudge_ms : Min(timeout_ms, call->nudge_ms);
}

/*
 * Drive the call: wait up to timeout_ms for network progress or the latch.
 * 'awaiting' says the caller expects answers to messages it sent.  Returns
 * the ZB_WAKE_* mask of zb_multi_wait().
 */
int
zb_grpc_wait(ZbGrpcCall *call, long timeout_ms, bool awaiting, uint32 wait_event_info)
{
	int			rc;
	size_t		before = call->recv.len;
	long		wait_ms;

	if (call->finished)
		return ZB_WAKE_IO;
	wait_ms = grpc_nudge(call, awaiting, timeout_ms);
	rc = zb_multi_wait(call->multi, wait_ms, wait_event_info);
	if (call->recv.len != before)
		call->nudge_ms = 0;
	if (zb_multi_done(call->multi, call->easy, &call->result))
		call->finished = true;
	else if (call->upload_paused && zb_multi_nsockets(call->multi) == 0)
	{
		/*
		 * libcurl 7.88 keeps a transfer alive while its upload is paused,
		 * even after the response has ended (trailers, or a trailers-only
		 * error): it then stops watching the socket and the transfer would
		 * hang.  An upload is paused only once connected, and we never
		 * pause the download, so no socket left means the response is
		 * over: end our side so that libcurl completes the transfer.
		 */
		call->response_ended = true;
		grpc_resume_upload(call);
		zb_multi_kick(call->multi);
		if (zb_multi_done(call->multi, call->easy, &call->result))
			call->finished = true;
	}
	/* a nudge-bounded wait is not the caller's timeout */
	if (wait_ms != timeout_ms)
		rc &= ~ZB_WAKE_TIMEOUT;
	return rc;
}

bool
zb_grpc_finished(ZbGrpcCall *call)
{
	return call->finished;
}

/* HTTP status to gRPC code, per gRPC's "HTTP to gRPC Status Code Mapping". */
static int
grpc_code_from_http(long status)
{
	switch (status)
	{
		case 400:
			return GRPC_INTERNAL;
		case 401:
			return GRPC_UNAUTHENTICATED;
		case 403:
			return GRPC_PERMISSION_DENIED;
		case 404:
			return GRPC_UNIMPLEMENTED;
		case 429:
		case 502:
		case 503:
		case 504:
			return GRPC_UNAVAILABLE;
		default:
			return GRPC_UNKNOWN;
	}
}

/*
 * The call's outcome.  Before the call finished, reports only a failure
 * detected so far (returns false with err filled) or true.  After it
 * finished: true and ZB_OK for grpc-status 0, false with err otherwise.
 */
bool
zb_grpc_status(ZbGrpcCall *call, ZbError *err)
{
	zb_error_clear(err);

	/* h2c to an address that is not loopback: refused before anything was sent */
	if (zb_peer_refused(&call->peer, err, call->url))
		return false;
	if (call->cb_failed)
	{
		zb_error_set(err, ZB_ERR_PROTOCOL, true, "malformed response from %s: %s",
					 call->url, call->cb_error);
		return false;
	}
	if (!call->finished)
	{
		/* A trailers-only failure is known before libcurl reports completion. */
		if (call->headers_done && call->have_status && call->grpc_status != GRPC_OK)
		{
			zb_error_set_grpc(err, call->grpc_status, call->grpc_message);
			return false;
		}
		return true;
	}

	/* A status that arrived is the most precise account, even after a reset. */
	if (call->have_status && call->http_status == 200 && call->is_grpc)
	{
		if (call->grpc_status == GRPC_OK)
			return true;
		zb_error_set_grpc(err, call->grpc_status, call->grpc_message);
		return false;
	}
	if (call->result != CURLE_OK && call->http_status == 0)
	{
		zb_error_from_curl(err, call->result, call->errbuf, call->url);
		return false;
	}
	if (call->http_status != 200 || !call->is_grpc)
	{
		int			code = grpc_code_from_http(call->http_status);
		char	   *p;

		/* printable excerpt of what came back */
		for (p = call->body_excerpt; *p; p++)
			if (!isprint((unsigned char) *p))
				*p = ' ';
		while (call->body_excerpt_len > 0 &&
			   call->body_excerpt[call->body_excerpt_len - 1] == ' ')
			call->body_excerpt[--call->body_excerpt_len] = '\0';
		zb_error_set(err, ZB_ERR_PROTOCOL, zb_grpc_code_retryable(code),
					 "%s is not a gRPC endpoint: HTTP %ld, content-type \"%s\"%s%s%s",
					 call->url, call->http_status,
					 call->content_type[0] ? call->content_type : "none",
					 call->body_excerpt_len ? ", body \"" : "",
					 call->body_excerpt,
					 call->body_excerpt_len ? "\"" : "");
		err->grpc_code = code;
		err->http_status = call->http_status;
		return false;
	}
	if (call->result != CURLE_OK)
	{
		zb_error_from_curl(err, call->result, call->errbuf, call->url);
		return false;
	}
	zb_error_set(err, ZB_ERR_PROTOCOL, true,
				 "gRPC call to %s ended without a grpc-status", call->url);
	err->grpc_code = GRPC_INTERNAL;
	return false;
}
