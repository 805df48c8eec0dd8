/*-------------------------------------------------------------------------
 * batch.c
 *	  One batch of a stream worker: claim rows from the queue, encode them,
 *	  send them, await their durable acknowledgements (re-sending on a new
 *	  stream, bisecting refused requests), move what cannot be delivered to
 *	  zerobus.dead_letters, and commit.
 *
 * See docs/DESIGN.md for why rows are claimed by TID range, and how a
 * refused record is found.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/commit_ts.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "metrics.h"
#include "oauth.h"
#include "record.h"
#include "runas.h"
#include "shmem.h"
#include "stream.h"
#include "worker.h"
#include "zerobus.h"

#define CHUNK_BLOCKS 64			/* the unit of the queue split among workers */
#define MAX_SPAN_CHUNKS 64		/* one claim scans at most this many chunks */
#define RESCAN_MS 100			/* a full pass at least this often */
#define HOT_MS 1000				/* a chunk that held rows is visited this long */

/* the worker this process runs (set by the entry points) */
static ZbWorker *w;

/* ---------- filling a batch ---------- */

static bool
worker_stream_usable(void)
{
	return w->stream != NULL && !zb_stream_closing(w->stream, NULL);
}

static void
worker_send(WorkerRequest *r)
{
	void	   *recs = palloc(sizeof(ProtobufCBinaryData) * r->nrows);
	int			i;

	if (w->json)
	{
		char	  **j = recs;

		for (i = 0; i < r->nrows; i++)
			j[i] = (char *) w->recbuf.data + w->rows[r->first + i].off;
		r->offset = zb_stream_send_json_batch(w->stream, j, r->nrows);
	}
	else
	{
		ProtobufCBinaryData *b = recs;

		for (i = 0; i < r->nrows; i++)
		{
			b[i].data = w->recbuf.data + w->rows[r->first + i].off;
			b[i].len = w->rows[r->first + i].len;
		}
		r->offset = zb_stream_send_proto_batch(w->stream, b, r->nrows);
	}
	pfree(recs);
	r->sent_at = GetCurrentTimestamp();
	if (!zb_collect_metrics)
		return;
	SpinLockAcquire(&w->s->mutex);
	w->s->c.rows_sent += r->nrows;
	w->s->c.bytes_sent += r->bytes;
	w->s->c.requests_sent++;
	SpinLockRelease(&w->s->mutex);
}

/* Close the request being filled, and send it if the stream can take it. */
static void
worker_seal(void)
{
	WorkerRequest *r;

	if (w->open_req < 0)
		return;
	r = &w->reqs[w->open_req];
	w->open_req = -1;
	if (worker_stream_usable())
		worker_send(r);
}

static void
worker_add_dead(ItemPointer tid, const char *error)
{
	if (w->ndead == w->maxdead)
	{
		w->maxdead = Max(16, w->maxdead * 2);
		w->dead = w->dead ? repalloc(w->dead, sizeof(DeadRow) * w->maxdead)
			: MemoryContextAlloc(w->batch_cxt, sizeof(DeadRow) * w->maxdead);
	}
	w->dead[w->ndead].tid = *tid;
	w->dead[w->ndead].error = MemoryContextStrdup(w->batch_cxt, error);
	w->ndead++;
}

/*
 * The transaction id, with its epoch, that inserted a row version whose xmin
 * is xid: the latest full id below the next one to be assigned that ends in
 * xid's 32 bits.  Exact for a row version younger than 2^32 transactions (an
 * unfrozen one is younger than 2^31).  w->next_fxid is read at the start of
 * each batch and again whenever a row looks older than 2^31 transactions
 * (frozen rows may be) or newer than it (committed since it was read).
 */
static uint64
worker_full_xid(TransactionId xid)
{
	bool		fresh = false;

	if (!TransactionIdIsNormal(xid))
		return xid;
	for (;;)
	{
		uint64		next = U64FromFullTransactionId(w->next_fxid);
		uint32		epoch = EpochFromFullTransactionId(w->next_fxid);
		uint64		full;

		if (xid >= XidFromFullTransactionId(w->next_fxid) && epoch > 0)
			epoch--;
		full = ((uint64) epoch << 32) | xid;
		if (fresh || (full < next && next - full <= ((uint64) 1 << 31)))
			return full;
		w->next_fxid = ReadNextFullTransactionId();
		fresh = true;
	}
}

