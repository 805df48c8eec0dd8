/*-------------------------------------------------------------------------
 * cdc.c
 *	  Change capture: the decoding driver.  It owns a stream's replication
 *	  slot while a process uses it: creating it with the initial snapshot
 *	  and copying the table under that snapshot, decoding in the process
 *	  (CreateDecodingContext, the local WAL page reader) up to the flush
 *	  pointer into a sink, and, after each acknowledgement, writing the
 *	  progress record and confirming the slot's position.
 *
 * docs/DESIGN.md ("Change capture") explains the design; the interface is
 * in cdc.h and "The driver's interface".  Elsewhere: the output plugin
 * (cdcdecode.c), slot names, drops and the progress record's file
 * (cdcslot.c), commit wake-ups (cdcwake.c), who may capture what
 * (cdccheck.c), the SQL functions that read a slot (cdcsql.c), the batch engine's source (cdcsource.c).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/attmap.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogutils.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "replication/decode.h"
#include "replication/logical.h"
#include "replication/slot.h"
#include "replication/snapbuild.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/spin.h"
#include "utils/catcache.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "cdc.h"

static ZbCdc *cdc_copying = NULL;	/* holds a registered snapshot and a scan */

static void cdc_forget_copy(ZbCdc *cdc);

/* A transaction whose records were emitted and are not all acknowledged. */
typedef struct CdcTxn
{
	XLogRecPtr	commit_lsn;
	XLogRecPtr	end_lsn;
	int64		first_seq;		/* of its first record not acknowledged */
	uint64		first_index;	/* that record's position in the transaction */
	int64		n;				/* records emitted and not acknowledged */
	bool		complete;		/* its last record was emitted */
} CdcTxn;

struct ZbCdc
{
	MemoryContext cxt;
	ZbCdcConfig cfg;
	char		slot_name[NAMEDATALEN];
	bool		ephemeral;
	bool		have_slot;		/* MyReplicationSlot is ours */
	LogicalDecodingContext *ctx;	/* for decoding; NULL until needed */

	/* the initial snapshot and the copy */
	Snapshot	snapshot;		/* registered, or NULL */
	XLogRecPtr	consistent_lsn;
	TimestampTz snapshot_time;
	List	   *copy_rels;		/* leaves, in OID order */
	ListCell   *copy_next;
	Relation	copy_rel;
	TableScanDesc copy_scan;
	TupleTableSlot *copy_slot;
	AttrMap    *copy_map;
	ZbRecordSchema *copy_schema;
	ZbCdcEncoder *copy_enc;
	Datum	   *copy_values;
	bool	   *copy_isnull;
	uint64		copy_rows;
	bool		copying;		/* between zb_cdc_create(snapshot) and zb_cdc_copy_done */

	/* acknowledgements */
	ZbCdcProgress progress;		/* acknowledged */
	int64		next_seq;		/* of the next record emitted */
	CdcTxn	   *txns;			/* oldest first */
	int			ntxns;
	int			maxtxns;
	XLogRecPtr	confirmed;
	bool		in_decode;

	/* the decoding stopped in the middle: close before decoding again */
	bool		broken;
	bool		stop;			/* the sink asked to stop (zb_cdc_stop) */
	ErrorData  *refusal;		/* the change no record can carry, or NULL */

	/* the sink of the current call, behind ours */
	ZbCdcSink	inner;
	ZbCdcSink  *outer;
	int64		call_records;
	int64		call_bytes;
};

/* Run as the capture role, under the rule of runas.c. */
typedef struct CdcAs
{
	Oid			save_userid;
	int			save_sec;
} CdcAs;

