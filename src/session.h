/*-------------------------------------------------------------------------
 * session.h
 *	  The one way to reach Databricks: a server and user mapping, resolved
 *	  once per backend, with its credentials, tokens and REST handle.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_SESSION_H
#define ZB_SESSION_H

#include "http.h"
#include "oauth.h"
#include "option.h"
#include "zerobus.h"

typedef struct ZbSession ZbSession;

/* What a caller is about to use: zb_session_require() checks its options. */
#define ZB_NEED_ZEROBUS 0x01	/* zerobus_endpoint and workspace_url */
#define ZB_NEED_SQL		0x02	/* workspace_url and warehouse_id */

extern ZbSession *zb_session_get(Oid serverid, Oid userid);
extern void zb_session_hold(ZbSession *s, MemoryContext owner);
extern bool zb_session_is_current(ZbSession *s);
extern void zb_session_require(ZbSession *s, int needs);
extern const ZbServerConfig *zb_session_config(ZbSession *s);
extern const char *zb_session_client(ZbSession *s);

extern const char *zb_session_token(ZbSession *s, ZbTokenPurpose purpose, const char *table,
									TimestampTz deadline, ZbError *err);
extern void zb_session_token_refused(ZbSession *s, ZbTokenPurpose purpose, const char *table);
extern void zb_session_init_request(ZbSession *s, ZbHttpRequest *req);
extern ZbStream *zb_session_open_stream(ZbSession *s, const char *target, int record_type,
										const ProtobufCBinaryData *descriptor,
										long timeout_ms, ZbError *err);

#endif							/* ZB_SESSION_H */