/* DestReceiver for DELETE … RETURNING: encode each row as it comes. */
static bool
worker_receive(TupleTableSlot *slot, DestReceiver *self)
{
	MemoryContext old = MemoryContextSwitchTo(w->batch_cxt);
	Datum	   *values;
	bool	   *isnull;
	ItemPointer tid;
	TransactionId xmin;
	size_t		start = w->recbuf.len;
	ssize_t		len;
	const char *error = NULL;
	char		keybuf[ZB_RECORD_KEY_LEN];
	const char *key = NULL;
	WorkerRow  *row;
	WorkerRequest *r;

	slot_getallattrs(slot);
	values = slot->tts_values;
	isnull = slot->tts_isnull;
	tid = (ItemPointer) DatumGetPointer(values[0]);
	xmin = DatumGetTransactionId(values[1]);
	if (!ItemPointerIsValid(&w->first_tid))
		w->first_tid = *tid;
	w->last_tid = *tid;

	if (w->schema->key_name)
	{
		/*
		 * The row version's identity (docs/DESIGN.md).  xmin is the inserting
		 * transaction's id even for a frozen row: freezing sets a flag and
		 * keeps it, and the system column shows it.
		 */
		zb_record_format_key(keybuf, w->key_relid, w->key_relfilenode, worker_full_xid(xmin),
							 ItemPointerGetBlockNumber(tid), ItemPointerGetOffsetNumber(tid));
		key = keybuf;
	}
	len = w->json
		? zb_record_encode_json(w->schema, values, isnull, key, w->keep_cxt, &w->recbuf, &error)
		: zb_record_encode_proto(w->schema, values, isnull, key, w->keep_cxt, &w->recbuf, &error);
	if (len >= 0 && (size_t) len > ZB_MAX_REQUEST_BYTES - 1024)
	{
		error = psprintf("the row's record is %zd bytes, above the %d-byte ZeroBus request limit",
						 len, ZB_MAX_REQUEST_BYTES);
		w->recbuf.len = start;
		len = -1;
	}
	if (len < 0)
	{
		worker_add_dead(tid, error);
		MemoryContextSwitchTo(old);
		return true;
	}

	if (w->nrows == w->maxrows)
	{
		w->maxrows = Max(1024, w->maxrows * 2);
		w->rows = w->rows ? repalloc_huge(w->rows, sizeof(WorkerRow) * w->maxrows)
			: MemoryContextAlloc(w->keep_cxt, sizeof(WorkerRow) * w->maxrows);
	}
	row = &w->rows[w->nrows];
	row->off = start;
	row->len = len;
	row->tid = *tid;
	row->committed_at = 0;
	if (zb_collect_metrics && track_commit_timestamp && TransactionIdIsNormal(xmin))
	{
		if (xmin != w->last_xmin)
		{
			RepOriginId origin;

			w->last_xmin = xmin;
			if (!TransactionIdGetCommitTsData(xmin, &w->last_commit_ts, &origin))
				w->last_commit_ts = 0;
		}
		row->committed_at = w->last_commit_ts;
	}

	/* into the open request, or a new one */
	if (w->open_req >= 0)
	{
		r = &w->reqs[w->open_req];
		if (r->nrows + 1 > w->row.batch_rows || r->bytes + len > (size_t) w->row.batch_bytes)
			worker_seal();
	}
	if (w->open_req < 0)
	{
		if (w->nreqs == w->maxreqs)
		{
			w->maxreqs = Max(16, w->maxreqs * 2);
			w->reqs = w->reqs ? repalloc(w->reqs, sizeof(WorkerRequest) * w->maxreqs)
				: MemoryContextAlloc(w->keep_cxt, sizeof(WorkerRequest) * w->maxreqs);
		}
		r = &w->reqs[w->nreqs];
		memset(r, 0, sizeof(*r));
		r->first = w->nrows;
		r->offset = -1;
		w->open_req = w->nreqs++;
	}
	r = &w->reqs[w->open_req];
	r->nrows++;
	r->bytes += len;
	w->nrows++;
	MemoryContextSwitchTo(old);
	return true;
}

static void
worker_rstartup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

static void
worker_rshutdown(DestReceiver *self)
{
}

static void
worker_rdestroy(DestReceiver *self)
{
}

static DestReceiver worker_dest = {
	.receiveSlot = worker_receive,
	.rStartup = worker_rstartup,
	.rShutdown = worker_rshutdown,
	.rDestroy = worker_rdestroy,
	.mydest = DestNone
};

