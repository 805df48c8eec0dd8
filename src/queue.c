/*-------------------------------------------------------------------------
 * queue.c
 *	  The queue source of the batch engine: a stream worker claims its
 *	  share of a queue table's rows with DELETE … RETURNING by TID range,
 *	  in a transaction that commits (the rows leave the queue) only once
 *	  every row is durably acknowledged or dead-lettered, and rolls back
 *	  (the rows stay) when the batch fails.
 *
 * Everything that touches the queue runs as its owner (runas.c).  See
 * docs/DESIGN.md: "Claiming rows: physical block ranges", "Claims never
 * exceed max_inflight", "The dedup key", and "Ingestion: passes and
 * buffers".
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/commit_ts.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "compat.h"
#include "metrics.h"
#include "record.h"
#include "runas.h"
#include "stream.h"
#include "worker.h"

#define CHUNK_BLOCKS 64			/* the unit of the queue split among workers */
#define MAX_SPAN_CHUNKS 64		/* one claim scans at most this many chunks */
#define RESCAN_MS 100			/* a full pass at least this often */
#define HOT_MS 1000				/* a chunk that held rows is visited this long */

typedef struct QueueSource
{
	/* from queue_load() */
	SPIPlanPtr	plan;			/* the DELETE … RETURNING ctid, xmin, * */

	/* the batch in progress */
	ZbWorker   *w;
	ZbBatch    *batch;
	MemoryContext row_cxt;		/* what encoding a row leaves behind; reset per batch */
	Relation	rel;
	ZbRunAs		ra;
	BlockNumber start_cursor;	/* where the batch began, to go back on failure */
	ItemPointerData start_resume;
	TransactionId last_xmin;	/* the last commit timestamp looked up */
	TimestampTz last_commit_ts;
	ItemPointerData first_tid;	/* of the row the current claim returned first */
	ItemPointerData last_tid;	/* and last */
	Oid			key_relid;		/* the queue and its storage, for dedup keys */
	Oid			key_relfilenode;
	FullTransactionId next_fxid;	/* recent; the epoch of xmins in dedup keys */

	/* where the next pass over the queue starts */
	MemoryContext pos_cxt;
	BlockNumber cursor;
	ItemPointerData resume;		/* in chunk 'cursor': the first row not yet claimed
								 * when the last batch ran out of room, or invalid */
	TimestampTz last_full_at;	/* of the last pass over the whole share */
	BlockNumber known_chunks;	/* chunks of the table at that pass */
	TimestampTz *hot_until;		/* per chunk: it held rows lately */
	BlockNumber nhot;
	TimestampTz depth_at;		/* when the queue depth was last published */
} QueueSource;

static QueueSource Q;

/* ---------- loading ---------- */

/*
 * The queue's record schema and the prepared DELETE; or, when the queue
 * was altered into columns records cannot carry, why the stream is paused.
 */
static void
queue_load(ZbWorker *w)
{
	Relation	rel;
	char	   *problem;
	char	   *hint;
	int			sqlstate;
	char	   *qname = NULL;
	Oid			argtypes[2] = {TIDOID, TIDOID};

	/* the queue may be another table now: look at all of it first */
	Q.known_chunks = 0;
	Q.last_full_at = 0;
	Q.cursor = 0;
	ItemPointerSetInvalid(&Q.resume);
	if (Q.hot_until)
		memset(Q.hot_until, 0, sizeof(TimestampTz) * Q.nhot);

	rel = table_open(w->row.queue, AccessShareLock);
	problem = zb_record_columns_problem(RelationGetDescr(rel), RelationGetRelationName(rel),
										&hint, &sqlstate);
	if (problem == NULL && w->row.dedup_column)
		problem = zb_record_key_problem(RelationGetDescr(rel), RelationGetRelationName(rel),
										w->row.dedup_column, &hint, &sqlstate);
	w->paused = problem != NULL;
	if (w->paused)
	{
		/* the queue was altered into something records cannot carry */
		w->paused_reason = psprintf("paused: %s%s%s", problem, hint ? ". " : "", hint ? hint : "");
	}
	else
	{
		/* RETURNING ctid, xmin, *: the columns start at index 2 */
		w->schema = zb_record_schema(RelationGetDescr(rel), RelationGetRelationName(rel), 2,
									 w->row.dedup_column);
		qname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
										   RelationGetRelationName(rel));
	}
	table_close(rel, AccessShareLock);
	if (!w->paused)
	{
		ZbRunAs		ra;

		/* parsed as the owner, under the pinned search_path, like every execution */
		zb_runas_begin(&ra, w->owner);
		Q.plan = SPI_prepare(psprintf("DELETE FROM ONLY %s"
									  " WHERE ctid OPERATOR(pg_catalog.>=) $1"
									  " AND ctid OPERATOR(pg_catalog.<) $2"
									  " RETURNING ctid, xmin, *", qname),
							 2, argtypes);
		zb_runas_end(&ra);
		if (Q.plan == NULL)
			elog(ERROR, "could not prepare the queue DELETE: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(Q.plan);
	}
}

