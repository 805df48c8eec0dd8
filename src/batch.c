/*-------------------------------------------------------------------------
 * batch.c
 *	  The batch engine of a stream worker: what happens to rows between the
 *	  source that claims them and the source settling them.  Requests of
 *	  batch_rows / batch_bytes are sent as they fill; the engine waits
 *	  until ZeroBus acknowledges every one as durable, re-sending what is
 *	  unacknowledged on a new stream after a failure, bisecting a refused
 *	  request until the refused record is alone (it becomes a dead letter),
 *	  and then lets the source settle the batch.
 *
 * Where rows come from is the source's business (batch.h: ZbSource; the
 * queue source is queue.c).  See docs/DESIGN.md, "The batch engine and its
 * sources", and "Refused records: which request?".
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "metrics.h"
#include "runas.h"
#include "shmem.h"
#include "worker.h"
#include "zerobus.h"

/*
 * The record buffer and the row and request arrays are kept across
 * batches (their pages stay mapped, nothing is copied to grow them again);
 * only a buffer that an unusually large batch blew up is given back.
 */
#define KEEP_MAX_BYTES (64 * 1024 * 1024)

typedef struct BatchRow
{
	uint32		off;			/* record bytes in recbuf */
	uint32		len;
	ZbRowRef	ref;			/* the source's, to dead-letter it */
	TimestampTz committed_at;	/* 0 if unknown */
} BatchRow;

typedef struct BatchRequest
{
	int			first;			/* rows[first .. first + nrows) */
	int			nrows;
	size_t		bytes;
	int64		offset;			/* offset on the current stream, -1 if not sent there */
	TimestampTz sent_at;
	bool		acked;
	bool		in_flight;		/* counted in the stream's in-flight rows */
} BatchRequest;

struct ZbBatch
{
	ZbWorker   *w;
	MemoryContext batch_cxt;	/* reset after every batch */
	MemoryContext keep_cxt;		/* the big arrays, kept across batches */
	ZbBuf		recbuf;
	BatchRow   *rows;
	int			nrows;
	int			maxrows;
	BatchRequest *reqs;
	int			nreqs;
	int			maxreqs;
	int			open_req;		/* being filled, or -1 */
	ZbDeadRow  *dead;
	int			ndead;
	int			maxdead;
	bool		probing;		/* a refusal came: send one request at a time */
	bool		failed;			/* a zb_batch_flush() failed: abandon */
	int			flushed;		/* rows settled by zb_batch_flush() in this run */
};

static ZbBatch B;

/*
 * The requests in flight on the current stream are no longer (the stream is
 * gone: they are re-sent on the next, or the batch failed).
 */
static void
batch_not_in_flight(void)
{
	uint64		rows = 0;
	uint64		bytes = 0;
	uint64		requests = 0;
	int			i;

	for (i = 0; i < B.nreqs; i++)
	{
		BatchRequest *r = &B.reqs[i];

		if (!r->in_flight)
			continue;
		rows += r->nrows;
		bytes += r->bytes;
		requests++;
		r->in_flight = false;
	}
	if (requests > 0)
		zb_metrics_unsent(B.w->s, rows, bytes, requests);
}

/* Start a new batch (see KEEP_MAX_BYTES). */
static void
batch_reset(ZbWorker *w)
{
	B.w = w;
	if (B.batch_cxt == NULL)
	{
		B.batch_cxt = AllocSetContextCreate(TopMemoryContext, "zerobus worker batch",
											ALLOCSET_DEFAULT_SIZES);
		B.keep_cxt = AllocSetContextCreate(TopMemoryContext, "zerobus worker buffers",
										   ALLOCSET_DEFAULT_SIZES);
	}
	MemoryContextReset(B.batch_cxt);
	if (B.recbuf.cap > KEEP_MAX_BYTES)
	{
		MemoryContextReset(B.keep_cxt);
		memset(&B.recbuf, 0, sizeof(B.recbuf));
		B.rows = NULL;
		B.maxrows = 0;
		B.reqs = NULL;
		B.maxreqs = 0;
	}
	B.recbuf.len = B.recbuf.off = 0;
	B.nrows = 0;
	B.nreqs = 0;
	B.open_req = -1;
	B.dead = NULL;
	B.ndead = B.maxdead = 0;
	B.probing = false;
	B.failed = false;
}