/*
 * DELETE the rows with TIDs in [lo, hi) into the batch, at most 'limit' of
 * them: the executor stops after 'limit' RETURNING rows (SPI's tcount), so
 * the rows after them stay, untouched, whatever the density of the range.
 * w->last_tid is then the last row claimed.
 */
static uint64
worker_claim(ItemPointer lo, ItemPointer hi, uint64 limit)
{
	ParamListInfo params = makeParamList(2);
	SPIExecuteOptions opts;
	int			before = w->nrows + w->ndead;
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
	opts.dest = &worker_dest;
	rc = SPI_execute_plan_extended(w->plan, &opts);
	if (rc != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "queue DELETE failed: %s", SPI_result_code_string(rc));
	return w->nrows + w->ndead - before;
}

/* Did chunk c hold rows lately? */
static bool
worker_chunk_hot(BlockNumber c, TimestampTz now)
{
	return c < w->nhot && w->hot_until[c] > now;
}

static void
worker_mark_hot(BlockNumber first, BlockNumber last, TimestampTz now)
{
	BlockNumber c;

	if (last >= w->nhot)
	{
		BlockNumber n = Max(last + 1, w->nhot * 2);

		w->hot_until = w->hot_until
			? repalloc(w->hot_until, sizeof(TimestampTz) * n)
			: MemoryContextAlloc(w->keep_cxt, sizeof(TimestampTz) * n);
		memset(w->hot_until + w->nhot, 0, sizeof(TimestampTz) * (n - w->nhot));
		w->nhot = n;
	}
	for (c = first; c <= last; c++)
		w->hot_until[c] = TimestampTzPlusMilliseconds(now, HOT_MS);
}

/*
 * One pass of claims over this worker's chunks of the queue, from the
 * cursor, until max_inflight rows are claimed or the pass is over.  Sends
 * full requests as it goes, and drives the network between claims.
 *
 * Every claim is limited to the room left (max_inflight minus the rows
 * already claimed in this transaction), so a transaction never holds more
 * than max_inflight rows, whatever the density of the blocks it scans: right
 * after a restart, or across dead space VACUUM has not reclaimed yet.  A
 * claim that uses up the room stops at a row; the next batch resumes right
 * after it (w->resume), so the rows before it are not read again.
 *
 * A full pass visits every chunk of the worker's share; a single worker
 * claims up to MAX_SPAN_CHUNKS consecutive chunks in one statement.
 * Otherwise only the chunks that held rows lately ("hot") and those past the
 * end of the table at the last full pass are visited: appended rows land
 * there, and the empty space before them is not read again and again.  Rows
 * placed in reused space elsewhere are found by the next full pass
 * (worker_batch() runs one at least every RESCAN_MS, and at once when a
 * wake-up finds nothing).  Returns true when a full pass saw the whole share.
 */
static bool
worker_fill(Relation rel, bool full)
{
	BlockNumber nblocks = RelationGetNumberOfBlocks(rel);
	BlockNumber nchunks = (nblocks + CHUNK_BLOCKS - 1) / CHUNK_BLOCKS;
	int			nworkers = w->row.workers;
	BlockNumber mine;			/* chunks c with c % nworkers == widx */
	BlockNumber visited = 0;
	BlockNumber c;
	TimestampTz now = GetCurrentTimestamp();
	ItemPointerData resume = w->resume;

	ItemPointerSetInvalid(&w->resume);
	if (nchunks <= (BlockNumber) w->widx)
		return full;
	mine = (nchunks - w->widx + nworkers - 1) / nworkers;
	c = w->cursor;
	if (c >= nchunks || c % nworkers != (BlockNumber) w->widx)
	{
		c = w->widx;
		ItemPointerSetInvalid(&resume);
	}
	while (c < nchunks && visited < mine && w->nrows + w->ndead < w->row.max_inflight)
	{
		uint64		room = w->row.max_inflight - (w->nrows + w->ndead);
		BlockNumber span = 1;
		ItemPointerData lo;
		ItemPointerData hi;
		bool		partial = false;
		uint64		got;
		ZbError		err;
		int			wake;

		if (full || c >= w->known_chunks || worker_chunk_hot(c, now))
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
			ItemPointerSetInvalid(&w->first_tid);
			got = worker_claim(&lo, &hi, room);
			if (got > 0)
				worker_mark_hot(ItemPointerGetBlockNumber(&w->first_tid) / CHUNK_BLOCKS,
								ItemPointerGetBlockNumber(&w->last_tid) / CHUNK_BLOCKS, now);
			if (got == room)
			{
				/* out of room, possibly in the middle of the range: resume there */
				c = ItemPointerGetBlockNumber(&w->last_tid) / CHUNK_BLOCKS;
				ItemPointerSet(&w->resume, ItemPointerGetBlockNumber(&w->last_tid),
							   ItemPointerGetOffsetNumber(&w->last_tid) + 1);
				break;
			}

			/* let requests already sealed go out, and acks come in */
			if (w->stream && !zb_stream_poll(w->stream, 0, &wake, &err))
			{
				c += span * nworkers;
				break;			/* the ack phase deals with it */
			}
			if (w->stream && (wake & ZB_WAKE_LATCH))
				w->woken = true;
		}
		/* a chunk entered after its start is visited again from its start */
		visited += partial ? span - 1 : span;
		c += span * nworkers;
		if (c >= nchunks && visited < mine && w->nrows + w->ndead < w->row.max_inflight)
			c = w->widx;			/* wrap once to cover the chunks before the cursor */
	}
	w->cursor = c;
	if (w->open_req >= 0)
		worker_seal();
	if (full && visited >= mine)
	{
		w->known_chunks = nchunks;
		return true;
	}
	return false;
}

