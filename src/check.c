/*-------------------------------------------------------------------------
 * check.c
 *	  Trying a server from SQL: zerobus.check_connection(), the first thing
 *	  to run when setting up, and zerobus.bench_transport(), which measures
 *	  the network path alone.
 *
 * check_connection fetches a ZeroBus token for the target table, opens an EphemeralStream
 * to it, measures the round trip of the stream creation, and closes the
 * stream.  Remote failures come back as a row (error class, message and a
 * hint saying what to fix) rather than an ERROR, so that a user sees every
 * field; a missing server or user mapping is still an ERROR.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "google/protobuf/descriptor.pb-c.h"
#include "option.h"
#include "pbwire.h"
#include "session.h"

#define CHECK_NCOLS 7

static const char *
check_hint(const ZbError *err, bool token_stage)
{
	switch (err->kind)
	{
		case ZB_ERR_AUTH:
			return "Check client_id and client_secret in the user mapping, and that the service principal exists in the workspace.";
		case ZB_ERR_TLS:
			return "The server certificate could not be verified: check the host name, or set the server option ca_file to the CA that signed it.";
		case ZB_ERR_TRANSPORT:
			return token_stage
				? "Check the server option workspace_url (host and port) and that this host can reach it."
				: "Check the server option zerobus_endpoint (host and port) and that this host can reach it.";
		case ZB_ERR_TIMEOUT:
			return "The service did not answer in time: check network access, or raise the timeout.";
		case ZB_ERR_HTTP:
			return "The token endpoint failed; retry later.";
		case ZB_ERR_CONFIG:
			return err->curl_code == CURLE_ABORTED_BY_CALLBACK
				? "Use https://; plain http:// is only for an emulator on a loopback address."
				: NULL;
		case ZB_ERR_PROTOCOL:
			return token_stage
				? "workspace_url must be the workspace's URL (https://<deployment>.cloud.databricks.com)."
				: "zerobus_endpoint must be the ZeroBus service (https://<workspace-id>.zerobus.<region>.cloud.databricks.com), not the workspace URL.";
		case ZB_ERR_GRPC:
			switch (err->grpc_code)
			{
				case GRPC_UNAUTHENTICATED:
					return "The token was refused: check that workspace_id matches the workspace of zerobus_endpoint.";
				case GRPC_PERMISSION_DENIED:
					return "Grant the service principal USE CATALOG, USE SCHEMA, and SELECT and MODIFY on the target table.";
				case GRPC_NOT_FOUND:
					return "Create the target Delta table first; ZeroBus does not create tables.";
				case GRPC_INVALID_ARGUMENT:
					return "The service refused the stream's parameters; check the target table name.";
				default:
					return "The service reported an error; retry, and check the service status.";
			}
		default:
			return NULL;
	}
}

PG_FUNCTION_INFO_V1(zerobus_check_connection);

Datum
zerobus_check_connection(PG_FUNCTION_ARGS)
{
	char	   *servername = NameStr(*PG_GETARG_NAME(0));
	char	   *target = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Interval   *timeout = PG_GETARG_INTERVAL_P(2);
	TupleDesc	tupdesc;
	Datum		values[CHECK_NCOLS];
	bool		nulls[CHECK_NCOLS];
	Oid			serverid;
	ZbSession  *session;
	ZbError		err;
	long		timeout_ms;
	bool		token_ok = false;
	bool		ok = false;
	const char *hint = NULL;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	timeout_ms = (long) zb_interval_ms(timeout);
	if (timeout_ms <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must be positive")));

	serverid = zb_server_oid(servername);
	zb_check_server_usage(serverid, servername);

	zb_check_table_name(target, "target table");
	session = zb_session_get(serverid, GetUserId());
	zb_session_require(session, ZB_NEED_ZEROBUS);

	memset(nulls, true, sizeof(nulls));

	/*
	 * The token first, so that the round trip measured below is the stream
	 * creation's alone (the open reuses the token unless it is refused).
	 */
	if (zb_session_token(session, ZB_TOKEN_ZEROBUS, target,
						 TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms),
						 &err) == NULL)
		hint = check_hint(&err, true);
	else
	{
		ZbStream   *stream;
		TimestampTz start = GetCurrentTimestamp();

		token_ok = true;
		stream = zb_session_open_stream(session, target, ZB_RECORD_JSON, NULL, timeout_ms, &err);
		if (stream)
		{
			long		secs;
			int			usecs;

			TimestampDifference(start, GetCurrentTimestamp(), &secs, &usecs);
			ok = true;
			values[2] = CStringGetTextDatum(zb_stream_id(stream));
			nulls[2] = false;
			values[3] = Float8GetDatum(secs * 1000.0 + usecs / 1000.0);
			nulls[3] = false;
			zb_stream_close(stream, Min(timeout_ms, 2000));
		}
		else
		{
			/* a refused token's replacement can fail too */
			token_ok = !err.at_token;
			hint = check_hint(&err, err.at_token);
		}
	}

	values[0] = BoolGetDatum(ok);
	nulls[0] = false;
	values[1] = BoolGetDatum(token_ok);
	nulls[1] = false;
	if (!ok)
	{
		values[4] = CStringGetTextDatum(zb_error_kind_name(&err));
		nulls[4] = false;
		values[5] = CStringGetTextDatum(err.message);
		nulls[5] = false;
		if (hint)
		{
			values[6] = CStringGetTextDatum(hint);
			nulls[6] = false;
		}
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* ---------- zerobus.bench_transport ---------- */

/* DescriptorProto of the benchmark record: (id int64 = 1, payload string = 2). */
static uint8 *
bench_descriptor(size_t *len)
{
	Google__Protobuf__DescriptorProto d = GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT;
	Google__Protobuf__FieldDescriptorProto f[2] = {
		GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__INIT,
		GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__INIT
	};
	Google__Protobuf__FieldDescriptorProto *fp[2] = {&f[0], &f[1]};
	uint8	   *buf;

	f[0].name = "id";
	f[0].has_number = f[0].has_label = f[0].has_type = true;
	f[0].number = 1;
	f[0].label = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_OPTIONAL;
	f[0].type = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT64;
	f[1].name = "payload";
	f[1].has_number = f[1].has_label = f[1].has_type = true;
	f[1].number = 2;
	f[1].label = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_OPTIONAL;
	f[1].type = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_STRING;
	d.name = "bench_record";
	d.n_field = 2;
	d.field = fp;
	*len = google__protobuf__descriptor_proto__get_packed_size(&d);
	buf = palloc(*len);
	google__protobuf__descriptor_proto__pack(&d, buf);
	return buf;
}

#define BENCH_NCOLS 7

PG_FUNCTION_INFO_V1(zerobus_bench_transport);

/*
 * Stream synthetic records through the gRPC client as fast as the service
 * acknowledges them, keeping up to max_inflight batches outstanding, and
 * account for every ack.  The target needs columns id BIGINT, payload STRING.
 */
Datum
zerobus_bench_transport(PG_FUNCTION_ARGS)
{
	char	   *servername = NameStr(*PG_GETARG_NAME(0));
	char	   *target = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int64		total = PG_GETARG_INT64(2);
	int32		batch_size = PG_GETARG_INT32(3);
	int32		record_bytes = PG_GETARG_INT32(4);
	int32		max_inflight = PG_GETARG_INT32(5);
	Oid			serverid;
	TupleDesc	tupdesc;
	Datum		values[BENCH_NCOLS];
	bool		nulls[BENCH_NCOLS] = {0};
	ZbSession  *session;
	const ZbServerConfig *cfg;
	ProtobufCBinaryData descriptor;
	ZbStream   *stream;
	ZbError		err;
	ProtobufCBinaryData *recs;
	uint8	   *arena;
	char	   *payload;
	size_t		payload_len;
	size_t		rec_max;
	int64		sent = 0;
	int64		requests = 0;
	TimestampTz start;
	TimestampTz deadline;
	long		secs;
	int			usecs;
	double		elapsed;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	if (total < 1 || batch_size < 1 || batch_size > 100000 || record_bytes < 16 ||
		record_bytes > 1024 * 1024 || max_inflight < 1 || max_inflight > 10000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("benchmark parameters out of range"),
				 errhint("Use records >= 1, batch_size 1 to 100000, record_bytes 16 to 1048576 and max_inflight 1 to 10000.")));
	if ((int64) batch_size * record_bytes > ZB_MAX_REQUEST_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a batch of %d records of %d bytes exceeds the 10 MB request limit",
						batch_size, record_bytes)));

	/* the caller connects with its user mapping: it needs USAGE, as postgres_fdw requires */
	serverid = zb_server_oid(servername);
	zb_check_server_usage(serverid, servername);
	session = zb_session_get(serverid, GetUserId());
	zb_session_require(session, ZB_NEED_ZEROBUS);
	cfg = zb_session_config(session);
	zb_check_table_name(target, "target table");
	descriptor.data = bench_descriptor(&descriptor.len);

	/* record = id (tag + up to 10 bytes) + payload (tag + length + bytes) */
	payload_len = record_bytes - 12;
	payload = palloc(payload_len);
	memset(payload, 'x', payload_len);
	rec_max = 1 + PB_MAX_VARINT + 1 + PB_MAX_VARINT + payload_len;
	recs = palloc(sizeof(ProtobufCBinaryData) * batch_size);
	arena = palloc(rec_max * batch_size);

	start = GetCurrentTimestamp();
	deadline = TimestampTzPlusMilliseconds(start, cfg->request_timeout_ms);
	stream = zb_session_open_stream(session, target, ZB_RECORD_PROTO, &descriptor, 0, &err);
	if (stream == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 err.at_token
				 ? errmsg("could not get a ZeroBus token for \"%s\"", target)
				 : errmsg("could not open a ZeroBus stream to \"%s\"", target),
				 errdetail_internal("%s", err.message)));

	while (sent < total || zb_stream_acked(stream) < zb_stream_last_sent(stream))
	{
		int			wake;
		int64		acked_before = zb_stream_acked(stream);

		while (sent < total &&
			   zb_stream_last_sent(stream) - zb_stream_acked(stream) < max_inflight)
		{
			int			n = (int) Min((int64) batch_size, total - sent);
			uint8	   *p = arena;
			int			i;

			for (i = 0; i < n; i++)
			{
				uint8	   *r = p;

				p = pb_put_tag(p, 1, PB_WT_VARINT);
				p = pb_put_varint(p, (uint64) (sent + i));
				p = pb_put_bytes(p, 2, payload, payload_len);
				recs[i].data = r;
				recs[i].len = p - r;
			}
			zb_stream_send_proto_batch(stream, recs, n);
			sent += n;
			requests++;
		}
		if (!zb_stream_poll(stream, zb_ms_until(deadline), &wake, &err))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("ZeroBus stream failed after " INT64_FORMAT " records", sent),
					 errdetail_internal("%s", err.message)));
		if (zb_stream_acked(stream) > acked_before)
			deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), cfg->request_timeout_ms);
		else if (wake & ZB_WAKE_TIMEOUT)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("no acknowledgement from ZeroBus within %ld ms", cfg->request_timeout_ms)));
	}

	TimestampDifference(start, GetCurrentTimestamp(), &secs, &usecs);
	elapsed = secs + usecs / 1e6;
	values[0] = Int64GetDatum(sent);
	values[1] = Int64GetDatum(requests);
	values[2] = Int64GetDatum(zb_stream_acked(stream) + 1);
	values[3] = Int64GetDatum((int64) zb_stream_bytes_sent(stream));
	values[4] = Float8GetDatum(elapsed);
	values[5] = Float8GetDatum(elapsed > 0 ? sent / elapsed : 0);
	values[6] = Float8GetDatum(elapsed > 0 ? zb_stream_bytes_sent(stream) / elapsed / 1e6 : 0);
	zb_stream_close(stream, 2000);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
