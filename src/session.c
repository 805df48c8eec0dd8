/*-------------------------------------------------------------------------
 * session.c
 *	  Sessions: the one way to reach Databricks.  A session is a server and
 *	  a user mapping, resolved once per backend: its options, the OAuth
 *	  credentials built from them, its token cache and its REST handle.
 *
 * Every caller that talks to Databricks (the stream worker, INSERT into a
 * foreign table, check_connection, bench_transport, the SQL API client)
 * gets a session with zb_session_get(server, user) and goes through it:
 * zb_session_open_stream() opens a ZeroBus stream (token, stream creation,
 * and one new token when the service says UNAUTHENTICATED),
 * zb_session_init_request() starts every REST request (OAuth, SQL API),
 * zb_session_token() hands out tokens.  Nobody else resolves options or
 * fills a stream or request configuration, so a new server option is a
 * change to option.c (declared, validated, resolved into ZbServerConfig)
 * and here (used).
 *
 * Sessions are cached per backend, keyed by (server, user mapping), as
 * postgres_fdw caches its connections, and for the same reasons: tokens
 * are fetched once per session rather than once per query, and the REST
 * handle keeps its TLS connections to the workspace open between requests.
 * A user without a mapping of their own shares PUBLIC's session: the
 * credentials are the same.  A syscache invalidation of the server, the
 * user mapping or the foreign-data wrapper (ALTER SERVER, ALTER USER
 * MAPPING, DROP ...; a cache reset) marks the sessions built from it stale,
 * and the next zb_session_get() builds a new one from the catalog.  So an
 * ALTER applies to the next query, or to a stream worker's next connect.
 *
 * A stale session is never freed under a caller: zb_session_get() holds the
 * session until the caller's current memory context is reset or deleted
 * (a scan's, a worker's configuration context, a function call's), and
 * zb_session_hold() adds a hold for another context (the SQL API client's
 * in-flight statements, which are cancelled during abort).  A stale session
 * is freed when its last hold goes; a current one stays cached while no
 * one holds it.  Tokens are wiped from memory when they go.
 *
 * Privilege checks stay with the callers, where postgres_fdw makes them:
 * USAGE on the server for check_connection, bench_transport and
 * execute_remote, the stream owner's USAGE before every connect and batch
 * (worker.c), the foreign table's own privileges for scans and INSERT.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_foreign_server.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "session.h"

#define ZB_CLIENT_NAME "zerobus_fdw/" ZEROBUS_FDW_VERSION

typedef struct SessionKey
{
	Oid			serverid;
	Oid			umid;			/* the user's mapping, or PUBLIC's */
} SessionKey;

struct ZbSession
{
	SessionKey	key;
	MemoryContext cxt;			/* everything below lives here */
	ZbServerConfig *cfg;		/* the server's and the mapping's options */
	ZbCredentials cred;			/* for token requests (workspace_url set) */
	char	   *client;			/* the client identifier we send */
	ZbTokenCache *tokens;
	ZbMulti    *rest;			/* OAuth and SQL API requests */
	uint32		server_hash;	/* syscache hash values, for invalidation */
	uint32		mapping_hash;
	bool		stale;			/* the catalog changed: not handed out again */
	bool		cached;			/* in the hash table */
	int			holds;
};

typedef struct SessionEntry
{
	SessionKey	key;			/* hash key, must be first */
	ZbSession  *session;
} SessionEntry;

static HTAB *sessions = NULL;

/* Free a session nobody holds: its REST handle, tokens and options. */
static void
session_free(ZbSession *s)
{
	Assert(s->holds == 0);
	if (s->cached)
	{
		SessionEntry *e = hash_search(sessions, &s->key, HASH_FIND, NULL);

		if (e && e->session == s)
			hash_search(sessions, &s->key, HASH_REMOVE, NULL);
		s->cached = false;
	}
	zb_http_forget_multi(s->rest);
	if (s->cfg->client_secret)
		explicit_bzero(s->cfg->client_secret, strlen(s->cfg->client_secret));
	MemoryContextDelete(s->cxt);
}

/* A holder's memory context is going away. */
static void
session_release(void *arg)
{
	ZbSession  *s = (ZbSession *) arg;

	Assert(s->holds > 0);
	if (--s->holds == 0 && s->stale)
		session_free(s);
}

/*
 * Syscache invalidation of a server, a user mapping or the foreign-data
 * wrapper: the sessions built from it are stale.  Nothing is freed here (a
 * caller may be using the session); that waits for the last hold, or for
 * the next zb_session_get().
 */
static void
session_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS seq;
	SessionEntry *e;

	hash_seq_init(&seq, sessions);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		ZbSession  *s = e->session;

		if (hashvalue == 0 || cacheid == FOREIGNDATAWRAPPEROID ||
			(cacheid == FOREIGNSERVEROID && s->server_hash == hashvalue) ||
			(cacheid == USERMAPPINGOID && s->mapping_hash == hashvalue))
			s->stale = true;
	}
}