/* ---------- waiting for acks ---------- */

static void
worker_account_ack(WorkerRequest *r, TimestampTz now)
{
	int			i;

	r->acked = true;
	if (!zb_collect_metrics)
		return;
	SpinLockAcquire(&w->s->mutex);
	w->s->c.rows_acked += r->nrows;
	w->s->c.bytes_acked += r->bytes;
	w->s->c.requests_acked++;
	w->s->last_ack_at = now;
	zb_hist_add(&w->s->ack_latency, (uint64) Max(now - r->sent_at, 0));
	for (i = 0; i < r->nrows; i++)
	{
		TimestampTz c = w->rows[r->first + i].committed_at;

		if (c != 0)
			zb_hist_add(&w->s->e2e_latency, (uint64) Max(now - c, 0));
	}
	SpinLockRelease(&w->s->mutex);
}

static int64
worker_unacked_rows(void)
{
	int64		n = 0;
	int			i;

	for (i = 0; i < w->nreqs; i++)
		if (!w->reqs[i].acked && w->reqs[i].offset >= 0)
			n += w->reqs[i].nrows;
	return n;
}

/* Split request i (the one the server refused) in two, or dead-letter its
 * only row. */
static void
worker_bisect(int i, const char *error)
{
	Assert(i >= 0 && i < w->nreqs && !w->reqs[i].acked);
	if (w->reqs[i].nrows == 1)
	{
		worker_add_dead(&w->rows[w->reqs[i].first].tid, error);
		w->reqs[i].acked = true; /* settled: it leaves the queue as a dead letter */
		SpinLockAcquire(&w->s->mutex);
		w->s->c.rows_dead++;
		SpinLockRelease(&w->s->mutex);
	}
	else
	{
		WorkerRequest *r;
		int			half = w->reqs[i].nrows / 2;
		int			k;
		size_t		bytes = 0;

		if (w->nreqs == w->maxreqs)
		{
			w->maxreqs *= 2;
			w->reqs = repalloc(w->reqs, sizeof(WorkerRequest) * w->maxreqs);
		}
		memmove(&w->reqs[i + 2], &w->reqs[i + 1], sizeof(WorkerRequest) * (w->nreqs - i - 1));
		w->nreqs++;
		r = &w->reqs[i];
		for (k = 0; k < half; k++)
			bytes += w->rows[r->first + k].len;
		w->reqs[i + 1] = *r;
		w->reqs[i + 1].first = r->first + half;
		w->reqs[i + 1].nrows = r->nrows - half;
		w->reqs[i + 1].bytes = r->bytes - bytes;
		r->nrows = half;
		r->bytes = bytes;
	}
}

/*
 * Send, on a fresh stream, every request not yet acknowledged (probing: only
 * the first; worker_await_acks() sends the next once it is acknowledged).
 */
