/*-------------------------------------------------------------------------
 * zerobus.c
 *	  The ZeroBus EphemeralStream protocol on top of a gRPC call.
 *
 * A stream starts with a CreateIngestStreamRequest (table, record type and
 * for PROTO the record's DescriptorProto); the server's first reply must be
 * a CreateIngestStreamResponse carrying the stream id.  Each later request
 * carries one offset_id, from 0 and rising by one; the server acknowledges
 * durability cumulatively ("everything up to offset N").  The server may
 * announce, with a CloseStreamSignal, that it will end the stream after a
 * duration: the caller stops sending, drains acks, and opens a new stream.
 *
 * This module checks the server's side of those rules: an ack beyond the
 * last offset sent, a first reply that is not the stream creation, or bytes
 * that do not decode are protocol errors, reported through ZbError.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "zerobus.h"
#include "zerobus.pb-c.h"

#define ZEROBUS_METHOD "/databricks.zerobus.Zerobus/EphemeralStream"
#define ZEROBUS_MAX_RESPONSE (4 * 1024 * 1024)

struct ZbStream
{
	MemoryContext cxt;
	ZbGrpcCall *call;
	ZbGrpcTarget target;
	const char *metadata[3];
	uint8	   *create_msg;		/* the packed CreateIngestStreamRequest */
	size_t		create_len;
	char	   *table;
	char	   *stream_id;		/* NULL until created */
	int			record_type;
	int64		last_sent;		/* offset of the last request sent, -1 none */
	int64		acked;			/* highest durable offset, -1 none */
	bool		closing;		/* CloseStreamSignal received */
	TimestampTz close_deadline;
	bool		failed;
	ZbError		failure;
};

/* The workspace id is the first DNS label of the ZeroBus endpoint's host. */
char *
zb_workspace_id_from_endpoint(const char *endpoint)
{
	const char *host = strstr(endpoint, "://");
	const char *end;

	host = host ? host + 3 : endpoint;
	end = host + strcspn(host, ".:/");
	return pnstrdup(host, end - host);
}

static void
zbs_fail(ZbStream *s, ZbError *err)
{
	if (!s->failed)
	{
		s->failed = true;
		s->failure = *err;
	}
}

static void
zbs_protocol_error(ZbStream *s, const char *fmt,...) pg_attribute_printf(2, 3);

static void
zbs_protocol_error(ZbStream *s, const char *fmt,...)
{
	ZbError		err;
	va_list		ap;

	zb_error_clear(&err);
	err.kind = ZB_ERR_PROTOCOL;
	err.retryable = true;
	va_start(ap, fmt);
	vsnprintf(err.message, sizeof(err.message), fmt, ap);
	va_end(ap);
	zbs_fail(s, &err);
}

ZbStream *
zb_stream_open(const ZbStreamConfig *cfg, MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "zerobus stream",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	ZbStream   *s = palloc0(sizeof(ZbStream));
	Databricks__Zerobus__EphemeralStreamRequest req = DATABRICKS__ZEROBUS__EPHEMERAL_STREAM_REQUEST__INIT;
	Databricks__Zerobus__CreateIngestStreamRequest create = DATABRICKS__ZEROBUS__CREATE_INGEST_STREAM_REQUEST__INIT;

	s->cxt = cxt;
	s->table = pstrdup(cfg->table_name);
	s->record_type = cfg->record_type;
	s->last_sent = -1;
	s->acked = -1;

	s->target.base_url = pstrdup(cfg->endpoint);
	s->target.method_path = ZEROBUS_METHOD;
	s->target.ca_file = cfg->ca_file ? pstrdup(cfg->ca_file) : NULL;
	s->target.connect_timeout_ms = cfg->connect_timeout_ms;
	s->target.max_message_bytes = ZEROBUS_MAX_RESPONSE;
	s->metadata[0] = psprintf("authorization: Bearer %s", cfg->token);
	s->metadata[1] = psprintf("x-databricks-zerobus-table-name: %s", cfg->table_name);
	s->target.user_agent = cfg->user_agent ? pstrdup(cfg->user_agent)
		: "zerobus_fdw/" ZEROBUS_FDW_VERSION;
	s->metadata[2] = psprintf("x-zerobus-sdk: %s", s->target.user_agent);

	create.table_name = s->table;
	create.has_record_type = true;
	create.record_type = (cfg->record_type == ZB_RECORD_JSON)
		? DATABRICKS__ZEROBUS__RECORD_TYPE__JSON
		: DATABRICKS__ZEROBUS__RECORD_TYPE__PROTO;
	if (cfg->record_type == ZB_RECORD_PROTO)
	{
		create.has_descriptor_proto = true;
		create.descriptor_proto.data = (uint8 *) cfg->descriptor;
		create.descriptor_proto.len = cfg->descriptor_len;
	}
	req.payload_case = DATABRICKS__ZEROBUS__EPHEMERAL_STREAM_REQUEST__PAYLOAD_CREATE_STREAM;
	req.create_stream = &create;
	s->create_len = protobuf_c_message_get_packed_size(&req.base);
	s->create_msg = palloc(s->create_len);
	protobuf_c_message_pack(&req.base, s->create_msg);

	s->call = zb_grpc_start(&s->target, s->metadata, lengthof(s->metadata), cxt);
	zb_grpc_send(s->call, s->create_msg, s->create_len);

	MemoryContextSwitchTo(old);
	return s;
}

