/*-------------------------------------------------------------------------
 * sqlapi.c
 *	  Client of the Databricks SQL Statement Execution API (docs/DESIGN.md,
 *	  "The SQL Statement Execution API"): a statement's life, from submit
 *	  to a terminal state, and its requests, retries, errors and cancels.
 *
 * A statement is POSTed with a bounded wait_timeout, then polled while
 * PENDING or RUNNING.  Its responses are parsed by sqlparse.c, and its
 * result is read chunk by chunk, one row at a time, by sqlresult.c.
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

#include "access/xact.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "sqlapi_int.h"

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
void
zb_sql_report_http(ZbSession *conn, SqlReq kind, const char *sql, ZbHttpResponse *resp)
{
	const ZbServerConfig *cfg = zb_session_config(conn);
	const char *perr = NULL;
	StatementResponse *r = zb_sql_parse_response(resp->body, resp->body_len, false, &perr);
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

void
zb_sql_report_malformed(const char *sql, const char *what, const char *perr)
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
	StatementResponse *r = zb_sql_parse_response(resp->body, resp->body_len, false, &submit->perr);

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

void
zb_sql_request(ZbSession *conn, SqlReq kind, const char *sql, const char *method,
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
		r = zb_sql_parse_response(resp.body, resp.body_len, false, &perr);
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
		zb_sql_report_http(conn, REQ_SUBMIT, sql, &resp);
	if (r == NULL || perr)
		zb_sql_report_malformed(sql, "submitting the statement", perr ? perr : "no statement");
	if (r->statement_id == NULL)
		zb_sql_report_malformed(sql, "submitting the statement", "no statement_id");
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
		zb_sql_request(conn, REQ_POLL, sql, "GET", poll_url, NULL, NIL, &resp, &st->stats);
		if (resp.status != 200)
			zb_sql_report_http(conn, REQ_POLL, sql, &resp);
		r = zb_sql_parse_response(resp.body, resp.body_len, false, &perr);
		if (r == NULL)
			zb_sql_report_malformed(sql, "polling the statement", perr);
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
		zb_sql_report_malformed(sql, "reading the result", "a SUCCEEDED statement without a manifest");
	if (r->format && strcmp(r->format, "JSON_ARRAY") != 0)
		zb_sql_report_malformed(sql, "reading the result",
								psprintf("unexpected result format \"%s\"", r->format));
	if (list_length(r->columns) != r->column_count)
		zb_sql_report_malformed(sql, "reading the result",
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
		zb_sql_load_result(st, &r->result, false);
	else if (st->total_chunks > 0)
		st->next_chunk = 0;
	MemoryContextSwitchTo(old);
	return st;
}