static bool
worker_resend(void)
{
	bool		sent = false;
	int			i;

	if (!zb_worker_reconnect())
		return false;
	for (i = 0; i < w->nreqs; i++)
	{
		w->reqs[i].offset = -1;
		if (!w->reqs[i].acked && !(w->probing && sent))
		{
			worker_send(&w->reqs[i]);
			sent = true;
		}
	}
	return true;
}

/* Account the requests the current stream has acknowledged; returns how many. */
static int
worker_take_acks(TimestampTz now)
{
	int64		acked;
	int			n = 0;
	int			i;

	if (w->stream == NULL)
		return 0;
	acked = zb_stream_acked(w->stream);
	for (i = 0; i < w->nreqs; i++)
	{
		WorkerRequest *r = &w->reqs[i];

		if (!r->acked && r->offset >= 0 && r->offset <= acked)
		{
			worker_account_ack(r, now);
			n++;
		}
	}
	return n;
}

/*
 * Wait until every request of the batch is durably acknowledged.  Handles
 * CloseStreamSignal (drain, then a new stream), refused batches (bisect),
 * and one retryable failure (a new stream).  False: give up on the batch.
 */
static bool
worker_await_acks(void)
{
	int			retries = 0;
	int			acked_requests = 0;
	int			acked_at_failure = 0;
	int			i;

	zb_worker_state(ZB_STATE_STREAMING);
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		TimestampTz oldest = 0;
		TimestampTz close_deadline = 0;
		bool		all_acked = true;
		bool		all_sent_acked = true;
		ZbError		err;
		int			wake = 0;
		long		wait_ms;
		bool		failed = false;

		acked_requests += worker_take_acks(now);
		for (i = 0; i < w->nreqs; i++)
		{
			WorkerRequest *r = &w->reqs[i];

			if (r->acked)
				continue;
			all_acked = false;
			if (r->offset >= 0)
			{
				all_sent_acked = false;
				if (oldest == 0 || r->sent_at < oldest)
					oldest = r->sent_at;
			}
		}
		zb_worker_publish_inflight(worker_unacked_rows());
		if (all_acked)
			return true;

		if (w->stream && zb_stream_closing(w->stream, &close_deadline))
		{
			/* the server asked us to move: drain what is in flight, then move */
			if (all_sent_acked || now >= close_deadline)
			{
				if (!all_sent_acked)
					zb_worker_error("CloseStreamSignal deadline passed with requests unacknowledged");
				if (!worker_resend())
					return false;
				continue;
			}
		}
		else if (w->stream)
		{
			/* requests held back while the stream was closing, or while probing */
			for (i = 0; i < w->nreqs; i++)
			{
				if (w->reqs[i].acked || w->reqs[i].offset >= 0)
					continue;
				if (w->probing && !all_sent_acked)
					break;
				worker_send(&w->reqs[i]);
				if (w->probing)
					break;
			}
		}
		else if (!worker_resend())
			return false;

		if (oldest != 0 && now - oldest > w->row.ack_timeout_ms * 1000)
		{
			zb_error_set(&err, ZB_ERR_TIMEOUT, true,
						 "no durable acknowledgement within %lld ms (acked up to offset " INT64_FORMAT
						 " of " INT64_FORMAT ", %zu bytes not yet sent)",
						 (long long) w->row.ack_timeout_ms, zb_stream_acked(w->stream),
						 zb_stream_last_sent(w->stream), zb_stream_send_pending(w->stream));
			failed = true;
		}
		else
		{
			wait_ms = 1000;
			if (oldest != 0)
				wait_ms = Min(wait_ms, (long) (w->row.ack_timeout_ms - (now - oldest) / 1000) + 1);
			if (close_deadline != 0)
				wait_ms = Min(wait_ms, Max(zb_ms_until(close_deadline), 1));
			if (!zb_stream_poll(w->stream, Max(wait_ms, 1), &wake, &err))
				failed = true;
			if (wake & ZB_WAKE_LATCH)
				w->woken = true;
		}
		if (!failed)
			continue;

		if (err.kind == ZB_ERR_GRPC && err.grpc_code == GRPC_INVALID_ARGUMENT)
		{
			/*
			 * A record was refused (the stream is over either way).
			 * Acknowledgements that arrived in the same poll as the refusal
			 * are taken first, or the accepted request would be blamed.
			 * Which request held the record is known only if it was the one
			 * in flight: the stream may have ended before acknowledging
			 * requests sent earlier.  So bisect only that one; with several
			 * in flight, probe: from now on send one request at a time, so
			 * that the next refusal names its request.
			 */
			int			culprit = -1;
			int			in_flight = 0;

			acked_requests += worker_take_acks(GetCurrentTimestamp());
			for (i = 0; i < w->nreqs; i++)
			{
				if (!w->reqs[i].acked && w->reqs[i].offset >= 0)
				{
					if (culprit < 0)
						culprit = i;
					in_flight++;
				}
			}
			if (in_flight == 0)
			{
				zb_worker_error(err.message);
				zb_worker_close_stream();
				zb_worker_backoff(false);
				return false;
			}
			if (in_flight == 1)
				worker_bisect(culprit, err.message);
			w->probing = true;
			if (!worker_resend())
				return false;
			continue;
		}
		if (err.kind == ZB_ERR_GRPC && err.grpc_code == GRPC_UNAUTHENTICATED)
			zb_oauth_invalidate(&w->cred, ZB_TOKEN_ZEROBUS, w->row.target);
		zb_worker_error(err.message);
		/* a stream that made progress before failing earns another try */
		if (acked_requests > acked_at_failure)
			retries = 0;
		acked_at_failure = acked_requests;
		if (err.retryable && retries++ < 1)
		{
			if (!worker_resend())
				return false;
			continue;
		}
		zb_worker_close_stream();
		zb_worker_backoff(err.retryable);
		return false;
	}
}