static void
queue_unload(ZbWorker *w)
{
	if (Q.plan)
	{
		SPI_freeplan(Q.plan);
		Q.plan = NULL;
	}
}

/* ---------- claiming ---------- */

/*
 * The transaction id, with its epoch, that inserted a row version whose xmin
 * is xid: the latest full id below the next one to be assigned that ends in
 * xid's 32 bits.  Exact for a row version younger than 2^32 transactions (an
 * unfrozen one is younger than 2^31).  Q.next_fxid is read at the start of
 * each batch and again whenever a row looks older than 2^31 transactions
 * (frozen rows may be) or newer than it (committed since it was read).
 */
static uint64
queue_full_xid(TransactionId xid)
{
	bool		fresh = false;

	if (!TransactionIdIsNormal(xid))
		return xid;
	for (;;)
	{
		uint64		next = U64FromFullTransactionId(Q.next_fxid);
		uint32		epoch = EpochFromFullTransactionId(Q.next_fxid);
		uint64		full;

		if (xid >= XidFromFullTransactionId(Q.next_fxid) && epoch > 0)
			epoch--;
		full = ((uint64) epoch << 32) | xid;
		if (fresh || (full < next && next - full <= ((uint64) 1 << 31)))
			return full;
		Q.next_fxid = ReadNextFullTransactionId();
		fresh = true;
	}
}

/* DestReceiver for DELETE … RETURNING: encode each row as it comes. */
static bool
queue_receive(TupleTableSlot *slot, DestReceiver *self)
{
	ZbWorker   *w = Q.w;
	MemoryContext old = MemoryContextSwitchTo(Q.row_cxt);
	MemoryContext bufcxt;
	ZbBuf	   *buf = zb_batch_buffer(Q.batch, &bufcxt);
	Datum	   *values;
	bool	   *isnull;
	ItemPointer tid;
	TransactionId xmin;
	size_t		start = buf->len;
	ssize_t		len;
	const char *error = NULL;
	char		keybuf[ZB_RECORD_KEY_LEN];
	const char *key = NULL;
	ZbRowRef	ref;
	TimestampTz committed_at = 0;

	slot_getallattrs(slot);
	values = slot->tts_values;
	isnull = slot->tts_isnull;
	tid = (ItemPointer) DatumGetPointer(values[0]);
	xmin = DatumGetTransactionId(values[1]);
	if (!ItemPointerIsValid(&Q.first_tid))
		Q.first_tid = *tid;
	Q.last_tid = *tid;
	memset(&ref, 0, sizeof(ref));
	ref.tid = *tid;

	if (w->schema->key_name)
	{
		/*
		 * The row version's identity (docs/DESIGN.md).  xmin is the inserting
		 * transaction's id even for a frozen row: freezing sets a flag and
		 * keeps it, and the system column shows it.
		 */
		zb_record_format_key(keybuf, Q.key_relid, Q.key_relfilenode, queue_full_xid(xmin),
							 ItemPointerGetBlockNumber(tid), ItemPointerGetOffsetNumber(tid));
		key = keybuf;
	}
	len = w->json
		? zb_record_encode_json(w->schema, values, isnull, key, bufcxt, buf, &error)
		: zb_record_encode_proto(w->schema, values, isnull, key, bufcxt, buf, &error);
	if (len < 0)
	{
		zb_batch_add_dead(Q.batch, ref, error);
		MemoryContextSwitchTo(old);
		return true;
	}

	if (zb_collect_metrics && track_commit_timestamp && TransactionIdIsNormal(xmin))
	{
		if (xmin != Q.last_xmin)
		{
			RepOriginId origin;

			Q.last_xmin = xmin;
			if (!TransactionIdGetCommitTsData(xmin, &Q.last_commit_ts, &origin))
				Q.last_commit_ts = 0;
		}
		committed_at = Q.last_commit_ts;
	}
	zb_batch_add_record(Q.batch, start, len, ref, committed_at);
	MemoryContextSwitchTo(old);
	return true;
}

static void
queue_rstartup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

static void
queue_rshutdown(DestReceiver *self)
{
}

static void
queue_rdestroy(DestReceiver *self)
{
}

