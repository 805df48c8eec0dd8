/*-------------------------------------------------------------------------
 * cdcsql.c
 *	  The SQL functions of change capture (the SQL declarations are in
 *	  extension/40_streams.sql):
 *	  - zerobus.peek_changes(stream, max_records, wait): what the stream
 *	    would send next, decoded exactly as its worker would, without
 *	    sending or confirming anything (a stream not yet established is read
 *	    by a helper process: an ephemeral slot, the initial copy, the
 *	    changes after it; an established one from its own slot);
 *	  - zerobus.flush() of a change-capture stream: waits until the slot
 *	    has confirmed everything committed before the call;
 *	  - zerobus.resync_stream(name): a new slot, so a new copy.
 *	  See docs/DESIGN.md, "Initial snapshot", "Durability: the progress
 *	  record" and "Lifecycle of slots".
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "libpq/pqformat.h"
#include "libpq/pqmq.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "replication/slot.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/lsyscache.h"
#include "access/xlog.h"

#include "compat.h"
#include "cdc.h"
#include "option.h"
#include "runas.h"
#include "shmem.h"
#include "stream.h"

/* ======================================================================
 * zerobus.peek_changes(stream, max_records, wait)
 *
 * A stream that is not established yet has no slot: what it would send is
 * an initial copy at a new slot's consistent point and the changes after
 * it.  The copy needs a transaction that has taken no snapshot, which a
 * SQL function is not, so a helper process does it: a background worker
 * that creates an ephemeral slot and copies the table exactly as the
 * stream's worker would, decodes what follows, and sends the records back
 * over a shared memory queue (its errors over a second one, as parallel
 * workers do).  An established stream is read from its own slot here.
 * ====================================================================== */

#define PEEK_QUEUE_SIZE (1024 * 1024)
#define PEEK_ERROR_QUEUE_SIZE (16 * 1024)

typedef struct PeekArgs
{
	Oid			dboid;
	Oid			role;
	Oid			source;
	bool		json;
	bool		preimage;
	bool		snapshot;
	int64		seq_base;
	int64		max_records;
	int64		wait_ms;
	int			caller_pid;
	char		slot_name[NAMEDATALEN];
} PeekArgs;

/* One record on the queue: this header, then data, json and error bytes. */
typedef struct PeekMsg
{
	int64		seq;
	int32		change;
	int32		has_data;
	XLogRecPtr	commit_lsn;
	TimestampTz commit_time;
	uint32		data_len;
	uint32		json_len;
	uint32		error_len;
} PeekMsg;

typedef struct PeekSink
{
	ZbCdcSink	sink;
	ReturnSetInfo *rsinfo;		/* the caller's result, or NULL in the helper */
	shm_mq_handle *mqh;			/* the helper's queue */
	int64		max;
	int64		stored;
} PeekSink;

static void
peek_schema(ZbCdcSink *sink, const ZbRecordSchema *schema)
{
}

static void
peek_store(PeekSink *ps, int64 seq, ZbCdcChange change, XLogRecPtr commit_lsn,
		   TimestampTz commit_time, const uint8 *data, size_t len, const char *json,
		   const char *error)
{
	Datum		values[7];
	bool		nulls[7];

	memset(nulls, false, sizeof(nulls));
	values[0] = Int64GetDatum(seq);
	values[1] = CStringGetTextDatum(zb_cdc_change_names[change]);
	values[2] = LSNGetDatum(commit_lsn);
	values[3] = TimestampTzGetDatum(commit_time);
	if (json)
		values[4] = DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
	else
		nulls[4] = true;
	if (data)
	{
		bytea	   *b = palloc(VARHDRSZ + len);

		SET_VARSIZE(b, VARHDRSZ + len);
		memcpy(VARDATA(b), data, len);
		values[5] = PointerGetDatum(b);
	}
	else
		nulls[5] = true;
	if (error)
		values[6] = CStringGetTextDatum(error);
	else
		nulls[6] = true;
	tuplestore_putvalues(ps->rsinfo->setResult, ps->rsinfo->setDesc, values, nulls);
	ps->stored++;
}