/* Apply one server message to the stream state. */
static void
zbs_handle_response(ZbStream *s, const uint8 *data, size_t len)
{
	Databricks__Zerobus__EphemeralStreamResponse *resp;

	resp = databricks__zerobus__ephemeral_stream_response__unpack(NULL, len, data);
	if (resp == NULL)
	{
		zbs_protocol_error(s, "could not decode a %zu-byte EphemeralStreamResponse from the server",
						   len);
		return;
	}

	if (s->stream_id == NULL &&
		resp->payload_case != DATABRICKS__ZEROBUS__EPHEMERAL_STREAM_RESPONSE__PAYLOAD_CREATE_STREAM_RESPONSE)
	{
		zbs_protocol_error(s, "the server's first reply was not a CreateIngestStreamResponse (payload %d)",
						   (int) resp->payload_case);
		databricks__zerobus__ephemeral_stream_response__free_unpacked(resp, NULL);
		return;
	}

	switch (resp->payload_case)
	{
		case DATABRICKS__ZEROBUS__EPHEMERAL_STREAM_RESPONSE__PAYLOAD_CREATE_STREAM_RESPONSE:
			if (s->stream_id != NULL)
				zbs_protocol_error(s, "the server sent a second CreateIngestStreamResponse");
			else if (resp->create_stream_response->stream_id == NULL ||
					 resp->create_stream_response->stream_id[0] == '\0')
				zbs_protocol_error(s, "the server created a stream without a stream id");
			else
				s->stream_id = MemoryContextStrdup(s->cxt, resp->create_stream_response->stream_id);
			break;

		case DATABRICKS__ZEROBUS__EPHEMERAL_STREAM_RESPONSE__PAYLOAD_INGEST_RECORD_RESPONSE:
			{
				int64		upto = resp->ingest_record_response->durability_ack_up_to_offset;

				if (!resp->ingest_record_response->has_durability_ack_up_to_offset)
					break;
				if (upto > s->last_sent)
					zbs_protocol_error(s, "the server acknowledged offset " INT64_FORMAT
									   " but the last offset sent is " INT64_FORMAT,
									   upto, s->last_sent);
				else if (upto > s->acked)
					s->acked = upto;
				/* a duplicate or regressing ack is a no-op */
				break;
			}

		case DATABRICKS__ZEROBUS__EPHEMERAL_STREAM_RESPONSE__PAYLOAD_CLOSE_STREAM_SIGNAL:
			{
				Google__Protobuf__Duration *d = resp->close_stream_signal->duration;
				int64		ms = 0;

				if (d)
					ms = d->seconds * 1000 + d->nanos / 1000000;
				ms = Max(ms, 0);
				if (!s->closing)
				{
					s->closing = true;
					s->close_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
				}
				break;
			}

		default:
			/* a payload added after our proto: ignore it */
			break;
	}
	databricks__zerobus__ephemeral_stream_response__free_unpacked(resp, NULL);
}