/* ---------- filling: what sources call ---------- */

/* How many more rows the batch may claim: max_inflight, dead rows included. */
uint64
zb_batch_room(ZbBatch *b)
{
	int64		used = b->nrows + b->ndead;

	return used < b->w->row.max_inflight ? (uint64) (b->w->row.max_inflight - used) : 0;
}

/*
 * The buffer the next record is encoded into (at its end), and the memory
 * context it grows in.
 */
ZbBuf *
zb_batch_buffer(ZbBatch *b, MemoryContext *cxt)
{
	*cxt = b->keep_cxt;
	return &b->recbuf;
}

static bool
batch_stream_usable(void)
{
	return B.w->stream != NULL && !zb_stream_closing(B.w->stream, NULL);
}

static void
batch_send(BatchRequest *r)
{
	ZbWorker   *w = B.w;
	void	   *recs = palloc(sizeof(ProtobufCBinaryData) * r->nrows);
	int			i;

	if (w->json)
	{
		char	  **j = recs;

		for (i = 0; i < r->nrows; i++)
			j[i] = (char *) B.recbuf.data + B.rows[r->first + i].off;
		r->offset = zb_stream_send_json_batch(w->stream, j, r->nrows);
	}
	else
	{
		ProtobufCBinaryData *bin = recs;

		for (i = 0; i < r->nrows; i++)
		{
			bin[i].data = B.recbuf.data + B.rows[r->first + i].off;
			bin[i].len = B.rows[r->first + i].len;
		}
		r->offset = zb_stream_send_proto_batch(w->stream, bin, r->nrows);
	}
	pfree(recs);
	r->sent_at = GetCurrentTimestamp();
	r->in_flight = true;
	zb_metrics_sent(w->s, r->nrows, r->bytes);
}

/* Close the request being filled, and send it if the stream can take it. */
static void
batch_seal(void)
{
	BatchRequest *r;

	if (B.open_req < 0)
		return;
	r = &B.reqs[B.open_req];
	B.open_req = -1;
	if (batch_stream_usable())
		batch_send(r);
}

void
zb_batch_add_dead(ZbBatch *b, ZbRowRef ref, const char *error)
{
	if (b->ndead == b->maxdead)
	{
		b->maxdead = Max(16, b->maxdead * 2);
		b->dead = b->dead ? repalloc(b->dead, sizeof(ZbDeadRow) * b->maxdead)
			: MemoryContextAlloc(b->batch_cxt, sizeof(ZbDeadRow) * b->maxdead);
	}
	b->dead[b->ndead].ref = ref;
	b->dead[b->ndead].error = MemoryContextStrdup(b->batch_cxt, error);
	b->ndead++;
}

/*
 * The record of one row, recbuf[start .. start + len), goes into the open
 * request, or a new one (a full request is sent first).  A record too big
 * for any request is taken out of the buffer and becomes a dead letter.
 */