static DestReceiver queue_dest = {
	.receiveSlot = queue_receive,
	.rStartup = queue_rstartup,
	.rShutdown = queue_rshutdown,
	.rDestroy = queue_rdestroy,
	.mydest = DestNone
};

/*
 * DELETE the rows with TIDs in [lo, hi) into the batch, at most 'limit' of
 * them: the executor stops after 'limit' RETURNING rows (SPI's tcount), so
 * the rows after them stay, untouched, whatever the density of the range.
 * Q.last_tid is then the last row claimed.
 */
static uint64
queue_claim_range(ItemPointer lo, ItemPointer hi, uint64 limit)
{
	ParamListInfo params = makeParamList(2);
	SPIExecuteOptions opts;
	uint64		before = zb_batch_room(Q.batch);
	int			rc;

	Assert(limit > 0);
	params->params[0].value = PointerGetDatum(lo);
	params->params[0].ptype = TIDOID;
	params->params[0].pflags = PARAM_FLAG_CONST;
	params->params[0].isnull = false;
	params->params[1].value = PointerGetDatum(hi);
	params->params[1].ptype = TIDOID;
	params->params[1].pflags = PARAM_FLAG_CONST;
	params->params[1].isnull = false;

	memset(&opts, 0, sizeof(opts));
	opts.params = params;
	opts.read_only = false;
	opts.tcount = limit;
	opts.dest = &queue_dest;
	rc = SPI_execute_plan_extended(Q.plan, &opts);
	if (rc != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "queue DELETE failed: %s", SPI_result_code_string(rc));
	return before - zb_batch_room(Q.batch);
}

/* Did chunk c hold rows lately? */
static bool
queue_chunk_hot(BlockNumber c, TimestampTz now)
{
	return c < Q.nhot && Q.hot_until[c] > now;
}

static void
queue_mark_hot(BlockNumber first, BlockNumber last, TimestampTz now)
{
	BlockNumber c;

	if (last >= Q.nhot)
	{
		BlockNumber n = Max(last + 1, Q.nhot * 2);

		Q.hot_until = Q.hot_until
			? repalloc(Q.hot_until, sizeof(TimestampTz) * n)
			: MemoryContextAlloc(Q.pos_cxt, sizeof(TimestampTz) * n);
		memset(Q.hot_until + Q.nhot, 0, sizeof(TimestampTz) * (n - Q.nhot));
		Q.nhot = n;
	}
	for (c = first; c <= last; c++)
		Q.hot_until[c] = TimestampTzPlusMilliseconds(now, HOT_MS);
}

/*
 * One pass of claims over this worker's chunks of the queue, from the
 * cursor, until max_inflight rows are claimed or the pass is over.  Full
 * requests go out as the batch fills, and the network is driven between
 * claims.
 *
 * Every claim is limited to the room left (max_inflight minus the rows
 * already claimed in this transaction), so a transaction never holds more
 * than max_inflight rows, whatever the density of the blocks it scans: right
 * after a restart, or across dead space VACUUM has not reclaimed yet.  A
 * claim that uses up the room stops at a row; the next batch resumes right
 * after it (Q.resume), so the rows before it are not read again.
 *
 * A full pass visits every chunk of the worker's share; a single worker
 * claims up to MAX_SPAN_CHUNKS consecutive chunks in one statement.
 * Otherwise only the chunks that held rows lately ("hot") and those past the
 * end of the table at the last full pass are visited: appended rows land
 * there, and the empty space before them is not read again and again.  Rows
 * placed in reused space elsewhere are found by the next full pass
 * (queue_claim() runs one at least every RESCAN_MS, and at once when a
 * wake-up finds nothing).  Returns true when a full pass saw the whole share.
 */