/*
 * Move dead rows to zerobus.dead_letters (before the batch commits).  Runs
 * inside the batch's section as the stream's owner: the row becomes jsonb
 * as that role (output functions, whatever the row holds), and only the
 * finished value is written to the catalog as the extension's owner.
 */
static void
worker_bury(Relation rel)
{
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	Oid			rowtype[1] = {rel->rd_rel->reltype};
	Oid			types[4] = {TEXTOID, OIDOID, TEXTOID, JSONBOID};
	Oid			catalog_owner = zb_catalog_owner();
	int			i;

	for (i = 0; i < w->ndead; i++)
	{
		Datum		row[1];
		Datum		values[4];
		bool		isnull;

		/* the row version our DELETE removed is still there for us */
		if (!table_tuple_fetch_row_version(rel, &w->dead[i].tid, SnapshotAny, slot))
			continue;
		row[0] = ExecFetchSlotHeapTupleDatum(slot);
		(void) zb_spi_as(w->owner, "SELECT pg_catalog.to_jsonb($1)", 1, rowtype, row, NULL, true, 1);
		if (SPI_processed != 1)
			elog(ERROR, "could not convert a dead row to jsonb");
		values[0] = CStringGetTextDatum(w->name);
		values[1] = ObjectIdGetDatum(w->owner);
		values[2] = CStringGetTextDatum(w->dead[i].error);
		values[3] = datumCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull),
							  false, -1);
		(void) zb_spi_as(catalog_owner,
						 "INSERT INTO zerobus.dead_letters (stream, owner, error, record)"
						 " VALUES ($1, $2::pg_catalog.regrole, $3, $4)",
						 4, types, values, NULL, false, 0);
	}
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * Start a new batch.  The record buffer and the row and request arrays are
 * kept (their pages stay mapped, nothing is copied to grow them again);
 * only a buffer that an unusually large batch blew up is given back.
 */
#define KEEP_MAX_BYTES (64 * 1024 * 1024)

void
zb_batch_reset(ZbWorker *worker)
{
	w = worker;
	MemoryContextReset(w->batch_cxt);
	if (w->recbuf.cap > KEEP_MAX_BYTES)
	{
		MemoryContextReset(w->keep_cxt);
		memset(&w->recbuf, 0, sizeof(w->recbuf));
		w->rows = NULL;
		w->maxrows = 0;
		w->reqs = NULL;
		w->maxreqs = 0;
		w->hot_until = NULL;
		w->nhot = 0;
	}
	w->recbuf.len = w->recbuf.off = 0;
	w->nrows = 0;
	w->nreqs = 0;
	w->open_req = -1;
	w->dead = NULL;
	w->ndead = w->maxdead = 0;
	w->probing = false;
	w->last_xmin = InvalidTransactionId;
}

/*
 * One batch: claim, send, await acks, commit.  Returns the rows that left
 * the queue (delivered or dead-lettered); 0 if the queue had nothing for us.
 */
