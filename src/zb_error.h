/*-------------------------------------------------------------------------
 * zb_error.h
 *	  Errors from remote calls, carried as values rather than thrown.
 *
 * Network code never ereport()s a remote failure: a background worker must
 * decide whether to retry, and a user-facing function whether to report a
 * row or raise.  Everything that talks to Databricks fills a ZbError.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_ERROR_H
#define ZB_ERROR_H

typedef enum ZbErrorKind
{
	ZB_OK = 0,
	ZB_ERR_CONFIG,				/* bad option or URL: retrying cannot help */
	ZB_ERR_TRANSPORT,			/* DNS, connect, reset, HTTP/2 layer: retry */
	ZB_ERR_TLS,					/* certificate or handshake failure */
	ZB_ERR_TIMEOUT,				/* our own deadline passed */
	ZB_ERR_PROTOCOL,			/* the peer broke the protocol */
	ZB_ERR_GRPC,				/* a gRPC status other than OK */
	ZB_ERR_HTTP,				/* a REST endpoint answered with an error */
	ZB_ERR_AUTH					/* the token endpoint refused the credentials */
} ZbErrorKind;

/* gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html) */
typedef enum ZbGrpcCode
{
	GRPC_OK = 0,
	GRPC_CANCELLED = 1,
	GRPC_UNKNOWN = 2,
	GRPC_INVALID_ARGUMENT = 3,
	GRPC_DEADLINE_EXCEEDED = 4,
	GRPC_NOT_FOUND = 5,
	GRPC_ALREADY_EXISTS = 6,
	GRPC_PERMISSION_DENIED = 7,
	GRPC_RESOURCE_EXHAUSTED = 8,
	GRPC_FAILED_PRECONDITION = 9,
	GRPC_ABORTED = 10,
	GRPC_OUT_OF_RANGE = 11,
	GRPC_UNIMPLEMENTED = 12,
	GRPC_INTERNAL = 13,
	GRPC_UNAVAILABLE = 14,
	GRPC_DATA_LOSS = 15,
	GRPC_UNAUTHENTICATED = 16
} ZbGrpcCode;

#define ZB_ERROR_MSG_LEN 1024

typedef struct ZbError
{
	ZbErrorKind kind;
	int			grpc_code;		/* ZB_ERR_GRPC */
	long		http_status;	/* ZB_ERR_HTTP, ZB_ERR_AUTH, ZB_ERR_PROTOCOL */
	int			curl_code;		/* the libcurl result behind a transport error */
	bool		retryable;
	bool		at_token;		/* failed getting the OAuth token (session.c) */
	char		message[ZB_ERROR_MSG_LEN];
} ZbError;

extern void zb_error_clear(ZbError *err);
extern void zb_error_set(ZbError *err, ZbErrorKind kind, bool retryable,
						 const char *fmt,...) pg_attribute_printf(4, 5);
extern void zb_error_set_grpc(ZbError *err, int code, const char *message);
extern const char *zb_grpc_code_name(int code);
extern bool zb_grpc_code_retryable(int code);
extern const char *zb_error_kind_name(const ZbError *err);

#endif							/* ZB_ERROR_H */
