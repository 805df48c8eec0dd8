/*-------------------------------------------------------------------------
 * oauth.c
 *	  OAuth M2M client-credentials tokens (docs/DESIGN.md, "OAuth M2M
 *	  tokens").
 *
 * POST {workspace_url}/oidc/v1/token with HTTP Basic client_id:secret.
 * ZeroBus tokens are scoped with a resource naming the workspace's
 * zerobusDirectWriteApi and authorization_details granting USE CATALOG,
 * USE SCHEMA and SELECT+MODIFY on the one target table; SQL API tokens are
 * plain all-apis tokens.
 *
 * Tokens are cached per session (session.c: one server and user mapping),
 * keyed by purpose and table; the session, and so its tokens, is replaced
 * when its server or user mapping changes.  A token is refreshed when 80%
 * of its lifetime has passed, and on demand after UNAUTHENTICATED.  Tokens
 * are wiped from memory when they are replaced and when the cache goes.
 *
 * 4xx answers are final (bad credentials, bad request); 5xx and network
 * errors are retried a few times here, then reported as retryable.
 * The secret never appears in an error message.  The request waits in the
 * interruptible wait loop (net.c), so a cancel or terminate ends a token
 * fetch from a workspace that does not answer; a caller with a time budget
 * (a remote cancel during abort) sets ZbCredentials.deadline.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "http.h"
#include "json.h"
#include "oauth.h"

#define OAUTH_KEY_LEN 600		/* table names are at most 3 x 255 bytes */
#define OAUTH_ATTEMPTS 3
#define OAUTH_FIRST_BACKOFF_MS 250

/*
 * One cached token.  A session holds a handful (one for the SQL API, one per
 * ZeroBus table it writes to), so a list searched in order does.
 */
typedef struct TokenEntry
{
	ZbTokenPurpose purpose;
	char	   *table;			/* ZeroBus tokens: the table; else NULL */
	char	   *token;			/* NULL until fetched, and after a refusal */
	TimestampTz refresh_at;
	TimestampTz expires_at;
} TokenEntry;

struct ZbTokenCache
{
	MemoryContext cxt;			/* the cache's own: entries and tokens */
	List	   *entries;		/* TokenEntry * */
	MemoryContextCallback wipe;
};

static void
oauth_forget(TokenEntry *entry)
{
	if (entry->token)
	{
		/* a bearer token is a credential: do not leave it in freed memory */
		explicit_bzero(entry->token, strlen(entry->token));
		pfree(entry->token);
		entry->token = NULL;
	}
}

/*
 * The cache's context is going away: wipe every token first.  The context
 * has no children, so everything the entries point to is still there when
 * its reset callbacks run.
 */
static void
oauth_wipe_cache(void *arg)
{
	ZbTokenCache *cache = (ZbTokenCache *) arg;
	ListCell   *lc;

	foreach(lc, cache->entries)
	{
		TokenEntry *entry = (TokenEntry *) lfirst(lc);

		if (entry->token)
			explicit_bzero(entry->token, strlen(entry->token));
	}
}

/* An empty token cache, in a context of its own under 'parent'. */
ZbTokenCache *
zb_oauth_cache_create(MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "zerobus OAuth tokens",
											  ALLOCSET_SMALL_SIZES);
	ZbTokenCache *cache = MemoryContextAllocZero(cxt, sizeof(ZbTokenCache));

	cache->cxt = cxt;
	cache->wipe.func = oauth_wipe_cache;
	cache->wipe.arg = cache;
	MemoryContextRegisterResetCallback(cxt, &cache->wipe);
	return cache;
}

/* The entry of (purpose, table), created empty if there is none. */
static TokenEntry *
oauth_lookup(ZbTokenCache *cache, ZbTokenPurpose purpose, const char *table)
{
	ListCell   *lc;
	TokenEntry *entry;
	MemoryContext old;

	foreach(lc, cache->entries)
	{
		entry = (TokenEntry *) lfirst(lc);
		if (entry->purpose == purpose &&
			(table == NULL ? entry->table == NULL
			 : entry->table != NULL && strcmp(entry->table, table) == 0))
			return entry;
	}
	old = MemoryContextSwitchTo(cache->cxt);
	entry = palloc0(sizeof(TokenEntry));
	entry->purpose = purpose;
	entry->table = table ? pstrdup(table) : NULL;
	cache->entries = lappend(cache->entries, entry);
	MemoryContextSwitchTo(old);
	return entry;
}

