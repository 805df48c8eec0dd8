/*-------------------------------------------------------------------------
 * grpc.h
 *	  A bidirectional gRPC call over libcurl HTTP/2.
 *
 * One call = one HTTP/2 POST whose request body is an open-ended stream of
 * length-prefixed messages and whose response body is the same, followed
 * by trailers carrying grpc-status.  Sending queues framed bytes and
 * unpauses the upload; receiving parses frames out of the response body.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_GRPC_H
#define ZB_GRPC_H

#include <protobuf-c/protobuf-c.h>

#include "net.h"

typedef struct ZbGrpcCall ZbGrpcCall;

typedef struct ZbGrpcTarget
{
	const char *base_url;		/* https://host[:port] or http://host:port (h2c) */
	const char *method_path;	/* "/package.Service/Method" */
	const char *ca_file;		/* NULL: the system's trust store */
	long		connect_timeout_ms;
	size_t		max_message_bytes;	/* largest message accepted from the peer */
	const char *user_agent;		/* NULL: zerobus_fdw/<version> */
} ZbGrpcTarget;

extern ZbGrpcCall *zb_grpc_start(const ZbGrpcTarget *target,
								 const char *const *metadata, int nmetadata,
								 MemoryContext parent);
extern ZbGrpcCall *zb_grpc_start_unary(const ZbGrpcTarget *target,
									   const char *const *metadata, int nmetadata,
									   MemoryContext parent, const void *data, size_t len);
extern void zb_grpc_free(ZbGrpcCall *call);

extern void zb_grpc_send(ZbGrpcCall *call, const void *data, size_t len);
extern void zb_grpc_send_message(ZbGrpcCall *call, const ProtobufCMessage *msg);
extern void zb_grpc_close_send(ZbGrpcCall *call);
extern size_t zb_grpc_send_pending(ZbGrpcCall *call);

extern bool zb_grpc_next_message(ZbGrpcCall *call, const uint8 **data, size_t *len);
extern int	zb_grpc_wait(ZbGrpcCall *call, long timeout_ms, bool awaiting,
						 uint32 wait_event_info);
extern bool zb_grpc_finished(ZbGrpcCall *call);
extern bool zb_grpc_status(ZbGrpcCall *call, ZbError *err);

extern uint64 zb_grpc_bytes_sent(ZbGrpcCall *call);

#endif							/* ZB_GRPC_H */