void
zb_batch_add_record(ZbBatch *b, size_t start, size_t len, ZbRowRef ref,
					TimestampTz committed_at)
{
	BatchRow   *row;
	BatchRequest *r;

	if (len > ZB_MAX_REQUEST_BYTES - 1024)
	{
		char	   *error = psprintf("the row's record is %zu bytes, above the %d-byte ZeroBus request limit",
									 len, ZB_MAX_REQUEST_BYTES);

		b->recbuf.len = start;
		zb_batch_add_dead(b, ref, error);
		pfree(error);
		return;
	}

	if (b->nrows == b->maxrows)
	{
		b->maxrows = Max(1024, b->maxrows * 2);
		b->rows = b->rows ? repalloc_huge(b->rows, sizeof(BatchRow) * b->maxrows)
			: MemoryContextAlloc(b->keep_cxt, sizeof(BatchRow) * b->maxrows);
	}
	row = &b->rows[b->nrows];
	row->off = start;
	row->len = len;
	row->ref = ref;
	row->committed_at = committed_at;

	if (b->open_req >= 0)
	{
		r = &b->reqs[b->open_req];
		if (r->nrows + 1 > b->w->row.batch_rows || r->bytes + len > (size_t) b->w->row.batch_bytes)
			batch_seal();
	}
	if (b->open_req < 0)
	{
		if (b->nreqs == b->maxreqs)
		{
			b->maxreqs = Max(16, b->maxreqs * 2);
			b->reqs = b->reqs ? repalloc(b->reqs, sizeof(BatchRequest) * b->maxreqs)
				: MemoryContextAlloc(b->keep_cxt, sizeof(BatchRequest) * b->maxreqs);
		}
		r = &b->reqs[b->nreqs];
		memset(r, 0, sizeof(*r));
		r->first = b->nrows;
		r->offset = -1;
		b->open_req = b->nreqs++;
	}
	r = &b->reqs[b->open_req];
	r->nrows++;
	r->bytes += len;
	b->nrows++;
}

/*
 * Let requests already sealed go out, and acknowledgements come in,
 * without waiting.  false: the stream failed (the ack phase deals with it).
 */
bool
zb_batch_poll(ZbBatch *b)
{
	ZbError		err;
	int			wake;

	if (b->w->stream == NULL)
		return true;
	if (!zb_stream_poll(b->w->stream, 0, &wake, &err))
		return false;
	if (wake & ZB_WAKE_LATCH)
		b->w->woken = true;
	return true;
}

/* ---------- waiting for acks ---------- */

static void
batch_account_ack(BatchRequest *r, TimestampTz now)
{
	ZbHistogram e2e;
	int			i;

	r->acked = true;
	r->in_flight = false;
	/* each row's commit-to-ack, counted here and merged under the lock at once */
	memset(&e2e, 0, sizeof(e2e));
	for (i = 0; zb_collect_metrics && i < r->nrows; i++)
	{
		TimestampTz c = B.rows[r->first + i].committed_at;

		if (c != 0)
			zb_hist_add(&e2e, (uint64) Max(now - c, 0));
	}
	zb_metrics_acked(B.w->s, r->nrows, r->bytes, now, (uint64) Max(now - r->sent_at, 0), &e2e);
}

/* Split request i (the one the server refused) in two, or dead-letter its
 * only row. */
static void
batch_bisect(int i, const char *error)
{
	Assert(i >= 0 && i < B.nreqs && !B.reqs[i].acked);
	batch_not_in_flight();		/* the refusal ended the stream */
	if (B.reqs[i].nrows == 1)
	{
		zb_batch_add_dead(&B, B.rows[B.reqs[i].first].ref, error);
		B.reqs[i].acked = true; /* settled: it leaves the source as a dead letter */
		SpinLockAcquire(&B.w->s->mutex);
		B.w->s->c.rows_dead++;
		SpinLockRelease(&B.w->s->mutex);
	}
	else
	{
		BatchRequest *r;
		int			half = B.reqs[i].nrows / 2;
		int			k;
		size_t		bytes = 0;

		if (B.nreqs == B.maxreqs)
		{
			B.maxreqs *= 2;
			B.reqs = repalloc(B.reqs, sizeof(BatchRequest) * B.maxreqs);
		}
		memmove(&B.reqs[i + 2], &B.reqs[i + 1], sizeof(BatchRequest) * (B.nreqs - i - 1));
		B.nreqs++;
		r = &B.reqs[i];
		for (k = 0; k < half; k++)
			bytes += B.rows[r->first + k].len;
		B.reqs[i + 1] = *r;
		B.reqs[i + 1].first = r->first + half;
		B.reqs[i + 1].nrows = r->nrows - half;
		B.reqs[i + 1].bytes = r->bytes - bytes;
		r->nrows = half;
		r->bytes = bytes;
	}
}

/*
 * Send, on a fresh stream, every request not yet acknowledged (probing: only
 * the first; batch_await_acks() sends the next once it is acknowledged).
 */