int
zb_batch_run(ZbWorker *worker)
{
	Relation	rel;
	int			settled;
	int			local_dead;
	bool		full;
	bool		complete;
	Oid			owner;
	ZbRunAs		ra;
	BlockNumber start_cursor;
	ItemPointerData start_resume;

	zb_batch_reset(worker);
	StartTransactionCommand();
	w->s->workers[w->widx].in_batch = true;
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());

	/*
	 * Before every batch: the queue, its owner, the owner's privileges on it
	 * and its schema, USAGE on the server and a user mapping (syscache
	 * lookups).  A REVOKE stops delivery here; a changed owner reloads.
	 */
	if (zb_stream_problem(&w->row, ACL_SELECT | ACL_DELETE, true, &owner) != NULL ||
		owner != w->owner)
	{
		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
		w->loaded = false;		/* worker_load() reports the problem */
		return 1;
	}

	rel = table_open(w->row.queue, RowExclusiveLock);
	if (zb_record_fingerprint(RelationGetDescr(rel)) != w->schema->fingerprint)
	{
		/* the queue's columns changed: reload and open a stream with the new schema */
		table_close(rel, RowExclusiveLock);
		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
		ereport(LOG,
				(errmsg("zerobus_fdw stream \"%s\": the queue's columns changed; re-sending the schema",
						w->name)));
		w->loaded = false;
		return 1;
	}

	if (w->schema->key_name)
	{
		/* dedup keys name the queue's storage and need the current xid epoch */
		w->key_relid = RelationGetRelid(rel);
		w->key_relfilenode = zb_rel_filenumber(rel);
		w->next_fxid = ReadNextFullTransactionId();
	}

	/*
	 * Everything that touches the queue runs as its owner, restricted, with
	 * the search_path pinned: the DELETE fires the owner's triggers and
	 * policies, never with our rights.  The section ends before the
	 * transaction does, whichever way it ends.
	 */
	zb_runas_begin(&ra, w->owner);

	/* a full pass now and then, and when a wake-up's rows are not where we looked */
	start_cursor = w->cursor;
	start_resume = w->resume;
	full = GetCurrentTimestamp() - w->last_full_at >= RESCAN_MS * 1000L;
	complete = worker_fill(rel, full);
	if (!full && w->nrows == 0 && w->ndead == 0)
	{
		full = true;
		complete = worker_fill(rel, true);
	}
	if (complete)
		w->last_full_at = GetCurrentTimestamp();
	local_dead = w->ndead;

	/*
	 * Queue depth: a pass that covered this worker's whole share claimed every
	 * committed row in it, so nothing of its share waits; a pass cut short by
	 * max_inflight leaves a backlog, estimated from the statistics.
	 */
	if (complete)
		zb_worker_publish_depth(0);
	else if (GetCurrentTimestamp() - w->depth_at >= USECS_PER_SEC)
	{
		int64		live = DatumGetInt64(DirectFunctionCall1(pg_stat_get_live_tuples,
															 ObjectIdGetDatum(w->row.queue)));

		zb_worker_publish_depth(Max(live / w->row.workers - w->nrows - w->ndead, 1));
		w->depth_at = GetCurrentTimestamp();
	}
	if (w->nrows == 0 && w->ndead == 0)
	{
		zb_runas_end(&ra);
		table_close(rel, RowExclusiveLock);
		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
		return 0;
	}

	if (w->nrows > 0 && !worker_await_acks())
	{
		/* give the rows back: the transaction rolls back; the next one claims them first */
		w->cursor = start_cursor;
		w->resume = start_resume;
		SpinLockAcquire(&w->s->mutex);
		w->s->c.rows_failed += w->nrows;
		SpinLockRelease(&w->s->mutex);
		zb_worker_publish_inflight(0);
		zb_runas_end(&ra);
		table_close(rel, RowExclusiveLock);
		PopActiveSnapshot();
		SPI_finish();
		AbortCurrentTransaction();
		return 0;
	}
	if (w->ndead > 0)
	{
		worker_bury(rel);
		SpinLockAcquire(&w->s->mutex);
		w->s->c.rows_dead += local_dead;
		SpinLockRelease(&w->s->mutex);
	}
	zb_runas_end(&ra);
	table_close(rel, RowExclusiveLock);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

	settled = w->nrows + local_dead;
	SpinLockAcquire(&w->s->mutex);
	w->s->c.batches++;
	SpinLockRelease(&w->s->mutex);
	zb_worker_publish_inflight(0);
	return settled;
}