static void
cdc_as_begin(ZbCdc *cdc, CdcAs *as)
{
	GetUserIdAndSecContext(&as->save_userid, &as->save_sec);
	SetUserIdAndSecContext(OidIsValid(cdc->cfg.role) ? cdc->cfg.role : as->save_userid,
						   as->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

static void
cdc_as_end(CdcAs *as)
{
	SetUserIdAndSecContext(as->save_userid, as->save_sec);
}

ZbCdc *
zb_cdc_open(const ZbCdcConfig *cfg, MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "zerobus_fdw change capture",
											  ALLOCSET_DEFAULT_SIZES);
	ZbCdc	   *cdc = MemoryContextAllocZero(cxt, sizeof(ZbCdc));

	cdc->cxt = cxt;
	cdc->cfg = *cfg;
	strlcpy(cdc->slot_name, cfg->slot_name, NAMEDATALEN);
	cdc->cfg.slot_name = cdc->slot_name;
	cdc->progress.next_seq = cfg->seq_base;
	cdc->next_seq = cfg->seq_base;
	return cdc;
}

const ZbCdcProgress *
zb_cdc_progress(ZbCdc *cdc)
{
	return &cdc->progress;
}

XLogRecPtr
zb_cdc_confirmed(ZbCdc *cdc)
{
	return cdc->confirmed;
}

/*
 * Acquire the stream's slot.  An established stream (its initial copy
 * committed) must find its slot and progress record; a stream that is not
 * established yet starts over: a slot left by an interrupted copy is
 * dropped.  *detail says why for ZB_CDC_LOST, ZB_CDC_INVALID, ZB_CDC_BUSY.
 */
ZbCdcStart
zb_cdc_start(ZbCdc *cdc, bool established, char **detail)
{
	ReplicationSlot *s;
	pid_t		active = 0;
	bool		invalid = false;

	*detail = NULL;
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	s = SearchNamedReplicationSlot(cdc->slot_name, false);
	if (s)
	{
		SpinLockAcquire(&s->mutex);
		active = s->active_pid;
		invalid = zb_slot_invalidated(s);
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);

	if (s == NULL)
	{
		if (!established)
			return ZB_CDC_CREATE;
		*detail = psprintf("replication slot \"%s\" no longer exists (dropped by hand, or this server was restored or promoted); changes since the last acknowledgement may be missing",
						   cdc->slot_name);
		return ZB_CDC_LOST;
	}
	if (active != 0 && active != MyProcPid)
	{
		*detail = psprintf("replication slot \"%s\" is in use by process %d",
						   cdc->slot_name, (int) active);
		return ZB_CDC_BUSY;
	}
	if (invalid)
	{
		*detail = psprintf("replication slot \"%s\" was invalidated: the WAL it needed was removed (max_slot_wal_keep_size) or it was too old",
						   cdc->slot_name);
		return ZB_CDC_INVALID;
	}
	if (!established)
	{
		/* a copy that never finished: start over */
		zb_cdc_drop_slot(cdc->slot_name);
		return ZB_CDC_CREATE;
	}
	zb_slot_acquire(cdc->slot_name, true);
	cdc->have_slot = true;
	if (!zb_cdc_read_progress(cdc->slot_name, &cdc->progress))
	{
		ReplicationSlotRelease();
		cdc->have_slot = false;
		*detail = psprintf("the progress record of replication slot \"%s\" is missing or damaged, so the _seq of its next changes is unknown",
						   cdc->slot_name);
		return ZB_CDC_LOST;
	}
	cdc->next_seq = cdc->progress.next_seq;
	cdc->confirmed = MyReplicationSlot->data.confirmed_flush;
	return ZB_CDC_STREAM;
}

static void
cdc_noop_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid, bool last_write)
{
}

/*
 * Create the stream's slot (ephemeral: dropped when released, for
 * peek_changes) in this process.  With 'snapshot', this must be the first
 * thing of its transaction, which has taken no snapshot yet: the
 * transaction becomes REPEATABLE READ with the snapshot at the slot's
 * consistent point, which zb_cdc_copy() reads the table with (as
 * walsender's CREATE_REPLICATION_SLOT … (SNAPSHOT 'use') does).  In any
 * case the transaction must not have an xid.  The slot stays acquired.
 */