static bool
batch_resend(void)
{
	bool		sent = false;
	int			i;

	batch_not_in_flight();
	if (!zb_worker_reconnect())
		return false;
	for (i = 0; i < B.nreqs; i++)
	{
		B.reqs[i].offset = -1;
		if (!B.reqs[i].acked && !(B.probing && sent))
		{
			batch_send(&B.reqs[i]);
			sent = true;
		}
	}
	return true;
}

/* Account the requests the current stream has acknowledged; returns how many. */
static int
batch_take_acks(TimestampTz now)
{
	int64		acked;
	int			n = 0;
	int			i;

	if (B.w->stream == NULL)
		return 0;
	acked = zb_stream_acked(B.w->stream);
	for (i = 0; i < B.nreqs; i++)
	{
		BatchRequest *r = &B.reqs[i];

		if (!r->acked && r->offset >= 0 && r->offset <= acked)
		{
			batch_account_ack(r, now);
			n++;
		}
	}
	return n;
}

/*
 * Wait until every request of the batch is durably acknowledged.  Handles
 * CloseStreamSignal (drain, then a new stream), refused batches (bisect),
 * and one retryable failure (a new stream).  False: give up on the batch
 * (the worker's backoff is set).
 */
static bool
batch_await_acks(void)
{
	ZbWorker   *w = B.w;
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

		acked_requests += batch_take_acks(now);
		for (i = 0; i < B.nreqs; i++)
		{
			BatchRequest *r = &B.reqs[i];

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
		if (all_acked)
			return true;

		if (w->stream && zb_stream_closing(w->stream, &close_deadline))
		{
			/* the server asked us to move: drain what is in flight, then move */
			if (all_sent_acked || now >= close_deadline)
			{
				if (!all_sent_acked)
					zb_worker_error("CloseStreamSignal deadline passed with requests unacknowledged");
				if (!batch_resend())
					return false;
				continue;
			}
		}
		else if (w->stream)
		{
			/* requests held back while the stream was closing, or while probing */
			for (i = 0; i < B.nreqs; i++)
			{
				if (B.reqs[i].acked || B.reqs[i].offset >= 0)
					continue;
				if (B.probing && !all_sent_acked)
					break;
				batch_send(&B.reqs[i]);
				if (B.probing)
					break;
			}
		}
		else if (!batch_resend())
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

			acked_requests += batch_take_acks(GetCurrentTimestamp());
			for (i = 0; i < B.nreqs; i++)
			{
				if (!B.reqs[i].acked && B.reqs[i].offset >= 0)
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
				batch_bisect(culprit, err.message);
			B.probing = true;
			if (!batch_resend())
				return false;
			continue;
		}
		if (err.kind == ZB_ERR_GRPC && err.grpc_code == GRPC_UNAUTHENTICATED)
			zb_worker_token_refused();
		zb_worker_error(err.message);
		/* a stream that made progress before failing earns another try */
		if (acked_requests > acked_at_failure)
			retries = 0;
		acked_at_failure = acked_requests;
		if (err.retryable && retries++ < 1)
		{
			if (!batch_resend())
				return false;
			continue;
		}
		zb_worker_close_stream();
		zb_worker_backoff(err.retryable);
		return false;
	}
}

/* ---------- settling: what sources call ---------- */

/* Rows of the batch with a record (delivered, unless they became dead). */
int
zb_batch_records(ZbBatch *b)
{
	return b->nrows;
}

/* The rows that will not be delivered, with the reason of each. */
int
zb_batch_dead(ZbBatch *b, ZbDeadRow **dead)
{
	*dead = b->dead;
	return b->ndead;
}

/*
 * Write one dead letter: the row (as jsonb, made by the source as the
 * stream's owner) and why it was not delivered.  Written as the extension's
 * owner (users cannot write the catalog), in the caller's transaction.
 */