static bool
queue_fill(ZbWorker *w, bool full)
{
	BlockNumber nblocks = RelationGetNumberOfBlocks(Q.rel);
	BlockNumber nchunks = (nblocks + CHUNK_BLOCKS - 1) / CHUNK_BLOCKS;
	int			nworkers = w->row.workers;
	BlockNumber mine;			/* chunks c with c % nworkers == widx */
	BlockNumber visited = 0;
	BlockNumber c;
	TimestampTz now = GetCurrentTimestamp();
	ItemPointerData resume = Q.resume;

	ItemPointerSetInvalid(&Q.resume);
	if (nchunks <= (BlockNumber) w->widx)
		return full;
	mine = (nchunks - w->widx + nworkers - 1) / nworkers;
	c = Q.cursor;
	if (c >= nchunks || c % nworkers != (BlockNumber) w->widx)
	{
		c = w->widx;
		ItemPointerSetInvalid(&resume);
	}
	while (c < nchunks && visited < mine && zb_batch_room(Q.batch) > 0)
	{
		uint64		room = zb_batch_room(Q.batch);
		BlockNumber span = 1;
		ItemPointerData lo;
		ItemPointerData hi;
		bool		partial = false;
		uint64		got;

		if (full || c >= Q.known_chunks || queue_chunk_hot(c, now))
		{
			/* in a full pass a single worker claims consecutive chunks at once */
			if (full && nworkers == 1)
				span = Min(MAX_SPAN_CHUNKS, Min(nchunks - c, mine - visited));
			ItemPointerSet(&lo, c * CHUNK_BLOCKS, 0);
			if (ItemPointerIsValid(&resume) &&
				ItemPointerGetBlockNumber(&resume) / CHUNK_BLOCKS == c)
			{
				/* the rest of the chunk the last batch stopped in */
				lo = resume;
				partial = true;
			}
			ItemPointerSetInvalid(&resume);
			ItemPointerSet(&hi, Min((c + span) * CHUNK_BLOCKS, nblocks), 0);
			ItemPointerSetInvalid(&Q.first_tid);
			got = queue_claim_range(&lo, &hi, room);
			if (got > 0)
				queue_mark_hot(ItemPointerGetBlockNumber(&Q.first_tid) / CHUNK_BLOCKS,
							   ItemPointerGetBlockNumber(&Q.last_tid) / CHUNK_BLOCKS, now);
			if (got == room)
			{
				/* out of room, possibly in the middle of the range: resume there */
				c = ItemPointerGetBlockNumber(&Q.last_tid) / CHUNK_BLOCKS;
				ItemPointerSet(&Q.resume, ItemPointerGetBlockNumber(&Q.last_tid),
							   ItemPointerGetOffsetNumber(&Q.last_tid) + 1);
				break;
			}

			/* let requests already sealed go out, and acks come in */
			if (!zb_batch_poll(Q.batch))
			{
				c += span * nworkers;
				break;			/* the ack phase deals with it */
			}
		}
		/* a chunk entered after its start is visited again from its start */
		visited += partial ? span - 1 : span;
		c += span * nworkers;
		if (c >= nchunks && visited < mine && zb_batch_room(Q.batch) > 0)
			c = w->widx;		/* wrap once to cover the chunks before the cursor */
	}
	Q.cursor = c;
	if (full && visited >= mine)
	{
		Q.known_chunks = nchunks;
		return true;
	}
	return false;
}

/*
 * Start a batch: the transaction that claims rows and, at the end, commits
 * or rolls back.  Before every batch: the queue, its owner, the owner's
 * privileges on it and its schema, USAGE on the server and a user mapping
 * (syscache lookups); a REVOKE stops delivery here; a changed owner or
 * changed columns make the worker load again.
 */