void
zb_cdc_create(ZbCdc *cdc, bool ephemeral, bool snapshot)
{
	LogicalDecodingContext *ctx;
	MemoryContext old;

	CheckLogicalDecodingRequirements();
	Assert(MyReplicationSlot == NULL);
	if (snapshot)
	{
		if (!IsTransactionState() || IsSubTransaction() || FirstSnapshotSet)
			elog(ERROR, "the initial snapshot of a change capture needs a transaction that has taken no snapshot");
		/* the way SnapBuildExportSnapshot() sets it: before the first snapshot */
		XactIsoLevel = XACT_REPEATABLE_READ;
	}
	cdc->ephemeral = ephemeral;
	/* ephemeral until persisted at the end: an error on the way drops it */
	zb_slot_create(cdc->slot_name, RS_EPHEMERAL);
	cdc->have_slot = true;
	old = MemoryContextSwitchTo(cdc->cxt);
	ctx = CreateInitDecodingContext(ZB_CDC_PLUGIN, NIL, snapshot, InvalidXLogRecPtr,
									XL_ROUTINE(.page_read = read_local_xlog_page,
											   .segment_open = wal_segment_open,
											   .segment_close = wal_segment_close),
									cdc_noop_write, cdc_noop_write, NULL);
	MemoryContextSwitchTo(old);
	DecodingContextFindStartpoint(ctx);
	cdc->consistent_lsn = MyReplicationSlot->data.confirmed_flush;
	cdc->confirmed = cdc->consistent_lsn;
	cdc->snapshot_time = GetCurrentTimestamp();
	if (snapshot)
	{
		Snapshot	snap;

		/* a catalog lookup's snapshot would have set our xmin: forget it */
		InvalidateCatalogSnapshot();
		snap = SnapBuildInitialSnapshot(ctx->snapshot_builder);
		RestoreTransactionSnapshot(snap, MyProc);
		cdc->snapshot = RegisterSnapshot(GetTransactionSnapshot());
		cdc->copying = true;
		cdc->copy_rels = NIL;
		cdc->copy_next = NULL;
		cdc->copy_rows = 0;
		cdc_copying = cdc;
	}
	FreeDecodingContext(ctx);
	if (!ephemeral)
		ReplicationSlotPersist();
	cdc->progress.next_seq = cdc->cfg.seq_base;
	cdc->progress.acked_end = InvalidXLogRecPtr;
	cdc->progress.acked_in_txn = 0;
	cdc->next_seq = cdc->cfg.seq_base;
}

/* The end of the transaction that held the copy's snapshot and scan. */
static void
cdc_forget_copy(ZbCdc *cdc)
{
	cdc->snapshot = NULL;
	cdc->copy_scan = NULL;
	cdc->copy_rel = NULL;
	cdc->copy_slot = NULL;
	if (cdc_copying == cdc)
		cdc_copying = NULL;
}

static void
cdc_copy_end_rel(ZbCdc *cdc)
{
	if (cdc->copy_scan)
		table_endscan(cdc->copy_scan);
	if (cdc->copy_slot)
		ExecDropSingleTupleTableSlot(cdc->copy_slot);
	if (cdc->copy_rel)
		table_close(cdc->copy_rel, AccessShareLock);
	if (cdc->copy_map)
		free_attrmap(cdc->copy_map);
	cdc->copy_scan = NULL;
	cdc->copy_slot = NULL;
	cdc->copy_rel = NULL;
	cdc->copy_map = NULL;
}

/*
 * Send up to max_records rows of the table, as it was at the slot's
 * consistent point, to the sink as 'insert' records; false once every row
 * was sent.  Must run in the transaction of zb_cdc_create(); the sink may
 * block and call zb_cdc_ack().
 */
