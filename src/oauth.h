/*-------------------------------------------------------------------------
 * oauth.h
 *	  OAuth M2M (client credentials) tokens for ZeroBus and the SQL API.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_OAUTH_H
#define ZB_OAUTH_H

#include "datatype/timestamp.h"
#include "utils/palloc.h"
#include "zb_error.h"

typedef enum ZbTokenPurpose
{
	ZB_TOKEN_SQL,				/* plain all-apis token */
	ZB_TOKEN_ZEROBUS			/* scoped to one table for ZeroBus ingest */
} ZbTokenPurpose;

/*
 * What a token request needs: built from a session's resolved options
 * (session.c), never by hand elsewhere.
 */
typedef struct ZbCredentials
{
	const char *workspace_url;
	const char *workspace_id;	/* for the ZeroBus resource */
	const char *client_id;
	const char *client_secret;
	const char *ca_file;
	long		connect_timeout_ms;
	long		request_timeout_ms;
	struct ZbMulti *rest;		/* the session's REST handle */
	const char *user_agent;		/* the client identifier */
	TimestampTz deadline;		/* 0, or no token request goes past this */
} ZbCredentials;

/* Tokens of one set of credentials, by purpose and table (a session's). */
typedef struct ZbTokenCache ZbTokenCache;

extern ZbTokenCache *zb_oauth_cache_create(MemoryContext cxt);
extern const char *zb_oauth_token(ZbTokenCache *cache, const ZbCredentials *cred,
								  ZbTokenPurpose purpose, const char *table, ZbError *err);
extern void zb_oauth_invalidate(ZbTokenCache *cache, ZbTokenPurpose purpose,
								const char *table);

#endif							/* ZB_OAUTH_H */