static bool
queue_begin(ZbWorker *w)
{
	Oid			owner;

	Q.w = w;
	if (Q.row_cxt == NULL)
		Q.row_cxt = AllocSetContextCreate(TopMemoryContext, "zerobus queue rows",
										  ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(Q.row_cxt);
	Q.last_xmin = InvalidTransactionId;

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (zb_stream_problem(&w->row, zb_queue_source.privileges, true, &owner) != NULL ||
		owner != w->owner)
	{
		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
		return false;			/* worker_load() reports the problem */
	}

	Q.rel = table_open(w->row.queue, RowExclusiveLock);
	if (zb_record_fingerprint(RelationGetDescr(Q.rel)) != w->schema->fingerprint)
	{
		/* the queue's columns changed: reload and open a stream with the new schema */
		table_close(Q.rel, RowExclusiveLock);
		Q.rel = NULL;
		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
		ereport(LOG,
				(errmsg("zerobus_fdw stream \"%s\": the queue's columns changed; re-sending the schema",
						w->name)));
		return false;
	}

	if (w->schema->key_name)
	{
		/* dedup keys name the queue's storage and need the current xid epoch */
		Q.key_relid = RelationGetRelid(Q.rel);
		Q.key_relfilenode = zb_rel_filenumber(Q.rel);
		Q.next_fxid = ReadNextFullTransactionId();
	}

	/*
	 * Everything that touches the queue runs as its owner, restricted, with
	 * the search_path pinned: the DELETE fires the owner's triggers and
	 * policies, never with our rights.  The section ends before the
	 * transaction does, whichever way it ends.
	 */
	zb_runas_begin(&Q.ra, w->owner);
	Q.start_cursor = Q.cursor;
	Q.start_resume = Q.resume;
	return true;
}

static void
queue_claim(ZbWorker *w, ZbBatch *b)
{
	bool		full;
	bool		complete;

	Q.batch = b;
	if (Q.pos_cxt == NULL)
		Q.pos_cxt = AllocSetContextCreate(TopMemoryContext, "zerobus queue position",
										  ALLOCSET_SMALL_SIZES);

	/* a full pass now and then, and when a wake-up's rows are not where we looked */
	full = GetCurrentTimestamp() - Q.last_full_at >= RESCAN_MS * 1000L;
	complete = queue_fill(w, full);
	if (!full && zb_batch_room(b) == (uint64) w->row.max_inflight)
	{
		full = true;
		complete = queue_fill(w, true);
	}
	if (complete)
		Q.last_full_at = GetCurrentTimestamp();

	/*
	 * Queue depth: a pass that covered this worker's whole share claimed every
	 * committed row in it, so nothing of its share waits; a pass cut short by
	 * max_inflight leaves a backlog, estimated from the statistics.
	 */
	if (complete)
		zb_worker_publish_depth(0);
	else if (GetCurrentTimestamp() - Q.depth_at >= USECS_PER_SEC)
	{
		int64		live = DatumGetInt64(DirectFunctionCall1(pg_stat_get_live_tuples,
															 ObjectIdGetDatum(w->row.queue)));
		int64		claimed = w->row.max_inflight - zb_batch_room(b);

		zb_worker_publish_depth(Max(live / w->row.workers - claimed, 1));
		Q.depth_at = GetCurrentTimestamp();
	}
}

/* ---------- settling ---------- */

/*
 * Move dead rows to zerobus.dead_letters (before the batch commits).  Runs
 * inside the batch's section as the stream's owner: the row becomes jsonb
 * as that role (output functions, whatever the row holds), and only the
 * finished value is written to the catalog as the extension's owner.
 */
static void
queue_bury(ZbWorker *w, ZbBatch *b)
{
	TupleTableSlot *slot;
	Oid			rowtype[1] = {Q.rel->rd_rel->reltype};
	ZbDeadRow  *dead;
	int			ndead = zb_batch_dead(b, &dead);
	int			i;

	if (ndead == 0)
		return;
	slot = table_slot_create(Q.rel, NULL);
	for (i = 0; i < ndead; i++)
	{
		Datum		row[1];
		bool		isnull;

		/* the row version our DELETE removed is still there for us */
		if (!table_tuple_fetch_row_version(Q.rel, &dead[i].ref.tid, SnapshotAny, slot))
			continue;
		row[0] = ExecFetchSlotHeapTupleDatum(slot);
		(void) zb_spi_as(w->owner, "SELECT pg_catalog.to_jsonb($1)", 1, rowtype, row, NULL, true, 1);
		if (SPI_processed != 1)
			elog(ERROR, "could not convert a dead row to jsonb");
		zb_batch_write_dead_letter(w->name, w->owner, dead[i].error,
								   datumCopy(SPI_getbinval(SPI_tuptable->vals[0],
														   SPI_tuptable->tupdesc, 1, &isnull),
											 false, -1));
	}
	ExecDropSingleTupleTableSlot(slot);
}

/* Every row is acknowledged or dead: commit, and the rows leave the queue. */
static void
queue_settle(ZbWorker *w, ZbBatch *b)
{
	queue_bury(w, b);
	zb_runas_end(&Q.ra);
	table_close(Q.rel, RowExclusiveLock);
	Q.rel = NULL;
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

/* The batch failed: roll back (the rows stay), and claim them first next time. */
static void
queue_abandon(ZbWorker *w, ZbBatch *b)
{
	Q.cursor = Q.start_cursor;
	Q.resume = Q.start_resume;
	zb_runas_end(&Q.ra);
	table_close(Q.rel, RowExclusiveLock);
	Q.rel = NULL;
	PopActiveSnapshot();
	SPI_finish();
	AbortCurrentTransaction();
}

/* While backing off: the queue grows while the service is away. */
static void
queue_waiting(ZbWorker *w)
{
	if (SearchSysCacheExists1(RELOID, ObjectIdGetDatum(w->row.queue)))
		zb_worker_publish_depth(DatumGetInt64(DirectFunctionCall1(pg_stat_get_live_tuples,
																  ObjectIdGetDatum(w->row.queue))) /
								w->row.workers);
}

const ZbSource zb_queue_source = {
	.name = "queue",
	.privileges = ACL_SELECT | ACL_DELETE,
	.load = queue_load,
	.unload = queue_unload,
	.begin = queue_begin,
	.claim = queue_claim,
	.settle = queue_settle,
	.abandon = queue_abandon,
	.waiting = queue_waiting
};