static void
session_init(void)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(SessionKey);
	ctl.entrysize = sizeof(SessionEntry);
	sessions = hash_create("zerobus sessions", 8, &ctl, HASH_ELEM | HASH_BLOBS);
	CacheRegisterSyscacheCallback(FOREIGNSERVEROID, session_invalidate, (Datum) 0);
	CacheRegisterSyscacheCallback(USERMAPPINGOID, session_invalidate, (Datum) 0);
	CacheRegisterSyscacheCallback(FOREIGNDATAWRAPPEROID, session_invalidate, (Datum) 0);
}

/* Drop the stale sessions nobody holds (a dropped server's, an old mapping's). */
static void
session_sweep(void)
{
	HASH_SEQ_STATUS seq;
	SessionEntry *e;
	List	   *drop = NIL;
	ListCell   *lc;

	hash_seq_init(&seq, sessions);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (e->session->stale && e->session->holds == 0)
			drop = lappend(drop, e->session);
	foreach(lc, drop)
		session_free((ZbSession *) lfirst(lc));
	list_free(drop);
}

/* The OAuth credentials of the session's options (workspace_url set). */
static void
session_credentials(ZbSession *s)
{
	const ZbServerConfig *cfg = s->cfg;

	zb_require_workspace(cfg);
	memset(&s->cred, 0, sizeof(ZbCredentials));
	s->cred.workspace_url = cfg->workspace_url;
	s->cred.workspace_id = cfg->workspace_id;
	s->cred.client_id = cfg->client_id;
	s->cred.client_secret = cfg->client_secret;
	s->cred.ca_file = cfg->ca_file;
	s->cred.connect_timeout_ms = cfg->connect_timeout_ms;
	s->cred.request_timeout_ms = cfg->request_timeout_ms;
	s->cred.rest = s->rest;
	s->cred.user_agent = s->client;
}

/*
 * A new session for (serverid, umid), resolved from the catalog.  It is
 * built under the caller's context, so that an ERROR while resolving (a
 * mapping without client_id) frees it, and moved under TopMemoryContext
 * once complete.
 */
static ZbSession *
session_create(Oid serverid, Oid userid, const SessionKey *key)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "zerobus session",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	ZbSession  *s = palloc0(sizeof(ZbSession));

	s->key = *key;
	s->cxt = cxt;
	s->cfg = zb_server_config(serverid, userid, true);
	s->client = s->cfg->user_agent
		? psprintf("%s %s", ZB_CLIENT_NAME, s->cfg->user_agent)
		: pstrdup(ZB_CLIENT_NAME);
	s->tokens = zb_oauth_cache_create(cxt);
	s->rest = zb_multi_create(cxt);
	if (s->cfg->workspace_url)
		session_credentials(s);
	s->server_hash = GetSysCacheHashValue1(FOREIGNSERVEROID, ObjectIdGetDatum(serverid));
	s->mapping_hash = GetSysCacheHashValue1(USERMAPPINGOID, ObjectIdGetDatum(key->umid));
	MemoryContextSwitchTo(old);
	MemoryContextSetParent(cxt, TopMemoryContext);
	return s;
}

/*
 * The session of 'userid' on server 'serverid' (ours: the caller checked),
 * held until the current memory context is reset or deleted.  ERROR if the
 * user has no user mapping there (nor PUBLIC), or it lacks credentials.
 */
ZbSession *
zb_session_get(Oid serverid, Oid userid)
{
	SessionKey	key;
	SessionEntry *e;
	ZbSession  *s;

	if (sessions == NULL)
		session_init();
	memset(&key, 0, sizeof(key));
	key.serverid = serverid;
	key.umid = zb_user_mapping_oid(serverid, userid);

	session_sweep();
	e = hash_search(sessions, &key, HASH_FIND, NULL);
	if (e && e->session->stale)
	{
		/* held by someone (else the sweep freed it): it goes with its last hold */
		e->session->cached = false;
		hash_search(sessions, &key, HASH_REMOVE, NULL);
		e = NULL;
	}
	if (e == NULL)
	{
		s = session_create(serverid, userid, &key);
		e = hash_search(sessions, &key, HASH_ENTER, NULL);
		e->session = s;
		s->cached = true;
	}
	zb_session_hold(e->session, CurrentMemoryContext);
	return e->session;
}

/* Keep 's' (not freed, even when stale) until 'owner' is reset or deleted. */
void
zb_session_hold(ZbSession *s, MemoryContext owner)
{
	MemoryContextCallback *cb = MemoryContextAllocZero(owner, sizeof(MemoryContextCallback));

	cb->func = session_release;
	cb->arg = s;
	s->holds++;
	MemoryContextRegisterResetCallback(owner, cb);
}

/*
 * False once the catalog changed under the session: a caller that keeps a
 * session across transactions (a stream worker) gets a new one.  Only as
 * current as the invalidations processed so far (a transaction start).
 */
bool
zb_session_is_current(ZbSession *s)
{
	return !s->stale;
}

/*
 * The options a use needs, or the ERROR that says which one to add, in the
 * order users meet them: the endpoint of the service first, then the
 * workspace that issues tokens, then the SQL warehouse.
 */