void
zb_batch_write_dead_letter(const char *stream, Oid owner, const char *error, Datum record)
{
	Oid			types[4] = {TEXTOID, OIDOID, TEXTOID, JSONBOID};
	Datum		values[4];

	values[0] = CStringGetTextDatum(stream);
	values[1] = ObjectIdGetDatum(owner);
	values[2] = CStringGetTextDatum(error);
	values[3] = record;
	(void) zb_spi_as(zb_catalog_owner(),
					 "INSERT INTO zerobus.dead_letters (stream, owner, error, record)"
					 " VALUES ($1, $2::pg_catalog.regrole, $3, $4)",
					 4, types, values, NULL, false, 0);
}

/* ---------- one batch ---------- */

/* Count a settled batch (its rows' records, and those that became dead letters). */
static void
batch_count_settled(ZbWorker *w, int encoded_dead)
{
	SpinLockAcquire(&w->s->mutex);
	w->s->c.rows_dead += encoded_dead;
	w->s->c.batches++;
	SpinLockRelease(&w->s->mutex);
}

/*
 * For a source whose claim cannot stop where the batch is full (change
 * capture replays a decoded transaction whole, and copies a table in one
 * transaction): deliver what the batch holds now, as zb_batch_run() does
 * (send, await every acknowledgement, let the source settle it), and go on
 * with an empty batch.  false: the batch failed (the worker's backoff is
 * set); the source must claim nothing more, and the engine abandons what
 * the batch holds when claim() returns.
 */
bool
zb_batch_flush(ZbBatch *b)
{
	ZbWorker   *w = b->w;
	int			encoded_dead;
	int			flushed;

	Assert(b == &B);
	if (B.failed)
		return false;
	batch_seal();
	encoded_dead = B.ndead;
	if (B.nrows > 0 && !batch_await_acks())
	{
		B.failed = true;
		return false;
	}
	w->source->settle(w, &B);
	batch_count_settled(w, encoded_dead);
	flushed = B.flushed + B.nrows + encoded_dead;
	batch_reset(w);
	B.flushed = flushed;
	return true;
}

/*
 * One batch of the worker's source: claim, send, await acks, settle.
 * Returns the rows that left the source (delivered or dead-lettered), 0 if
 * it had nothing for us or the batch failed, and 1 when the worker must
 * load again before the next batch (w->loaded is then false).
 */
int
zb_batch_run(ZbWorker *w)
{
	const ZbSource *src = w->source;
	int			encoded_dead;
	int			settled;

	batch_reset(w);
	B.flushed = 0;
	if (!src->begin(w))
	{
		w->loaded = false;		/* worker_load() says why */
		return 1;
	}
	src->claim(w, &B);
	if (B.failed)
	{
		/* a zb_batch_flush() failed: what the batch holds goes back */
		batch_not_in_flight();
		SpinLockAcquire(&w->s->mutex);
		w->s->c.rows_failed += B.nrows;
		SpinLockRelease(&w->s->mutex);
		src->abandon(w, &B);
		return B.flushed;
	}
	batch_seal();
	encoded_dead = B.ndead;		/* bisection counts its own */
	if (B.nrows == 0 && B.ndead == 0)
	{
		src->settle(w, &B);
		return B.flushed;
	}

	if (B.nrows > 0 && !batch_await_acks())
	{
		/* give the rows back; the next batch claims them first */
		batch_not_in_flight();
		SpinLockAcquire(&w->s->mutex);
		w->s->c.rows_failed += B.nrows;
		SpinLockRelease(&w->s->mutex);
		src->abandon(w, &B);
		return B.flushed;
	}
	src->settle(w, &B);

	settled = B.flushed + B.nrows + encoded_dead;
	batch_count_settled(w, encoded_dead);
	return settled;
}

/*
 * After an ERROR unwound the batch (its transaction is already aborted):
 * its rows are back in the source; count them as failed and start afresh.
 */
void
zb_batch_forget(ZbWorker *w)
{
	B.w = w;
	batch_not_in_flight();
	if (B.nrows > 0)
	{
		SpinLockAcquire(&w->s->mutex);
		w->s->c.rows_failed += B.nrows;
		SpinLockRelease(&w->s->mutex);
	}
	batch_reset(w);
}

/* The worker leaves: what it had in flight is no longer. */
void
zb_batch_release(ZbWorker *w)
{
	B.w = w;
	batch_not_in_flight();
}