static void
peek_record(ZbCdcSink *sink, const ZbCdcRecord *rec)
{
	PeekSink   *ps = (PeekSink *) sink;
	const char *json = rec->json ? rec->json : rec->dead_json;

	if (ps->stored >= ps->max)
		return;
	if (ps->rsinfo)
	{
		peek_store(ps, rec->seq, rec->change, rec->commit_lsn, rec->commit_time, rec->data,
				   rec->len, json, rec->error);
		return;
	}
	else
	{
		/* in the helper: to the caller */
		PeekMsg		m;
		shm_mq_iovec iov[4];
		int			n = 0;

		memset(&m, 0, sizeof(m));
		m.seq = rec->seq;
		m.change = rec->change;
		m.has_data = rec->data != NULL;
		m.commit_lsn = rec->commit_lsn;
		m.commit_time = rec->commit_time;
		m.data_len = rec->data ? rec->len : 0;
		m.json_len = json ? strlen(json) : 0;
		m.error_len = rec->error ? strlen(rec->error) : 0;
		iov[n].data = (const char *) &m;
		iov[n++].len = sizeof(m);
		if (m.data_len)
		{
			iov[n].data = (const char *) rec->data;
			iov[n++].len = m.data_len;
		}
		if (m.json_len)
		{
			iov[n].data = json;
			iov[n++].len = m.json_len;
		}
		if (m.error_len)
		{
			iov[n].data = rec->error;
			iov[n++].len = m.error_len;
		}
		if (shm_mq_sendv(ps->mqh, iov, n, false, true) != SHM_MQ_SUCCESS)
			proc_exit(0);		/* the caller is gone */
		ps->stored++;
	}
}

/* Decode into the sink until max records, or the deadline once caught up. */
static void
peek_decode(ZbCdc *cdc, PeekSink *ps, TimestampTz deadline)
{
	while (ps->stored < ps->max)
	{
		long		left;

		ZbCdcDecoded r = zb_cdc_decode(cdc, &ps->sink, ps->max - ps->stored, 0);

		if (r == ZB_CDC_REFUSED)
			ReThrowError(zb_cdc_refusal(cdc));	/* what the stream's worker pauses at */
		if (r == ZB_CDC_BOUND)
			continue;
		left = (long) ((deadline - GetCurrentTimestamp()) / 1000);
		if (left <= 0)
			break;
		zb_cdc_wait(cdc, left);
	}
}

PGDLLEXPORT void zerobus_cdc_peek_main(Datum arg);

/* The helper process of peek_changes for a stream that is not established. */
void
zerobus_cdc_peek_main(Datum arg)
{
	dsm_segment *seg;
	PeekArgs   *args;
	shm_mq	   *mq;
	shm_mq	   *errq;
	PeekSink	ps;
	ZbCdcConfig cfg;
	ZbCdc	   *cdc;
	TimestampTz deadline;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	seg = dsm_attach(DatumGetUInt32(arg));
	if (seg == NULL)
		proc_exit(0);			/* the caller gave up already */
	args = dsm_segment_address(seg);
	mq = (shm_mq *) ((char *) args + MAXALIGN(sizeof(PeekArgs)));
	errq = (shm_mq *) ((char *) mq + PEEK_QUEUE_SIZE);
	shm_mq_set_sender(errq, MyProc);
	/* errors (and only errors) reach the caller, who raises them */
	pq_redirect_to_shm_mq(seg, shm_mq_attach(errq, seg, NULL));
	shm_mq_set_sender(mq, MyProc);
	memset(&ps, 0, sizeof(ps));
	ps.mqh = shm_mq_attach(mq, seg, NULL);
	ps.sink.schema = peek_schema;
	ps.sink.record = peek_record;
	ps.sink.want_json = true;
	ps.max = args->max_records;

	BackgroundWorkerInitializeConnectionByOid(args->dboid, InvalidOid, 0);
	/* which session it works for (t/040_cdc_decode.pl waits for it by this name) */
	{
		char		appname[NAMEDATALEN];

		snprintf(appname, sizeof(appname), "zerobus_fdw peek_changes for PID %d",
				 args->caller_pid);
		pgstat_report_appname(appname);
	}
	SetConfigOption("client_min_messages", "error", PGC_SUSET, PGC_S_OVERRIDE);

	memset(&cfg, 0, sizeof(cfg));
	cfg.slot_name = args->slot_name;
	cfg.source = args->source;
	cfg.role = args->role;
	cfg.json = args->json;
	cfg.preimage = args->preimage;
	cfg.seq_base = args->seq_base;
	cfg.no_confirm = true;
	cdc = zb_cdc_open(&cfg, TopMemoryContext);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), args->wait_ms);

	/* what the stream's worker does at its first start */
	StartTransactionCommand();
	zb_cdc_create(cdc, true, args->snapshot);
	if (args->snapshot)
		while (ps.stored < ps.max && zb_cdc_copy(cdc, &ps.sink, ps.max - ps.stored))
			;
	zb_cdc_copy_done(cdc);
	CommitTransactionCommand();

	/* then the changes, decoded outside any transaction, as the worker does */
	peek_decode(cdc, &ps, deadline);
	zb_cdc_close(cdc);
	proc_exit(0);
}