static void
zbs_drain(ZbStream *s)
{
	const uint8 *data;
	size_t		len;

	while (!s->failed && zb_grpc_next_message(s->call, &data, &len))
		zbs_handle_response(s, data, len);
}

/* Check the call's status once it ended, or a failure detected mid-call. */
static void
zbs_check_call(ZbStream *s)
{
	ZbError		err;

	if (s->failed)
		return;
	if (!zb_grpc_status(s->call, &err))
	{
		zbs_fail(s, &err);
		return;
	}
	if (zb_grpc_finished(s->call))
	{
		zbs_drain(s);
		if (s->failed)
			return;
		zb_error_clear(&err);
		if (s->last_sent > s->acked)
			zb_error_set(&err, ZB_ERR_TRANSPORT, true,
						 "the server ended the stream with " INT64_FORMAT " request(s) unacknowledged",
						 s->last_sent - s->acked);
		else
			zb_error_set(&err, ZB_ERR_TRANSPORT, true, "the server closed the stream");
		zbs_fail(s, &err);
	}
}

/*
 * Process what has arrived, waiting up to timeout_ms (0: do not block) for
 * something to happen.  *wake gets the ZB_WAKE_* mask.  Returns false, with
 * err, once the stream has failed; it cannot be used after that.
 */
bool
zb_stream_poll(ZbStream *s, long timeout_ms, int *wake, ZbError *err)
{
	int			w = 0;

	if (!s->failed)
	{
		w = zb_grpc_wait(s->call, timeout_ms,
						 s->stream_id == NULL || s->last_sent > s->acked,
						 PG_WAIT_EXTENSION);
		zbs_drain(s);
		zbs_check_call(s);
	}
	if (wake)
		*wake = w;
	if (s->failed)
	{
		*err = s->failure;
		return false;
	}
	zb_error_clear(err);
	return true;
}

/*
 * Learn why stream creation failed when libcurl lost the answer.
 *
 * A server that refuses the stream at once (unknown table, bad token)
 * answers with a trailers-only response and, since our side of the call is
 * still open, resets the stream.  libcurl 7.88 then drops the response
 * headers and reports "Empty reply from server" (http2.c discards pending
 * header bytes when a reset stream closes).  Sending the same
 * CreateIngestStreamRequest on a new call whose one DATA frame carries
 * END_STREAM avoids the reset, so the status arrives intact (half-closing
 * after the message, in a frame of its own, still lost the race now and
 * then: the server can answer between the two frames).  Only the idempotent create
 * message was sent on the failed call, so repeating it is harmless.
 */
static void
zbs_probe_create_failure(ZbStream *s, TimestampTz deadline, ZbError *err)
{
	ZbGrpcCall *probe = zb_grpc_start_unary(&s->target, s->metadata, lengthof(s->metadata),
											s->cxt, s->create_msg, s->create_len);
	ZbError		perr;

	while (!zb_grpc_finished(probe))
	{
		long		left = zb_ms_until(deadline);

		if (left == 0)
			break;
		(void) zb_grpc_wait(probe, left, true, PG_WAIT_EXTENSION);
	}
	if (zb_grpc_finished(probe) && !zb_grpc_status(probe, &perr) && perr.kind == ZB_ERR_GRPC)
		*err = perr;
	zb_grpc_free(probe);
}

bool
zb_stream_wait_created(ZbStream *s, long timeout_ms, ZbError *err)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	for (;;)
	{
		long		left = zb_ms_until(deadline);

		zbs_drain(s);
		if (s->stream_id)
			return true;
		if (left == 0)
		{
			zb_error_set(err, ZB_ERR_TIMEOUT, true,
						 "no reply to CreateIngestStream within %ld ms", timeout_ms);
			return false;
		}
		if (!zb_stream_poll(s, left, NULL, err))
		{
			if (err->kind == ZB_ERR_TRANSPORT && err->curl_code == CURLE_GOT_NOTHING)
				zbs_probe_create_failure(s, deadline, err);
			return false;
		}
	}
}

