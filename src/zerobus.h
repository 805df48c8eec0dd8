/*-------------------------------------------------------------------------
 * zerobus.h
 *	  The ZeroBus EphemeralStream protocol (docs/DESIGN.md, "ZeroBus Ingest:
 *	  the EphemeralStream protocol").
 *-------------------------------------------------------------------------
 */
#ifndef ZB_ZEROBUS_H
#define ZB_ZEROBUS_H

#include "grpc.h"

#define ZB_RECORD_PROTO 1
#define ZB_RECORD_JSON 2

/* requests above this are refused by the service; we stay well below */
#define ZB_MAX_REQUEST_BYTES (10 * 1024 * 1024)

typedef struct ZbStream ZbStream;

typedef struct ZbStreamConfig
{
	const char *endpoint;		/* https://<id>.zerobus.<region>.cloud.databricks.com */
	const char *ca_file;
	long		connect_timeout_ms;
	const char *token;
	const char *user_agent;		/* the client identifier (x-zerobus-sdk,
								 * User-Agent); NULL: zerobus_fdw/<version> */
	const char *table_name;		/* catalog.schema.table */
	int			record_type;	/* ZB_RECORD_PROTO or ZB_RECORD_JSON */
	const uint8 *descriptor;	/* serialized DescriptorProto (PROTO only) */
	size_t		descriptor_len;
} ZbStreamConfig;

extern ZbStream *zb_stream_open(const ZbStreamConfig *cfg, MemoryContext parent);
extern bool zb_stream_wait_created(ZbStream *s, long timeout_ms, ZbError *err);
extern int64 zb_stream_send_proto_batch(ZbStream *s, const ProtobufCBinaryData *records,
										size_t n);
extern int64 zb_stream_send_json_batch(ZbStream *s, char **records, size_t n);
extern bool zb_stream_poll(ZbStream *s, long timeout_ms, int *wake, ZbError *err);
extern int64 zb_stream_acked(ZbStream *s);
extern int64 zb_stream_last_sent(ZbStream *s);
extern bool zb_stream_closing(ZbStream *s, TimestampTz *deadline);
extern const char *zb_stream_id(ZbStream *s);
extern uint64 zb_stream_bytes_sent(ZbStream *s);
extern size_t zb_stream_send_pending(ZbStream *s);
extern void zb_stream_close(ZbStream *s, long drain_timeout_ms);
extern void zb_stream_free(ZbStream *s);

extern char *zb_workspace_id_from_endpoint(const char *endpoint);

#endif							/* ZB_ZEROBUS_H */