/* Split "cat.sch.tbl" into its parts; false if it is not three parts. */
static bool
oauth_split_table(const char *table, char **cat, char **sch)
{
	const char *d1 = strchr(table, '.');
	const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;

	if (d1 == NULL || d2 == NULL || strchr(d2 + 1, '.') != NULL)
		return false;
	*cat = pnstrdup(table, d1 - table);
	*sch = pnstrdup(table, d2 - table);
	return true;
}

static void
oauth_append_grant(StringInfo buf, const char *privileges, const char *type, const char *path)
{
	appendStringInfo(buf, "{\"type\":\"unity_catalog_privileges\",\"privileges\":%s,"
					 "\"object_type\":\"%s\",\"object_full_path\":", privileges, type);
	zb_json_append_string(buf, path);
	appendStringInfoChar(buf, '}');
}

static char *
oauth_request_body(const ZbCredentials *cred, ZbTokenPurpose purpose, const char *table)
{
	StringInfoData body;
	StringInfoData details;
	char	   *cat;
	char	   *sch;

	initStringInfo(&body);
	appendStringInfoString(&body, "grant_type=client_credentials&scope=all-apis");
	if (purpose == ZB_TOKEN_SQL)
		return body.data;

	if (!oauth_split_table(table, &cat, &sch))
		elog(ERROR, "table name \"%s\" is not catalog.schema.table", table);

	initStringInfo(&details);
	appendStringInfoChar(&details, '[');
	oauth_append_grant(&details, "[\"USE CATALOG\"]", "CATALOG", cat);
	appendStringInfoChar(&details, ',');
	oauth_append_grant(&details, "[\"USE SCHEMA\"]", "SCHEMA", sch);
	appendStringInfoChar(&details, ',');
	oauth_append_grant(&details, "[\"SELECT\",\"MODIFY\"]", "TABLE", table);
	appendStringInfoChar(&details, ']');

	appendStringInfo(&body, "&resource=%s",
					 zb_http_form_escape(psprintf("api://databricks/workspaces/%s/zerobusDirectWriteApi",
												  cred->workspace_id)));
	appendStringInfo(&body, "&authorization_details=%s", zb_http_form_escape(details.data));
	return body.data;
}