/* Run the helper and store what it sends; raise its error if it fails. */
static void
peek_with_helper(PeekSink *ps, PeekArgs *a)
{
	dsm_segment *seg;
	PeekArgs   *args;
	shm_mq	   *mq;
	shm_mq	   *errq;
	shm_mq_handle *mqh;
	shm_mq_handle *errqh;
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;
	Size		size = MAXALIGN(sizeof(PeekArgs)) + PEEK_QUEUE_SIZE + PEEK_ERROR_QUEUE_SIZE;

	seg = dsm_create(size, 0);
	args = dsm_segment_address(seg);
	*args = *a;
	mq = shm_mq_create((char *) args + MAXALIGN(sizeof(PeekArgs)), PEEK_QUEUE_SIZE);
	errq = shm_mq_create((char *) mq + PEEK_QUEUE_SIZE, PEEK_ERROR_QUEUE_SIZE);
	shm_mq_set_receiver(mq, MyProc);
	shm_mq_set_receiver(errq, MyProc);
	mqh = shm_mq_attach(mq, seg, NULL);
	errqh = shm_mq_attach(errq, seg, NULL);

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_ConsistentState;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(bgw.bgw_library_name, "zerobus_fdw", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "zerobus_cdc_peek_main", BGW_MAXLEN);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "zerobus_fdw peek_changes for PID %d", MyProcPid);
	strlcpy(bgw.bgw_type, "zerobus_fdw peek_changes", BGW_MAXLEN);
	bgw.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	bgw.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&bgw, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the helper process of peek_changes"),
				 errdetail("A stream that is not established yet is read by a background worker, as its own worker would read it."),
				 errhint("Raise max_worker_processes, or try again later.")));
	shm_mq_set_handle(mqh, handle);
	shm_mq_set_handle(errqh, handle);

	PG_TRY();
	{
		for (;;)
		{
			Size		len;
			void	   *data;
			PeekMsg		m;
			char	   *p;
			char	   *json = NULL;
			char	   *error = NULL;

			if (shm_mq_receive(mqh, &len, &data, false) != SHM_MQ_SUCCESS)
				break;			/* the helper is done (or failed) */
			if (len < sizeof(m))
				elog(ERROR, "peek_changes: a short message from its helper");
			memcpy(&m, data, sizeof(m));
			p = (char *) data + sizeof(m);
			if (m.json_len)
				json = pnstrdup(p + m.data_len, m.json_len);
			if (m.error_len)
				error = pnstrdup(p + m.data_len + m.json_len, m.error_len);
			if (ps->stored < ps->max)
				peek_store(ps, m.seq, (ZbCdcChange) m.change, m.commit_lsn, m.commit_time,
						   m.has_data ? (uint8 *) p : NULL, m.data_len, json, error);
		}
		/* an error of the helper is this function's error */
		for (;;)
		{
			Size		len;
			void	   *data;
			StringInfoData msg;
			ErrorData	edata;
			char		type;

			if (shm_mq_receive(errqh, &len, &data, true) != SHM_MQ_SUCCESS)
				break;
			/* a read-only view of the message, as parallel.c reads its workers' */
			msg.data = data;
			msg.len = len;
			msg.maxlen = len;
			msg.cursor = 0;
			type = pq_getmsgbyte(&msg);
			if (type != 'E')
				continue;
			pq_parse_errornotice(&msg, &edata);
			edata.elevel = ERROR;
			ThrowErrorData(&edata);
		}
	}
	PG_CATCH();
	{
		TerminateBackgroundWorker(handle);
		PG_RE_THROW();
	}
	PG_END_TRY();
	dsm_detach(seg);
}

PG_FUNCTION_INFO_V1(zerobus_peek_changes);