void
zb_session_require(ZbSession *s, int needs)
{
	if (needs & ZB_NEED_ZEROBUS)
		zb_require_endpoint(s->cfg);
	zb_require_workspace(s->cfg);
	if ((needs & ZB_NEED_SQL) && s->cfg->warehouse_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("server \"%s\" has no warehouse_id", s->cfg->servername),
				 errhint("ALTER SERVER %s OPTIONS (ADD warehouse_id '<warehouse id>'); the id is in the SQL warehouse's connection details.",
						 quote_identifier(s->cfg->servername))));
}

const ZbServerConfig *
zb_session_config(ZbSession *s)
{
	return s->cfg;
}

/*
 * The client identifier sent with every request (x-zerobus-sdk, User-Agent):
 * "zerobus_fdw/<version>", then the server option user_agent if set.
 */
const char *
zb_session_client(ZbSession *s)
{
	return s->client;
}

/*
 * A token for 'purpose' (and a ZeroBus token's table), from the session's
 * cache or fetched.  'deadline' (0: none) bounds a fetch, for callers with
 * a budget: a remote cancel during abort, check_connection's timeout.
 * NULL with err filled on failure; the string is valid until the next call
 * for the same purpose and table.
 */
const char *
zb_session_token(ZbSession *s, ZbTokenPurpose purpose, const char *table,
				 TimestampTz deadline, ZbError *err)
{
	ZbCredentials cred;

	zb_session_require(s, 0);
	cred = s->cred;
	cred.deadline = deadline;
	return zb_oauth_token(s->tokens, &cred, purpose, table, err);
}

/* The service refused a token (UNAUTHENTICATED, HTTP 401): fetch a new one next time. */
void
zb_session_token_refused(ZbSession *s, ZbTokenPurpose purpose, const char *table)
{
	zb_oauth_invalidate(s->tokens, purpose, table);
}

/*
 * Start a REST request to the workspace: the session's handle (its
 * connections are reused), client identifier, CA file and timeouts.  The
 * caller adds method, URL, headers and body, and may shorten the timeouts.
 */
void
zb_session_init_request(ZbSession *s, ZbHttpRequest *req)
{
	memset(req, 0, sizeof(ZbHttpRequest));
	req->multi = s->rest;
	req->user_agent = s->client;
	req->ca_file = s->cfg->ca_file;
	req->connect_timeout_ms = s->cfg->connect_timeout_ms;
	req->timeout_ms = s->cfg->request_timeout_ms;
	req->wait_event_info = PG_WAIT_EXTENSION;
}

/*
 * Open a ZeroBus stream to 'target' (catalog.schema.table) and wait until
 * the service has created it: a token, the stream, and if the service
 * refuses the token (UNAUTHENTICATED: revoked, or expired early) a new
 * token and one more try.  record_type is ZB_RECORD_PROTO (with the
 * record's DescriptorProto) or ZB_RECORD_JSON (descriptor NULL).
 *
 * timeout_ms bounds the wait for the stream's creation, and with it the
 * connect timeout and a token fetch (check_connection's timeout); 0 means
 * the server's connect_timeout plus request_timeout, token fetches bounded
 * by their own request_timeout.  The stream lives in a child of the current
 * memory context.  NULL with err on failure; err->at_token says whether the
 * token was what failed.  A missing option is an ERROR.
 */
ZbStream *
zb_session_open_stream(ZbSession *s, const char *target, int record_type,
					   const ProtobufCBinaryData *descriptor, long timeout_ms, ZbError *err)
{
	TimestampTz token_deadline = 0;
	int			attempt;

	zb_session_require(s, ZB_NEED_ZEROBUS);
	Assert(record_type == ZB_RECORD_JSON || descriptor != NULL);
	if (timeout_ms > 0)
		token_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	else
		timeout_ms = s->cfg->connect_timeout_ms + s->cfg->request_timeout_ms;

	for (attempt = 0; attempt < 2; attempt++)
	{
		ZbStreamConfig scfg;
		ZbStream   *stream;
		const char *token = zb_session_token(s, ZB_TOKEN_ZEROBUS, target, token_deadline, err);

		if (token == NULL)
		{
			err->at_token = true;
			return NULL;
		}
		memset(&scfg, 0, sizeof(scfg));
		scfg.endpoint = s->cfg->zerobus_endpoint;
		scfg.ca_file = s->cfg->ca_file;
		scfg.connect_timeout_ms = Min(s->cfg->connect_timeout_ms, timeout_ms);
		scfg.token = token;
		scfg.user_agent = s->client;
		scfg.table_name = target;
		scfg.record_type = record_type;
		if (record_type == ZB_RECORD_PROTO)
		{
			scfg.descriptor = descriptor->data;
			scfg.descriptor_len = descriptor->len;
		}
		stream = zb_stream_open(&scfg, CurrentMemoryContext);
		if (zb_stream_wait_created(stream, timeout_ms, err))
			return stream;
		zb_stream_free(stream);
		/* a refused token may just be stale: fetch a new one, once */
		if (err->kind != ZB_ERR_GRPC || err->grpc_code != GRPC_UNAUTHENTICATED)
			break;
		zb_session_token_refused(s, ZB_TOKEN_ZEROBUS, target);
	}
	return NULL;
}