bool
zb_cdc_copy(ZbCdc *cdc, ZbCdcSink *sink, int64 max_records)
{
	int64		n = 0;
	CdcAs		as;
	bool		more = true;

	if (!cdc->copying || cdc->snapshot == NULL)
		elog(ERROR, "the initial snapshot of the change capture is gone (its transaction ended)");
	cdc_as_begin(cdc, &as);
	if (cdc->copy_schema == NULL)
	{
		Relation	root = table_open(cdc->cfg.source, AccessShareLock);
		MemoryContext old = MemoryContextSwitchTo(cdc->cxt);
		char	   *hint;
		int			sqlstate;
		char	   *problem = zb_record_cdc_problem(RelationGetDescr(root),
													RelationGetRelationName(root), &hint,
													&sqlstate);

		if (problem)
			ereport(ERROR,
					(errcode(sqlstate), errmsg_internal("%s", problem),
					 hint ? errhint("%s", hint) : 0));
		cdc->copy_schema = zb_record_schema_cdc(RelationGetDescr(root), RelationGetRelationName(root));
		cdc->copy_values = palloc(sizeof(Datum) * cdc->copy_schema->nvalues);
		cdc->copy_isnull = palloc(sizeof(bool) * cdc->copy_schema->nvalues);
		cdc->copy_enc = zb_cdc_encoder_create(cdc->cfg.json, cdc->cxt);
		if (root->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
		{
			List	   *all = find_all_inheritors(cdc->cfg.source, AccessShareLock, NULL);
			ListCell   *lc;

			foreach(lc, all)
				if (get_rel_relkind(lfirst_oid(lc)) == RELKIND_RELATION)
					cdc->copy_rels = lappend_oid(cdc->copy_rels, lfirst_oid(lc));
			list_sort(cdc->copy_rels, list_oid_cmp);
		}
		else
			cdc->copy_rels = list_make1_oid(cdc->cfg.source);
		cdc->copy_next = list_head(cdc->copy_rels);
		MemoryContextSwitchTo(old);
		table_close(root, AccessShareLock);
		sink->schema(sink, cdc->copy_schema);

		/*
		 * A copy replaces whatever an earlier one sent (a copy interrupted
		 * by a crash, a resync): a mirror applies this truncate first, and
		 * rows deleted since then do not linger there.
		 */
		{
			ZbCdcRecord rec;

			memset(cdc->copy_isnull, true, sizeof(bool) * cdc->copy_schema->nvalues);
			memset(&rec, 0, sizeof(rec));
			rec.seq = cdc->next_seq++;
			rec.change = ZB_CDC_TRUNCATE;
			rec.commit_lsn = cdc->consistent_lsn;
			rec.end_lsn = cdc->consistent_lsn;
			rec.commit_time = cdc->snapshot_time;
			rec.txn_index = cdc->copy_rows++;
			zb_cdc_encoder_emit(cdc->copy_enc, cdc->copy_schema, cdc->copy_values,
								cdc->copy_isnull, &rec, sink);
			n++;
		}
	}

	while (n < max_records)
	{
		CHECK_FOR_INTERRUPTS();
		if (cdc->copy_scan == NULL)
		{
			Relation	root;
			MemoryContext old;

			if (cdc->copy_next == NULL)
			{
				more = false;
				break;
			}
			cdc->copy_rel = table_open(lfirst_oid(cdc->copy_next), AccessShareLock);
			cdc->copy_next = lnext(cdc->copy_rels, cdc->copy_next);
			root = table_open(cdc->cfg.source, AccessShareLock);
			old = MemoryContextSwitchTo(cdc->cxt);
			cdc->copy_map = RelationGetRelid(cdc->copy_rel) == cdc->cfg.source ? NULL
				: zb_attrmap_by_name_if_req(RelationGetDescr(cdc->copy_rel), RelationGetDescr(root));
			MemoryContextSwitchTo(old);
			table_close(root, AccessShareLock);
			cdc->copy_slot = table_slot_create(cdc->copy_rel, NULL);
			/* physical order from block 0: no synchronized scan */
			cdc->copy_scan = table_beginscan_strat(cdc->copy_rel, cdc->snapshot, 0, NULL,
												   true, false);
		}
		if (!table_scan_getnextslot(cdc->copy_scan, ForwardScanDirection, cdc->copy_slot))
		{
			cdc_copy_end_rel(cdc);
			continue;
		}
		slot_getallattrs(cdc->copy_slot);
		{
			int			natts = cdc->copy_schema->nvalues - ZB_CDC_NFIELDS;
			ZbCdcRecord rec;
			int			i;

			for (i = 0; i < natts; i++)
			{
				AttrNumber	a = cdc->copy_map == NULL ? i + 1
					: (i < cdc->copy_map->maplen ? cdc->copy_map->attnums[i] : 0);

				if (a > 0 && a <= cdc->copy_slot->tts_nvalid)
				{
					cdc->copy_values[i] = cdc->copy_slot->tts_values[a - 1];
					cdc->copy_isnull[i] = cdc->copy_slot->tts_isnull[a - 1];
				}
				else
				{
					cdc->copy_values[i] = (Datum) 0;
					cdc->copy_isnull[i] = true;
				}
			}
			memset(&rec, 0, sizeof(rec));
			rec.seq = cdc->next_seq++;
			rec.change = ZB_CDC_INSERT;
			rec.commit_lsn = cdc->consistent_lsn;
			rec.end_lsn = cdc->consistent_lsn;
			rec.commit_time = cdc->snapshot_time;
			rec.txn_index = cdc->copy_rows++;
			zb_cdc_encoder_emit(cdc->copy_enc, cdc->copy_schema, cdc->copy_values,
								cdc->copy_isnull, &rec, sink);
		}
		n++;
	}
	cdc_as_end(&as);
	return more;
}

/*
 * The copy is over and every record of it acknowledged: forget the
 * snapshot, write the first progress record, and release the slot's data
 * xmin (it would hold back every table's VACUUM) by releasing and
 * re-acquiring the slot.  The caller then marks the stream established
 * (cdc_started_at) and commits.  Also right after zb_cdc_create() without
 * a snapshot.
 */
void
zb_cdc_copy_done(ZbCdc *cdc)
{
	cdc_copy_end_rel(cdc);
	if (cdc->snapshot)
		UnregisterSnapshot(cdc->snapshot);
	cdc_forget_copy(cdc);
	cdc->copying = false;
	cdc->progress.next_seq = cdc->next_seq;
	cdc->progress.acked_end = InvalidXLogRecPtr;
	cdc->progress.acked_in_txn = 0;
	if (cdc->ephemeral)
		return;
	zb_cdc_write_progress(cdc->slot_name, &cdc->progress);
	ReplicationSlotRelease();
	cdc->have_slot = false;
	zb_slot_acquire(cdc->slot_name, true);
	cdc->have_slot = true;
}

/* ---------- decoding ---------- */

static void
cdc_inner_schema(ZbCdcSink *sink, const ZbRecordSchema *schema)
{
	ZbCdc	   *cdc = sink->arg;

	cdc->outer->schema(cdc->outer, schema);
}

static void
cdc_inner_record(ZbCdcSink *sink, const ZbCdcRecord *rec)
{
	ZbCdc	   *cdc = sink->arg;
	CdcTxn	   *t = cdc->ntxns > 0 ? &cdc->txns[cdc->ntxns - 1] : NULL;

	if (t == NULL || t->end_lsn != rec->end_lsn)
	{
		if (cdc->ntxns == cdc->maxtxns)
		{
			cdc->maxtxns = Max(64, cdc->maxtxns * 2);
			cdc->txns = cdc->txns
				? repalloc(cdc->txns, sizeof(CdcTxn) * cdc->maxtxns)
				: MemoryContextAlloc(cdc->cxt, sizeof(CdcTxn) * cdc->maxtxns);
		}
		t = &cdc->txns[cdc->ntxns++];
		t->commit_lsn = rec->commit_lsn;
		t->end_lsn = rec->end_lsn;
		t->first_seq = rec->seq;
		t->first_index = rec->txn_index;
		t->n = 0;
		t->complete = false;
	}
	t->n++;
	cdc->next_seq = rec->seq + 1;
	cdc->call_records++;
	cdc->call_bytes += rec->len;
	cdc->outer->record(cdc->outer, rec);
}

static void
cdc_inner_commit(ZbCdcSink *sink, XLogRecPtr commit_lsn, XLogRecPtr end_lsn, uint64 nrecords)
{
	ZbCdc	   *cdc = sink->arg;
	CdcTxn	   *t = cdc->ntxns > 0 ? &cdc->txns[cdc->ntxns - 1] : NULL;

	if (t && t->end_lsn == end_lsn)
	{
		t->complete = true;
		/* already acknowledged to its last record: the progress record covers it */
		if (t->n == 0)
			cdc->ntxns--;
	}
	if (cdc->outer->commit)
		cdc->outer->commit(cdc->outer, commit_lsn, end_lsn, nrecords);
}

static void
cdc_confirm(ZbCdc *cdc, XLogRecPtr lsn)
{
	if (cdc->ephemeral || cdc->cfg.no_confirm || !cdc->have_slot || lsn <= cdc->confirmed)
		return;
	LogicalConfirmReceivedLocation(lsn);
	cdc->confirmed = lsn;
}

static void
cdc_start_decoding(ZbCdc *cdc)
{
	ZbCdcPluginOptions opts;
	MemoryContext old;

	opts.source = cdc->cfg.source;
	opts.json = cdc->cfg.json;
	opts.preimage = cdc->cfg.preimage;
	old = MemoryContextSwitchTo(cdc->cxt);
	/* from the slot's confirmed position */
	cdc->ctx = CreateDecodingContext(InvalidXLogRecPtr, zb_cdc_plugin_options(&opts), false,
									 XL_ROUTINE(.page_read = read_local_xlog_page,
												.segment_open = wal_segment_open,
												.segment_close = wal_segment_close),
									 cdc_noop_write, cdc_noop_write, NULL);
	MemoryContextSwitchTo(old);
	if (XLogRecPtrIsInvalid(MyReplicationSlot->data.restart_lsn))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slot \"%s\" has no WAL reserved any more", cdc->slot_name),
				 errdetail("It was invalidated."),
				 errhint("SELECT zerobus.resync_stream('<stream>'); starts the stream over.")));
	cdc->inner.schema = cdc_inner_schema;
	cdc->inner.record = cdc_inner_record;
	cdc->inner.commit = cdc_inner_commit;
	cdc->inner.arg = cdc;
	zb_cdc_plugin_bind(cdc->ctx, &cdc->inner, &cdc->progress);
	/* the transactions it replays start at the restart position */
	XLogBeginRead(cdc->ctx->reader, MyReplicationSlot->data.restart_lsn);
	cdc->ntxns = 0;
	cdc->next_seq = cdc->progress.next_seq;
}