/*
 * What a change-capture stream would send next, without sending or
 * confirming anything.  A stream not established yet: (a helper process
 * creates) an ephemeral slot, the initial copy (if the stream takes one)
 * and the changes committed since.  An established stream: from its slot's
 * confirmed position, skipping what its progress record says is
 * acknowledged.  With 'wait', it waits up to that long for commits until it
 * has max_records records.  The stream's capture role (or a member) only.
 */
Datum
zerobus_peek_changes(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name;
	int64		max;
	int64		wait_ms = 0;
	ZbStreamRow row;
	PeekSink	ps;
	char	   *problem;
	char	   *hint;
	char	   *warning;
	int			sqlstate;
	TimestampTz deadline;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", PG_ARGISNULL(0) ? "stream" : "max_records")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	max = PG_GETARG_INT32(1);
	if (max < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_records must not be negative")));
	if (!PG_ARGISNULL(2))
	{
		wait_ms = zb_interval_ms(PG_GETARG_INTERVAL_P(2));
		if (wait_ms < 0 || wait_ms > 3600 * 1000)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("wait must be between 0 and 1 hour")));
	}

	(void) zb_shmem();
	if (!zb_stream_lookup(name, false, &row))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" does not exist", name),
				 errhint("SELECT name FROM zerobus.streams; lists the streams of this database.")));
	if (!OidIsValid(row.source))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("stream \"%s\" consumes a queue: it has no change capture", name),
				 errhint("peek_changes shows what a stream created with source => <table> would send.")));
	if (!OidIsValid(row.owner) || !has_privs_of_role(GetUserId(), row.owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read the changes of stream \"%s\"", name),
				 OidIsValid(row.owner)
				 ? errdetail("Only role \"%s\", the stream's capture role, and its members may.",
							 GetUserNameFromId(row.owner, false))
				 : errdetail("Its capture role no longer exists.")));
	problem = zb_cdc_capture_problem(row.source, row.owner, &sqlstate, &hint);
	if (problem == NULL)
		problem = zb_cdc_source_problem(row.source, row.update_preimage, !row.cdc_started, false,
										&sqlstate, &hint, &warning);
	if (problem)
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg("stream \"%s\" cannot capture changes: %s", name, problem),
				 hint ? errhint("%s", hint) : 0));
	if (MyReplicationSlot != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("this session already uses replication slot \"%s\"",
						NameStr(MyReplicationSlot->data.name))));

	InitMaterializedSRF(fcinfo, 0);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);
	memset(&ps, 0, sizeof(ps));
	ps.sink.schema = peek_schema;
	ps.sink.record = peek_record;
	ps.sink.want_json = true;
	ps.rsinfo = rsinfo;
	ps.max = max;

	if (!row.cdc_started)
	{
		PeekArgs	a;

		memset(&a, 0, sizeof(a));
		a.dboid = MyDatabaseId;
		a.role = row.owner;
		a.source = row.source;
		a.json = strcmp(row.record_format, "json") == 0;
		a.preimage = row.update_preimage;
		a.snapshot = row.snapshot;
		a.seq_base = row.seq_base;
		a.max_records = max;
		a.wait_ms = wait_ms;
		a.caller_pid = MyProcPid;
		/* ephemeral, and named so that no stream's and no sweep's */
		snprintf(a.slot_name, NAMEDATALEN, ZB_CDC_SLOT_PREFIX "peek_%d", MyProcPid);
		peek_with_helper(&ps, &a);
	}
	else
	{
		ZbCdcConfig cfg;
		ZbCdc	   *cdc;

		memset(&cfg, 0, sizeof(cfg));
		cfg.source = row.source;
		cfg.role = row.owner;
		cfg.json = strcmp(row.record_format, "json") == 0;
		cfg.preimage = row.update_preimage;
		cfg.seq_base = row.seq_base;
		cfg.no_confirm = true;
		cfg.slot_name = row.slot_name;
		cdc = zb_cdc_open(&cfg, CurrentMemoryContext);
		PG_TRY();
		{
			char	   *detail;

			switch (zb_cdc_start(cdc, true, &detail))
			{
				case ZB_CDC_STREAM:
					break;
				case ZB_CDC_BUSY:
					ereport(ERROR,
							(errcode(ERRCODE_OBJECT_IN_USE),
							 errmsg("stream \"%s\" is being delivered: %s", name, detail),
							 errhint("SELECT zerobus.stop_stream('%s'); then peek.", name)));
					break;
				default:
					ereport(ERROR,
							(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
							 errmsg("stream \"%s\" cannot resume: %s", name, detail),
							 errhint("SELECT zerobus.resync_stream('%s'); starts it over with a new snapshot.",
									 name)));
			}
			peek_decode(cdc, &ps, deadline);
			zb_cdc_close(cdc);
		}
		PG_CATCH();
		{
			/* no time-travel catalog entries may survive (as logicalfuncs.c does) */
			InvalidateSystemCaches();
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	return (Datum) 0;
}

/* ======================================================================
 * zerobus.flush() of a change-capture stream
 * ====================================================================== */

/* The slot's confirmed position (Invalid if there is no such slot). */
static XLogRecPtr
cdc_slot_confirmed(const char *slot_name)
{
	ReplicationSlot *s;
	XLogRecPtr	confirmed = InvalidXLogRecPtr;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	s = SearchNamedReplicationSlot(slot_name, false);
	if (s)
	{
		SpinLockAcquire(&s->mutex);
		confirmed = s->data.confirmed_flush;
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	return confirmed;
}

/*
 * Wait until every change committed before the call is durably
 * acknowledged: the stream is established (its copy delivered) and its
 * slot's confirmed position has reached the WAL position of the call.
 * Returns the WAL bytes that were not confirmed when it was called.
 */
int64
zb_cdc_flush(const char *name, const ZbStreamRow *first, Interval *iv)
{
	XLogRecPtr	target = GetXLogInsertRecPtr();
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), zb_interval_ms(iv));
	int64		initial = -1;

	if (pg_class_aclcheck(first->source, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(first->source));
	if (!first->enabled)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream \"%s\" is stopped, so its changes are not delivered", name),
				 errhint("SELECT zerobus.start_stream('%s');", name)));
	for (;;)
	{
		ZbStreamRow row;
		bool		found;
		long		left;

		/* the stream as committed now: established, and its slot (a resync changes it) */
		PushActiveSnapshot(GetLatestSnapshot());
		found = zb_stream_lookup(name, false, &row);
		PopActiveSnapshot();
		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("stream \"%s\" was dropped", name)));
		if (row.cdc_started)
		{
			XLogRecPtr	confirmed = cdc_slot_confirmed(row.slot_name);

			if (initial < 0)
				initial = confirmed >= target ? 0 : (int64) (target - confirmed);
			if (confirmed >= target)
				break;
		}
		left = (long) ((deadline - GetCurrentTimestamp()) / 1000);
		if (left <= 0)
		{
			ZbStreamSnapshot snap;

			zb_stream_snapshot(MyDatabaseId, name, &snap);
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("stream \"%s\" did not deliver its changes within %s", name,
							DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(iv)))),
					 errdetail("Stream state: %s%s%s.", snap.state,
							   snap.last_error[0] ? "; last error: " : "", snap.last_error),
					 errhint("SELECT * FROM zb_metrics; shows the stream's progress.")));
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(left, 10), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return Max(initial, 0);
}