int64
zb_stream_send_proto_batch(ZbStream *s, const ProtobufCBinaryData *records, size_t n)
{
	Databricks__Zerobus__EphemeralStreamRequest req = DATABRICKS__ZEROBUS__EPHEMERAL_STREAM_REQUEST__INIT;
	Databricks__Zerobus__IngestRecordBatchRequest batch = DATABRICKS__ZEROBUS__INGEST_RECORD_BATCH_REQUEST__INIT;
	Databricks__Zerobus__ProtoEncodedRecordBatch recs = DATABRICKS__ZEROBUS__PROTO_ENCODED_RECORD_BATCH__INIT;

	Assert(s->record_type == ZB_RECORD_PROTO && !s->closing);
	recs.n_records = n;
	recs.records = (ProtobufCBinaryData *) records;
	batch.has_offset_id = true;
	batch.offset_id = s->last_sent + 1;
	batch.batch_case = DATABRICKS__ZEROBUS__INGEST_RECORD_BATCH_REQUEST__BATCH_PROTO_ENCODED_BATCH;
	batch.proto_encoded_batch = &recs;
	req.payload_case = DATABRICKS__ZEROBUS__EPHEMERAL_STREAM_REQUEST__PAYLOAD_INGEST_RECORD_BATCH;
	req.ingest_record_batch = &batch;
	zb_grpc_send_message(s->call, &req.base);
	return ++s->last_sent;
}

int64
zb_stream_send_json_batch(ZbStream *s, char **records, size_t n)
{
	Databricks__Zerobus__EphemeralStreamRequest req = DATABRICKS__ZEROBUS__EPHEMERAL_STREAM_REQUEST__INIT;
	Databricks__Zerobus__IngestRecordBatchRequest batch = DATABRICKS__ZEROBUS__INGEST_RECORD_BATCH_REQUEST__INIT;
	Databricks__Zerobus__JsonRecordBatch recs = DATABRICKS__ZEROBUS__JSON_RECORD_BATCH__INIT;

	Assert(s->record_type == ZB_RECORD_JSON && !s->closing);
	recs.n_records = n;
	recs.records = records;
	batch.has_offset_id = true;
	batch.offset_id = s->last_sent + 1;
	batch.batch_case = DATABRICKS__ZEROBUS__INGEST_RECORD_BATCH_REQUEST__BATCH_JSON_BATCH;
	batch.json_batch = &recs;
	req.payload_case = DATABRICKS__ZEROBUS__EPHEMERAL_STREAM_REQUEST__PAYLOAD_INGEST_RECORD_BATCH;
	req.ingest_record_batch = &batch;
	zb_grpc_send_message(s->call, &req.base);
	return ++s->last_sent;
}

int64
zb_stream_acked(ZbStream *s)
{
	return s->acked;
}

int64
zb_stream_last_sent(ZbStream *s)
{
	return s->last_sent;
}

bool
zb_stream_closing(ZbStream *s, TimestampTz *deadline)
{
	if (s->closing && deadline)
		*deadline = s->close_deadline;
	return s->closing;
}

const char *
zb_stream_id(ZbStream *s)
{
	return s->stream_id;
}

/* Bytes queued but not yet handed to libcurl: diagnostics for stalls. */
size_t
zb_stream_send_pending(ZbStream *s)
{
	return zb_grpc_send_pending(s->call);
}

uint64
zb_stream_bytes_sent(ZbStream *s)
{
	return zb_grpc_bytes_sent(s->call);
}

/*
 * Half-close and wait up to drain_timeout_ms for the server to end the call
 * (collecting acks meanwhile), then release everything.
 */
void
zb_stream_close(ZbStream *s, long drain_timeout_ms)
{
	TimestampTz deadline;
	ZbError		err;

	if (!s->failed)
	{
		zb_grpc_close_send(s->call);
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), drain_timeout_ms);
		while (!zb_grpc_finished(s->call) && !s->failed)
		{
			long		left = zb_ms_until(deadline);

			if (left == 0)
				break;
			(void) zb_stream_poll(s, left, NULL, &err);
		}
	}
	zb_stream_free(s);
}

void
zb_stream_free(ZbStream *s)
{
	if (s)
		MemoryContextDelete(s->cxt);
}