/*
 * Forget every catalog entry cached in this process: those read as of now
 * before decoding, those read in the historic view during it.  Without
 * calling the invalidation callbacks, unlike InvalidateSystemCaches(): the
 * catalog did not change, so what is built on those entries stays valid,
 * and a stream worker must not take this for a change of its server's
 * options (which would re-open its session and its ZeroBus stream).
 */
static void
cdc_forget_catalog_view(void)
{
	InvalidateCatalogSnapshot();
	ResetCatalogCaches();
	RelationCacheInvalidate(false);
}

/*
 * Decode into 'sink' from where the last call stopped (the first call: from
 * the slot's confirmed position, skipping what the progress record says is
 * acknowledged), until max_records records (or max_bytes bytes, 0: no
 * limit) were emitted, or everything flushed when the call began was read.
 * A transaction is replayed whole once its commit is read, so a call can
 * emit more than asked.
 */
ZbCdcDecoded
zb_cdc_decode(ZbCdc *cdc, ZbCdcSink *sink, int64 max_records, int64 max_bytes)
{
	XLogRecPtr	end_of_wal;
	ResourceOwner owner = CurrentResourceOwner;
	MemoryContext mcxt = CurrentMemoryContext;
	volatile bool bound = false;
	CdcAs		as;

	if (!cdc->have_slot)
		elog(ERROR, "change capture: replication slot \"%s\" is not acquired", cdc->slot_name);
	if (cdc->broken)
		elog(ERROR, "change capture: the decoding of replication slot \"%s\" stopped in the middle; close it first",
			 cdc->slot_name);
	cdc_as_begin(cdc, &as);
	/*
	 * No entries of the caller's catalog view into the decoding's historic
	 * one: the worker opened the table (as of now) just before, and the
	 * plugin would read its columns of now for an older change.
	 */
	cdc_forget_catalog_view();
	if (cdc->ctx == NULL)
		cdc_start_decoding(cdc);
	if (cdc->inner.want_json != sink->want_json)
		cdc->inner.want_json = sink->want_json;
	cdc->outer = sink;
	cdc->call_records = 0;
	cdc->call_bytes = 0;
	cdc->stop = false;
	end_of_wal = GetFlushRecPtr(NULL);

	cdc->in_decode = true;
	PG_TRY();
	{
		while (cdc->ctx->reader->EndRecPtr < end_of_wal)
		{
			XLogRecord *record;
			char	   *errm = NULL;

			record = XLogReadRecord(cdc->ctx->reader, &errm);
			if (errm)
				elog(ERROR, "could not read the WAL for change capture: %s", errm);
			if (record != NULL)
				LogicalDecodingProcessRecord(cdc->ctx, cdc->ctx->reader);
			if (cdc->stop)
				break;
			if (cdc->call_records >= max_records || (max_bytes > 0 && cdc->call_bytes >= max_bytes))
			{
				bound = true;
				break;
			}
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		/*
		 * The plugin refused a change no record can carry: the reorder
		 * buffer has cleaned up its transaction, the ERROR went no further
		 * than here, and nothing past the change was emitted.  Keep the
		 * reason; the caller closes the driver (nothing more can be decoded
		 * from this context) and decides what to do.  Anything else goes on
		 * up.
		 */
		if (cdc->ctx == NULL || !zb_cdc_plugin_refusing(cdc->ctx))
			PG_RE_THROW();
		CurrentResourceOwner = owner;
		MemoryContextSwitchTo(cdc->cxt);
		cdc->refusal = CopyErrorData();
		FlushErrorState();
		MemoryContextSwitchTo(mcxt);
		cdc->in_decode = false;
		cdc->broken = true;
		cdc_as_end(&as);
		cdc_forget_catalog_view();
		return ZB_CDC_REFUSED;
	}
	PG_END_TRY();
	cdc->in_decode = false;
	/* decoding can leave another resource owner current (as logicalfuncs.c notes) */
	CurrentResourceOwner = owner;
	/* and none of the historic view out of it (an older grant, older columns) */
	cdc_forget_catalog_view();
	cdc_as_end(&as);
	if (cdc->stop)
	{
		/* records the sink did not take were emitted: decode them again later */
		cdc->broken = true;
		return ZB_CDC_STOPPED;
	}

	/* nothing unacknowledged: the slot can move past what was read */
	if (cdc->ntxns == 0)
		cdc_confirm(cdc, cdc->ctx->reader->EndRecPtr);
	return bound ? ZB_CDC_BOUND : ZB_CDC_CAUGHT_UP;
}

/*
 * From a sink callback: the sink takes no more records in this call (it
 * could not deliver them).  The call returns ZB_CDC_STOPPED once the record
 * being decoded is done; what was emitted and not acknowledged is decoded
 * again after zb_cdc_close() and zb_cdc_start().
 */
void
zb_cdc_stop(ZbCdc *cdc)
{
	cdc->stop = true;
}

/* After ZB_CDC_REFUSED: the ERROR that says why (message, detail, hint). */
ErrorData *
zb_cdc_refusal(ZbCdc *cdc)
{
	return cdc->refusal;
}

/*
 * ZeroBus acknowledged every record up to 'seq' as durable: write the
 * progress record, then confirm the slot (docs/DESIGN.md, "Durability").
 * May be called from inside a sink callback.
 */
void
zb_cdc_ack(ZbCdc *cdc, int64 seq)
{
	XLogRecPtr	confirm = InvalidXLogRecPtr;
	int			done = 0;

	if (seq < cdc->progress.next_seq)
		return;
	if (seq >= cdc->next_seq)
		elog(ERROR, "change capture: acknowledgement of _seq " INT64_FORMAT " not sent yet (next " INT64_FORMAT ")",
			 seq, cdc->next_seq);
	if (cdc->copying)
	{
		/* snapshot rows: the progress record is written when the copy is done */
		cdc->progress.next_seq = seq + 1;
		return;
	}
	while (done < cdc->ntxns)
	{
		CdcTxn	   *t = &cdc->txns[done];
		int64		last = t->first_seq + t->n - 1;

		if (seq >= last && t->complete)
		{
			/* all of it */
			cdc->progress.acked_end = t->end_lsn;
			cdc->progress.acked_in_txn = ZB_CDC_ALL;
			confirm = t->end_lsn;
			done++;
			if (seq == last)
				break;
			continue;
		}
		/* part of it: acknowledged up to seq (possibly all emitted so far) */
		{
			int64		k = Min(seq, last) - t->first_seq + 1;

			t->first_index += k;
			t->first_seq += k;
			t->n -= k;
			cdc->progress.acked_end = t->end_lsn;
			cdc->progress.acked_in_txn = t->first_index;
			confirm = t->commit_lsn;
		}
		break;
	}
	if (done > 0)
	{
		memmove(cdc->txns, cdc->txns + done, sizeof(CdcTxn) * (cdc->ntxns - done));
		cdc->ntxns -= done;
	}
	cdc->progress.next_seq = seq + 1;
	if (!cdc->ephemeral && !cdc->cfg.no_confirm)
		zb_cdc_write_progress(cdc->slot_name, &cdc->progress);
	if (cdc->ntxns == 0 && !cdc->in_decode && cdc->ctx)
		confirm = Max(confirm, cdc->ctx->reader->EndRecPtr);
	if (!XLogRecPtrIsInvalid(confirm))
		cdc_confirm(cdc, confirm);
}

/*
 * Sleep until a transaction of this database commits, the latch is set,
 * or timeout_ms passes.
 */
void
zb_cdc_wait(ZbCdc *cdc, long timeout_ms)
{
	int			rc;

	if (!zb_cdc_join_waiters())
		timeout_ms = Min(timeout_ms, 100);
	rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, timeout_ms,
				   PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/*
 * Free the decoding context and release the slot (an ephemeral slot goes
 * with it).  Also after an ERROR, once the transaction is aborted.
 */
void
zb_cdc_close(ZbCdc *cdc)
{
	if (cdc->ctx)
	{
		if (MyReplicationSlot != NULL)
			FreeDecodingContext(cdc->ctx);
		cdc->ctx = NULL;
	}
	if (cdc->snapshot && IsTransactionState() && cdc_copying == cdc)
	{
		cdc_copy_end_rel(cdc);
		UnregisterSnapshot(cdc->snapshot);
	}
	cdc_forget_copy(cdc);
	cdc->copying = false;
	if (cdc->have_slot && MyReplicationSlot != NULL)
		ReplicationSlotRelease();
	cdc->have_slot = false;
	cdc->ntxns = 0;
	cdc->broken = false;
	cdc->stop = false;
	/* no entry of the historic view may outlive the decoding */
	cdc_forget_catalog_view();
}

/* The copy's snapshot and scan end with their transaction. */
static void
cdc_driver_xact_callback(XactEvent event, void *arg)
{
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PREPARE)
		return;
	/* the transaction's resource owner released the snapshot and the scan */
	if (cdc_copying)
		cdc_forget_copy(cdc_copying);
}

/* From _PG_init, in every backend. */
void
zb_cdc_init(void)
{
	zb_cdc_wake_init();
	zb_cdc_slot_init();
	RegisterXactCallback(cdc_driver_xact_callback, NULL);
}