/* ======================================================================
 * zerobus.resync_stream(name)
 * ====================================================================== */

PG_FUNCTION_INFO_V1(zerobus_resync_stream);

/*
 * Start a change-capture stream over: a new slot (created by the worker at
 * its next start, with a new initial copy), _seq continuing above the old
 * slot's, the old slot dropped at commit (or by its holder when released).
 */
Datum
zerobus_resync_stream(PG_FUNCTION_ARGS)
{
	char	   *name;
	ZbStreamRow row;
	Oid			types[3] = {TEXTOID, INT8OID, TEXTOID};
	Datum		values[3];

	(void) zb_shmem();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	zb_stream_require(name, true, &row);
	if (!OidIsValid(row.source))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("stream \"%s\" consumes a queue: only a change-capture stream can be resynced", name)));
	values[0] = CStringGetTextDatum(zb_cdc_slot_name(MyDatabaseId, GetTopFullTransactionId()));
	values[1] = Int64GetDatum(zb_cdc_seq_base(row.slot_name));
	values[2] = CStringGetTextDatum(name);
	zb_catalog_write("UPDATE zerobus.stream_settings"
					 " SET slot_name = $1::pg_catalog.name, seq_base = $2, snapshot = true,"
					 " cdc_started_at = NULL"
					 " WHERE name OPERATOR(pg_catalog.=) $3",
					 3, types, values, NULL);
	zb_cdc_drop_at_commit(row.slot_name);
	PG_RETURN_VOID();
}
