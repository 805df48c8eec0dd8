/*-------------------------------------------------------------------------
 * oauth.h
 *	  OAuth M2M (client credentials) tokens for ZeroBus and the SQL API.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_OAUTH_H
#define ZB_OAUTH_H

#include "datatype/timestamp.h"
#include "zb_error.h"

typedef enum ZbTokenPurpose
{
	ZB_TOKEN_SQL,				/* plain all-apis token */
	ZB_TOKEN_ZEROBUS			/* scoped to one table for ZeroBus ingest */
} ZbTokenPurpose;

typedef struct ZbCredentials
{
	Oid			umid;			/* user mapping OID: the cache key */
	const char *workspace_url;
	const char *workspace_id;	/* for the ZeroBus resource */
	const char *client_id;
	const char *client_secret;
	const char *ca_file;
	long		connect_timeout_ms;
	long		request_timeout_ms;
	TimestampTz deadline;		/* 0, or no token request goes past this */
} ZbCredentials;

extern const char *zb_oauth_token(const ZbCredentials *cred, ZbTokenPurpose purpose,
								  const char *table, ZbError *err);
extern void zb_oauth_invalidate(const ZbCredentials *cred, ZbTokenPurpose purpose,
								const char *table);

#endif							/* ZB_OAUTH_H */
