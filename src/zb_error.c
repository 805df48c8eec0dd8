/*-------------------------------------------------------------------------
 * zb_error.c
 *	  ZbError helpers and the gRPC status table.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "zb_error.h"

static const char *const grpc_code_names[] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
	"INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"
};

void
zb_error_clear(ZbError *err)
{
	memset(err, 0, sizeof(ZbError));
}

void
zb_error_set(ZbError *err, ZbErrorKind kind, bool retryable, const char *fmt,...)
{
	va_list		ap;

	err->kind = kind;
	err->retryable = retryable;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
}

const char *
zb_grpc_code_name(int code)
{
	if (code >= 0 && code < (int) lengthof(grpc_code_names))
		return grpc_code_names[code];
	return "UNKNOWN";
}

/* Everything is retryable but these (docs/DESIGN.md, "ZeroBus Ingest"). */
bool
zb_grpc_code_retryable(int code)
{
	switch (code)
	{
		case GRPC_INVALID_ARGUMENT:
		case GRPC_UNAUTHENTICATED:
		case GRPC_PERMISSION_DENIED:
		case GRPC_OUT_OF_RANGE:
		case GRPC_UNIMPLEMENTED:
		case GRPC_NOT_FOUND:
			return false;
		default:
			return true;
	}
}

void
zb_error_set_grpc(ZbError *err, int code, const char *message)
{
	err->grpc_code = code;
	zb_error_set(err, ZB_ERR_GRPC, zb_grpc_code_retryable(code), "%s%s%s",
				 zb_grpc_code_name(code),
				 (message && message[0]) ? ": " : "",
				 message ? message : "");
}

/* A short, stable name for the class of error, shown in views and rows. */
const char *
zb_error_kind_name(const ZbError *err)
{
	switch (err->kind)
	{
		case ZB_OK:
			return "OK";
		case ZB_ERR_CONFIG:
			return "CONFIG";
		case ZB_ERR_TRANSPORT:
			return "UNREACHABLE";
		case ZB_ERR_TLS:
			return "TLS";
		case ZB_ERR_TIMEOUT:
			return "TIMEOUT";
		case ZB_ERR_PROTOCOL:
			return "PROTOCOL";
		case ZB_ERR_GRPC:
			return zb_grpc_code_name(err->grpc_code);
		case ZB_ERR_HTTP:
			return "HTTP";
		case ZB_ERR_AUTH:
			return "AUTH";
	}
	return "UNKNOWN";
}