/* One POST to the token endpoint.  Fills the entry on success. */
static bool
oauth_fetch(ZbTokenCache *cache, const ZbCredentials *cred, ZbTokenPurpose purpose,
			const char *table, TokenEntry *entry, ZbError *err)
{
	static const char *const fields[] = {
		"access_token", "expires_in", "error", "error_description", "token_type"
	};
	char	   *values[lengthof(fields)];
	const char *hdrs[] = {"Content-Type: application/x-www-form-urlencoded",
	"Accept: application/json"};
	ZbHttpRequest req;
	ZbHttpResponse resp;
	char	   *body = oauth_request_body(cred, purpose, table);
	char	   *url = psprintf("%s/oidc/v1/token", cred->workspace_url);
	char	   *jerr;
	long		expires_in;
	TimestampTz now;

	memset(&req, 0, sizeof(req));
	req.multi = cred->rest;
	req.user_agent = cred->user_agent;
	req.method = "POST";
	req.url = url;
	req.ca_file = cred->ca_file;
	req.connect_timeout_ms = cred->connect_timeout_ms;
	req.timeout_ms = cred->request_timeout_ms;
	if (cred->deadline)
	{
		long		left = zb_ms_until(cred->deadline);

		if (left == 0)
		{
			zb_error_set(err, ZB_ERR_TIMEOUT, false,
						 "no time left to ask %s for a token", url);
			return false;
		}
		req.timeout_ms = Min(req.timeout_ms, left);
		req.connect_timeout_ms = Min(req.connect_timeout_ms, left);
	}
	req.headers = hdrs;
	req.nheaders = lengthof(hdrs);
	req.body = body;
	req.body_len = strlen(body);
	req.basic_user = cred->client_id;
	req.basic_password = cred->client_secret;
	req.max_response_bytes = 1024 * 1024;
	req.wait_event_info = PG_WAIT_EXTENSION;

	if (!zb_http_request(&req, &resp, err))
	{
		/* name the endpoint, not the error buffer's full URL twice */
		return false;
	}

	if (!zb_json_get_fields(resp.body, resp.body_len, lengthof(fields), fields, values, &jerr))
	{
		zb_error_set(err, ZB_ERR_PROTOCOL, resp.status >= 500,
					 "token endpoint %s returned HTTP %ld with a body that is not JSON (%s)",
					 url, resp.status, jerr);
		err->http_status = resp.status;
		return false;
	}

	if (resp.status != 200)
	{
		bool		retry = resp.status >= 500 || resp.status == 429;

		zb_error_set(err, retry ? ZB_ERR_HTTP : ZB_ERR_AUTH, retry,
					 "token endpoint %s returned HTTP %ld%s%s%s%s",
					 url, resp.status,
					 values[2] ? ": " : "", values[2] ? values[2] : "",
					 values[3] ? ": " : "", values[3] ? values[3] : "");
		err->http_status = resp.status;
		return false;
	}
	if (values[0] == NULL || values[0][0] == '\0')
	{
		zb_error_set(err, ZB_ERR_PROTOCOL, true,
					 "token endpoint %s returned no access_token", url);
		return false;
	}

	expires_in = values[1] ? strtol(values[1], NULL, 10) : 3600;
	if (expires_in <= 0)
		expires_in = 60;
	now = GetCurrentTimestamp();
	oauth_forget(entry);
	entry->token = MemoryContextStrdup(cache->cxt, values[0]);
	entry->expires_at = TimestampTzPlusMilliseconds(now, expires_in * 1000L);
	entry->refresh_at = TimestampTzPlusMilliseconds(now, expires_in * 800L);
	return true;
}

/*
 * A valid token for (purpose, table) of the cache's credentials, fetching
 * one if needed.  Returns NULL with err filled on failure.  The string stays
 * valid until the next call for the same key.
 */
const char *
zb_oauth_token(ZbTokenCache *cache, const ZbCredentials *cred, ZbTokenPurpose purpose,
			   const char *table, ZbError *err)
{
	TokenEntry *entry;
	int			attempt;
	long		backoff_ms = OAUTH_FIRST_BACKOFF_MS;

	zb_error_clear(err);
	if (purpose == ZB_TOKEN_ZEROBUS && (table == NULL || strlen(table) >= OAUTH_KEY_LEN))
	{
		zb_error_set(err, ZB_ERR_CONFIG, false, "invalid target table name");
		return NULL;
	}
	entry = oauth_lookup(cache, purpose, purpose == ZB_TOKEN_ZEROBUS ? table : NULL);
	if (entry->token && GetCurrentTimestamp() < entry->refresh_at)
		return entry->token;

	for (attempt = 1;; attempt++)
	{
		if (oauth_fetch(cache, cred, purpose, table, entry, err))
			return entry->token;
		if (!err->retryable || attempt >= OAUTH_ATTEMPTS)
			break;
		/* interrupts held by the caller and one pending: do not linger */
		if (zb_interrupt_pending())
			break;
		if (cred->deadline && zb_ms_until(cred->deadline) <= backoff_ms)
			break;
		CHECK_FOR_INTERRUPTS();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 backoff_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		backoff_ms *= 2;
	}

	/* A still-valid older token is better than none while the endpoint is down. */
	if (err->retryable && entry->token && GetCurrentTimestamp() < entry->expires_at)
	{
		zb_error_clear(err);
		return entry->token;
	}
	return NULL;
}

/* Forget a token the server refused (UNAUTHENTICATED), so the next call refetches. */
void
zb_oauth_invalidate(ZbTokenCache *cache, ZbTokenPurpose purpose, const char *table)
{
	TokenEntry *entry;

	if (purpose == ZB_TOKEN_ZEROBUS && (table == NULL || strlen(table) >= OAUTH_KEY_LEN))
		return;
	entry = oauth_lookup(cache, purpose, purpose == ZB_TOKEN_ZEROBUS ? table : NULL);
	oauth_forget(entry);
}
