/*-------------------------------------------------------------------------
 * metrics.c
 *	  Stream metrics: what workers publish in shared memory (states,
 *	  counters, errors, latency histograms), the one consistent way to read
 *	  a stream's metrics (zb_stream_report), the launcher's per-second
 *	  sampling into each stream's history, and the functions behind
 *	  zb_metrics, zb_metrics_history and reset_metrics.
 *
 * The lock of every field is named in shmem.h: counters and worker states
 * under the stream's spinlock, histograms and error texts under its
 * detail_lock, the history under history_lock.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/pg_bitutils.h"
#include "replication/slot.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "metrics.h"
#include "runas.h"
#include "shmem.h"

bool		zb_collect_metrics = true;

/*
 * A stream whose workers are between batches but that acknowledged rows
 * this recently is delivering: shown as streaming, not idle.  A worker
 * delivering a few hundred rows a second spends most of its time waiting
 * for the next commit; what a person watching zb_metrics wants to know is
 * whether rows flow.
 */
#define ZB_DELIVERING_MS 2000

/* ---------- what workers publish ---------- */

/* A worker's state, as it reports it. */
void
zb_metrics_worker_state(ZbStreamSlot *s, int widx, ZbState state)
{
	SpinLockAcquire(&s->mutex);
	s->workers[widx].state = state;
	SpinLockRelease(&s->mutex);
}

/* A worker's batch begins or ends (the launcher spares a worker in a batch). */
void
zb_metrics_worker_in_batch(ZbStreamSlot *s, int widx, bool in_batch)
{
	SpinLockAcquire(&s->mutex);
	s->workers[widx].in_batch = in_batch;
	SpinLockRelease(&s->mutex);
}

/* Rows waiting in a worker's share of the queue, as it last saw them. */
void
zb_metrics_worker_depth(ZbStreamSlot *s, int widx, int64 depth)
{
	SpinLockAcquire(&s->mutex);
	s->workers[widx].queue_depth = depth;
	SpinLockRelease(&s->mutex);
}

/* Change capture: the commit time of the oldest change not acknowledged (0: none). */
void
zb_metrics_worker_oldest(ZbStreamSlot *s, int widx, TimestampTz oldest)
{
	SpinLockAcquire(&s->mutex);
	s->workers[widx].oldest_unacked = oldest;
	SpinLockRelease(&s->mutex);
}

/* A worker leaves: its share is no longer watched, it is in no batch. */
void
zb_metrics_worker_gone(ZbStreamSlot *s, int widx)
{
	SpinLockAcquire(&s->mutex);
	s->workers[widx].queue_depth = 0;
	s->workers[widx].oldest_unacked = 0;
	s->workers[widx].in_batch = false;
	SpinLockRelease(&s->mutex);
}

/* Set last_error and count an error. */
void
zb_metrics_error(ZbStreamSlot *s, const char *message)
{
	(void) zb_metrics_error_once(s, message, false);
}

/*
 * Like zb_metrics_error, but with only_new, only when last_error says
 * something else (a problem that persists is reported once).  Returns
 * whether it was set.
 */
bool
zb_metrics_error_once(ZbStreamSlot *s, const char *message, bool only_new)
{
	TimestampTz now = GetCurrentTimestamp();

	LWLockAcquire(s->detail_lock, LW_EXCLUSIVE);
	if (only_new && strncmp(s->last_error, message, ZB_ERRLEN - 1) == 0)
	{
		LWLockRelease(s->detail_lock);
		return false;
	}
	strlcpy(s->last_error, message, sizeof(s->last_error));
	s->last_error_at = now;
	SpinLockAcquire(&s->mutex);
	s->c.errors++;
	SpinLockRelease(&s->mutex);
	LWLockRelease(s->detail_lock);
	return true;
}

/*
 * Why the generator makes no rows ("" when it does).  Returns whether the
 * message changed.
 */
bool
zb_metrics_generator_error(ZbStreamSlot *s, const char *message)
{
	bool		changed;

	LWLockAcquire(s->detail_lock, LW_EXCLUSIVE);
	changed = strncmp(s->gen_last_error, message, ZB_ERRLEN - 1) != 0;
	strlcpy(s->gen_last_error, message, sizeof(s->gen_last_error));
	LWLockRelease(s->detail_lock);
	return changed;
}

/*
 * A request went out on a stream: counted as sent, and in flight until it
 * is acknowledged (zb_metrics_acked) or its stream is gone
 * (zb_metrics_unsent), in the same critical section, so that a reader never
 * sees more rows acknowledged or in flight than sent.
 */
void
zb_metrics_sent(ZbStreamSlot *s, uint64 rows, uint64 bytes)
{
	SpinLockAcquire(&s->mutex);
	if (zb_collect_metrics)
	{
		s->c.rows_sent += rows;
		s->c.bytes_sent += bytes;
		s->c.requests_sent++;
	}
	s->c.inflight_rows += rows;
	s->c.inflight_bytes += bytes;
	s->c.inflight_requests++;
	SpinLockRelease(&s->mutex);
}

/* Requests in flight on a stream that is gone (they are re-sent, or fail). */
void
zb_metrics_unsent(ZbStreamSlot *s, uint64 rows, uint64 bytes, uint64 requests)
{
	SpinLockAcquire(&s->mutex);
	s->c.inflight_rows -= rows;
	s->c.inflight_bytes -= bytes;
	s->c.inflight_requests -= requests;
	SpinLockRelease(&s->mutex);
}

/*
 * A request was acknowledged: its counters, and its latencies (the
 * request's own, and each row's commit-to-ack in 'rows_e2e', collected by
 * the caller without a lock) into the stream's histograms.
 */
void
zb_metrics_acked(ZbStreamSlot *s, uint64 rows, uint64 bytes, TimestampTz now,
				 uint64 ack_us, const ZbHistogram *rows_e2e)
{
	SpinLockAcquire(&s->mutex);
	if (zb_collect_metrics)
	{
		s->c.rows_acked += rows;
		s->c.bytes_acked += bytes;
		s->c.requests_acked++;
	}
	s->last_ack_at = now;		/* what the stream does, even without metrics */
	s->c.inflight_rows -= rows;
	s->c.inflight_bytes -= bytes;
	s->c.inflight_requests--;
	SpinLockRelease(&s->mutex);

	if (!zb_collect_metrics)
		return;
	LWLockAcquire(s->detail_lock, LW_EXCLUSIVE);
	zb_hist_add(&s->ack_latency, ack_us);
	if (rows_e2e && rows_e2e->count > 0)
		zb_hist_merge(&s->e2e_latency, rows_e2e);
	LWLockRelease(s->detail_lock);
}

/*
 * Zero a stream's counters, histograms and history (its identity,
 * registration and worker states stay).  The caller holds no lock.
 */
void
zb_metrics_reset(ZbStreamSlot *s, ZbHistory *h)
{
	TimestampTz now = GetCurrentTimestamp();

	LWLockAcquire(s->detail_lock, LW_EXCLUSIVE);
	memset(&s->ack_latency, 0, sizeof(s->ack_latency));
	memset(&s->e2e_latency, 0, sizeof(s->e2e_latency));
	s->last_error_at = 0;
	s->last_error[0] = '\0';
	SpinLockAcquire(&s->mutex);
	memset(&s->c.rows_sent, 0, offsetof(ZbCounters, inflight_rows));
	s->c.rows_generated = 0;
	/* what is in flight was sent: its acks must not outnumber the sends */
	s->c.rows_sent = s->c.inflight_rows;
	s->c.bytes_sent = s->c.inflight_bytes;
	s->c.requests_sent = s->c.inflight_requests;
	s->rate_ema = s->gen_rate_ema = 0;
	s->started_at = now;
	s->last_ack_at = 0;
	SpinLockRelease(&s->mutex);
	LWLockRelease(s->detail_lock);

	LWLockAcquire(zb_shared->history_lock, LW_EXCLUSIVE);
	h->next = 0;
	h->count = 0;
	LWLockRelease(zb_shared->history_lock);
}

/*
 * A stream newly registered in slot s: everything its slot said about an
 * earlier stream goes.  The caller holds zb_shared->lock exclusively.
 */
void
zb_metrics_init(ZbStreamSlot *s)
{
	int			w;

	Assert(LWLockHeldByMeInMode(zb_shared->lock, LW_EXCLUSIVE));
	LWLockAcquire(s->detail_lock, LW_EXCLUSIVE);
	memset(&s->ack_latency, 0, sizeof(s->ack_latency));
	memset(&s->e2e_latency, 0, sizeof(s->e2e_latency));
	s->last_error_at = 0;
	s->last_error[0] = '\0';
	s->gen_last_error[0] = '\0';
	SpinLockAcquire(&s->mutex);
	memset(&s->c, 0, sizeof(s->c));
	s->rate_ema = 0;
	s->gen_rate_ema = 0;
	s->started_at = GetCurrentTimestamp();
	s->last_ack_at = 0;
	for (w = 0; w < ZB_MAX_STREAM_WORKERS; w++)
	{
		s->workers[w].state = ZB_STATE_STOPPED;
		s->workers[w].in_batch = false;
		s->workers[w].queue_depth = 0;
		s->workers[w].oldest_unacked = 0;
	}
	SpinLockRelease(&s->mutex);
	LWLockRelease(s->detail_lock);
}

const char *
zb_state_name(int state)
{
	switch (state)
	{
		case ZB_STATE_STOPPED:
			return "stopped";
		case ZB_STATE_STARTING:
			return "starting";
		case ZB_STATE_CONNECTING:
			return "connecting";
		case ZB_STATE_IDLE:
			return "idle";
		case ZB_STATE_STREAMING:
			return "streaming";
		case ZB_STATE_BACKOFF:
			return "backoff";
		case ZB_STATE_ERROR:
			return "error";
		case ZB_STATE_PAUSED:
			return "paused";
	}
	return "unknown";
}

/* ---------- reading a stream's metrics ---------- */

/*
 * Which worker's state is the stream's: the one a person most needs to
 * know about.  Trouble first (error, paused, backoff), then work
 * (streaming, connecting, starting), then rest.
 */
static int
state_rank(int state)
{
	switch (state)
	{
		case ZB_STATE_ERROR:
			return 7;
		case ZB_STATE_PAUSED:
			return 6;
		case ZB_STATE_BACKOFF:
			return 5;
		case ZB_STATE_STREAMING:
			return 4;
		case ZB_STATE_CONNECTING:
			return 3;
		case ZB_STATE_STARTING:
			return 2;
		case ZB_STATE_IDLE:
			return 1;
		default:
			return 0;
	}
}

/*
 * Everything zb_metrics shows of the stream in slot i, read consistently
 * under the locks of shmem.h: the registration and the running workers
 * under the slot table's lock (held throughout, so that the slot cannot
 * change hands meanwhile), the histograms and error texts under the
 * stream's detail_lock (skipped unless 'detail'), the counters and the
 * workers' reports under its spinlock.  Returns false if the slot holds no
 * stream.
 *
 * The stream's state is derived here, at the time of reading: 'stopped'
 * when disabled; without a running worker 'starting' (or 'error' if a
 * worker's last word was an error); else the highest-ranked state of its
 * running workers, where workers between batches (idle) of a stream that
 * acknowledged rows within ZB_DELIVERING_MS count as streaming.
 */
bool
zb_stream_report(int i, ZbStreamReport *r, bool detail)
{
	ZbShared   *sh = zb_shmem();
	ZbStreamSlot *s = &sh->streams[i];
	bool		running[ZB_MAX_STREAM_WORKERS];
	int			states[ZB_MAX_STREAM_WORKERS];
	TimestampTz now = GetCurrentTimestamp();
	int			w;
	int			best = -1;
	bool		last_word_error = false;

	memset(r, 0, sizeof(*r));
	LWLockAcquire(sh->lock, LW_SHARED);
	if (!s->in_use)
	{
		LWLockRelease(sh->lock);
		return false;
	}
	r->dboid = s->dboid;
	strlcpy(r->name, s->name, sizeof(r->name));
	r->queue_relid = s->queue_relid;
	strlcpy(r->slot_name, s->slot_name, sizeof(r->slot_name));
	r->enabled = s->enabled;
	r->nworkers = s->nworkers;
	r->max_inflight = s->max_inflight;
	for (w = 0; w < ZB_MAX_STREAM_WORKERS; w++)
	{
		running[w] = s->workers[w].pid != 0;
		if (running[w])
			r->running++;
	}

	if (detail)
	{
		LWLockAcquire(s->detail_lock, LW_SHARED);
		r->ack_latency = s->ack_latency;
		r->e2e_latency = s->e2e_latency;
		r->last_error_at = s->last_error_at;
		strlcpy(r->last_error, s->last_error, sizeof(r->last_error));
		strlcpy(r->gen_last_error, s->gen_last_error, sizeof(r->gen_last_error));
		LWLockRelease(s->detail_lock);
	}

	SpinLockAcquire(&s->mutex);
	r->c = s->c;
	r->rate_ema = s->rate_ema;
	r->gen_rate_ema = s->gen_rate_ema;
	r->started_at = s->started_at;
	r->last_ack_at = s->last_ack_at;
	for (w = 0; w < ZB_MAX_STREAM_WORKERS; w++)
	{
		states[w] = s->workers[w].state;
		r->queue_depth += s->workers[w].queue_depth;
		if (s->workers[w].oldest_unacked != 0 &&
			(r->oldest_unacked == 0 || s->workers[w].oldest_unacked < r->oldest_unacked))
			r->oldest_unacked = s->workers[w].oldest_unacked;
	}
	SpinLockRelease(&s->mutex);
	LWLockRelease(sh->lock);

	for (w = 0; w < ZB_MAX_STREAM_WORKERS; w++)
	{
		int			st = states[w];

		if (!running[w])
		{
			if (w < r->nworkers && st == ZB_STATE_ERROR)
				last_word_error = true;
			continue;
		}
		if (st == ZB_STATE_IDLE && r->last_ack_at != 0 &&
			now - r->last_ack_at < ZB_DELIVERING_MS * (int64) 1000)
			st = ZB_STATE_STREAMING;
		if (best < 0 || state_rank(st) > state_rank(best))
			best = st;
	}
	if (!r->enabled)
		r->state = ZB_STATE_STOPPED;
	else if (r->running == 0)
		r->state = last_word_error ? ZB_STATE_ERROR : ZB_STATE_STARTING;
	else
		r->state = best;
	return true;
}

/* ---------- log-scale histograms ---------- */

/*
 * Bucket b covers [ (4 + b%4) * 2^(b/4) / 4, (5 + b%4) * 2^(b/4) / 4 )
 * microseconds: four buckets per power of two (about 19% wide), from 1 µs
 * to beyond an hour.
 */
static int
hist_bucket(uint64 us)
{
	int			msb;
	int			sub;

	if (us == 0)
		return 0;
	msb = pg_leftmost_one_pos64(us);
	sub = msb >= 2 ? (int) ((us >> (msb - 2)) & 3) : (int) ((us << (2 - msb)) & 3);
	return Min(msb * 4 + sub, ZB_HIST_BUCKETS - 1);
}

static double
hist_lower(int b)
{
	return (4 + b % 4) * ldexp(1.0, b / 4) / 4.0;
}

/* Count one value (the caller holds the lock of the histogram, if shared). */
void
zb_hist_add(ZbHistogram *h, uint64 us)
{
	h->buckets[hist_bucket(us)]++;
	if (h->count == 0 || us < h->min_us)
		h->min_us = us;
	if (us > h->max_us)
		h->max_us = us;
	h->count++;
	h->sum_us += us;
}

/* Add histogram 'add' to 'h' (the caller holds the lock of h, if shared). */
void
zb_hist_merge(ZbHistogram *h, const ZbHistogram *add)
{
	int			b;

	if (add->count == 0)
		return;
	for (b = 0; b < ZB_HIST_BUCKETS; b++)
		h->buckets[b] += add->buckets[b];
	if (h->count == 0 || add->min_us < h->min_us)
		h->min_us = add->min_us;
	if (add->max_us > h->max_us)
		h->max_us = add->max_us;
	h->count += add->count;
	h->sum_us += add->sum_us;
}

/* What was added to a histogram since an earlier copy of it. */
void
zb_hist_delta(const ZbHistogram *cur, const ZbHistogram *prev, ZbHistogram *out)
{
	int			b;
	int			first = -1;
	int			last = -1;

	memset(out, 0, sizeof(ZbHistogram));
	for (b = 0; b < ZB_HIST_BUCKETS; b++)
	{
		out->buckets[b] = cur->buckets[b] - prev->buckets[b];
		if (out->buckets[b] > 0)
		{
			if (first < 0)
				first = b;
			last = b;
		}
	}
	out->count = cur->count - prev->count;
	out->sum_us = cur->sum_us - prev->sum_us;
	if (first >= 0)
	{
		out->min_us = (uint64) hist_lower(first);
		out->max_us = (uint64) hist_lower(last + 1);
	}
}

/* The p-th percentile (0..1) in microseconds, interpolated within its bucket. */
double
zb_hist_percentile(const ZbHistogram *h, double p)
{
	double		target;
	uint64		seen = 0;
	int			b;

	if (h->count == 0)
		return 0;
	target = p * h->count;
	for (b = 0; b < ZB_HIST_BUCKETS; b++)
	{
		if (h->buckets[b] == 0)
			continue;
		if (seen + h->buckets[b] >= target)
		{
			double		lo = hist_lower(b);
			double		hi = hist_lower(b + 1);
			double		frac = (target - seen) / h->buckets[b];
			double		v = lo + (hi - lo) * frac;

			return Max((double) h->min_us, Min(v, (double) h->max_us));
		}
		seen += h->buckets[b];
	}
	return h->max_us;
}

/* ---------- per-second sampling (the launcher) ---------- */

/* What the launcher saw of a stream at its previous sample. */
typedef struct SamplePrev
{
	bool		valid;
	Oid			dboid;
	char		name[ZB_NAMELEN];
	TimestampTz started_at;		/* changes when the metrics are reset */
	TimestampTz at;
	ZbCounters	c;
	ZbHistogram ack;
	ZbHistogram e2e;
} SamplePrev;

static SamplePrev *launcher_prev;	/* [max_streams], in the launcher */

/* A percentile of a second's acknowledgements; NaN (shown as NULL) if none. */
static float4
sample_ms(const ZbHistogram *h, double p)
{
	return h->count ? (float4) (zb_hist_percentile(h, p) / 1000.0) : get_float4_nan();
}

/*
 * About once a second: each stream's rates as moving averages, and a sample
 * of the last period (rates, latency percentiles of the acknowledgements in
 * it, queue depth, errors) into its history ring.
 */
void
zb_metrics_sample(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	if (launcher_prev == NULL)
		launcher_prev = MemoryContextAllocZero(TopMemoryContext,
											   sizeof(SamplePrev) * zb_shared->max_streams);
	for (i = 0; i < zb_shared->max_streams; i++)
	{
		ZbStreamSlot *s = &zb_shared->streams[i];
		SamplePrev *prev = &launcher_prev[i];
		SamplePrev	cur;
		ZbStreamReport r;

		if (!zb_stream_report(i, &r, true))
		{
			prev->valid = false;
			continue;
		}
		cur.dboid = r.dboid;
		strlcpy(cur.name, r.name, sizeof(cur.name));
		cur.c = r.c;
		cur.ack = r.ack_latency;
		cur.e2e = r.e2e_latency;
		cur.started_at = r.started_at;
		cur.at = now;
		cur.valid = true;

		if (prev->valid && prev->dboid == cur.dboid && strcmp(prev->name, cur.name) == 0 &&
			prev->started_at == cur.started_at && now > prev->at)
		{
			double		secs = (now - prev->at) / (double) USECS_PER_SEC;
			double		acked = (cur.c.rows_acked - prev->c.rows_acked) / secs;
			double		generated = (cur.c.rows_generated - prev->c.rows_generated) / secs;
			ZbHistory  *h = &zb_shared->history[i];
			ZbHistogram ack;
			ZbHistogram e2e;
			ZbSample	x;

			/* the launcher alone writes the averages; a reset zeroes them */
			SpinLockAcquire(&s->mutex);
			if (s->started_at == cur.started_at)
			{
				s->rate_ema = 0.3 * acked + 0.7 * s->rate_ema;
				s->gen_rate_ema = 0.3 * generated + 0.7 * s->gen_rate_ema;
			}
			SpinLockRelease(&s->mutex);

			zb_hist_delta(&cur.ack, &prev->ack, &ack);
			zb_hist_delta(&cur.e2e, &prev->e2e, &e2e);
			memset(&x, 0, sizeof(x));
			x.at = now;
			x.rows_per_sec = acked;
			x.generated_per_sec = generated;
			x.bytes_per_sec = (cur.c.bytes_acked - prev->c.bytes_acked) / secs;
			x.dead_per_sec = (cur.c.rows_dead - prev->c.rows_dead) / secs;
			x.ack_p50_ms = sample_ms(&ack, 0.50);
			x.ack_p95_ms = sample_ms(&ack, 0.95);
			x.ack_p99_ms = sample_ms(&ack, 0.99);
			x.e2e_p50_ms = sample_ms(&e2e, 0.50);
			x.e2e_p99_ms = sample_ms(&e2e, 0.99);
			x.queue_depth = r.queue_depth;
			x.in_flight = Max(cur.c.inflight_rows, 0);
			x.errors = cur.c.errors - prev->c.errors;
			x.reconnects = cur.c.reconnects - prev->c.reconnects;

			LWLockAcquire(zb_shared->history_lock, LW_EXCLUSIVE);
			h->samples[h->next] = x;
			h->next = (h->next + 1) % ZB_HISTORY_LEN;
			h->count = Min(h->count + 1, ZB_HISTORY_LEN);
			LWLockRelease(zb_shared->history_lock);
		}
		else if (!prev->valid || prev->dboid != cur.dboid || strcmp(prev->name, cur.name) != 0)
		{
			/* a new stream in this slot: its history starts now */
			LWLockAcquire(zb_shared->history_lock, LW_EXCLUSIVE);
			zb_shared->history[i].next = 0;
			zb_shared->history[i].count = 0;
			LWLockRelease(zb_shared->history_lock);
			if (now - cur.started_at < 2 * USECS_PER_SEC)
			{
				/*
				 * It began moments ago with zeroed counters: count its first
				 * moments from its start, so an early error is not lost in
				 * the baseline.
				 */
				memset(&cur.c, 0, sizeof(cur.c));
				memset(&cur.ack, 0, sizeof(cur.ack));
				memset(&cur.e2e, 0, sizeof(cur.e2e));
				cur.at = cur.started_at;
			}
		}
		*prev = cur;
	}
}

/* ---------- the views ---------- */

#define METRICS_NCOLS 37

static Datum
ms_datum(double us)
{
	return Float8GetDatum(us / 1000.0);
}

/*
 * Change capture: slot_lag_bytes (the WAL from the slot's confirmed
 * position to now: what the server keeps for the stream), slot_status, and
 * oldest_unacked_age_ms.  NULLs for a queue.
 */
static void
metrics_slot(const ZbStreamReport *r, Datum *values, bool *nulls)
{
	ReplicationSlot *slot;
	bool		found = false;
	bool		invalid = false;
	pid_t		active = 0;
	XLogRecPtr	confirmed = InvalidXLogRecPtr;
	const char *status;

	nulls[0] = nulls[1] = nulls[2] = true;
	if (r->slot_name[0] == '\0')
		return;
	if (max_replication_slots > 0)
	{
		LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
		slot = SearchNamedReplicationSlot(r->slot_name, false);
		if (slot)
		{
			found = true;
			SpinLockAcquire(&slot->mutex);
			confirmed = slot->data.confirmed_flush;
			active = slot->active_pid;
			invalid = zb_slot_invalidated(slot);
			SpinLockRelease(&slot->mutex);
		}
		LWLockRelease(ReplicationSlotControlLock);
	}
	if (!found)
		status = "none (created when the stream's worker starts, or lost: see state)";
	else if (invalid)
		status = "invalidated: the WAL it needed was removed";
	else if (!r->enabled)
		status = "kept while the stream is stopped: it keeps WAL";
	else if (active != 0)
		status = "in use";
	else
		status = "idle: it keeps WAL until the worker runs";
	if (found && !invalid && !XLogRecPtrIsInvalid(confirmed))
	{
		XLogRecPtr	now = GetXLogInsertRecPtr();

		values[0] = Int64GetDatum(now > confirmed ? (int64) (now - confirmed) : 0);
		nulls[0] = false;
	}
	values[1] = CStringGetTextDatum(status);
	nulls[1] = false;
	if (r->oldest_unacked != 0)
	{
		values[2] = ms_datum((double) Max(GetCurrentTimestamp() - r->oldest_unacked, 0));
		nulls[2] = false;
	}
}

PG_FUNCTION_INFO_V1(zerobus_metrics);

Datum
zerobus_metrics(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ZbShared   *sh = zb_shmem();
	ZbStreamReport *r = palloc(sizeof(ZbStreamReport));
	int			i;

	InitMaterializedSRF(fcinfo, 0);

	for (i = 0; i < sh->max_streams; i++)
	{
		Datum		values[METRICS_NCOLS];
		bool		nulls[METRICS_NCOLS];
		int			c = 0;
		int			k;
		char	   *dbname;
		uint64		settled;

		if (!zb_stream_report(i, r, true))
			continue;
		memset(nulls, false, sizeof(nulls));
		dbname = get_database_name(r->dboid);

		values[c++] = CStringGetTextDatum(r->name);
		values[c] = dbname ? DirectFunctionCall1(namein, CStringGetDatum(dbname)) : (Datum) 0;
		nulls[c++] = dbname == NULL;
		values[c++] = CStringGetTextDatum(zb_state_name(r->state));
		values[c++] = Int32GetDatum(r->running);
		values[c++] = Int32GetDatum(r->nworkers);
		values[c++] = Int64GetDatum(r->c.rows_sent);
		values[c++] = Int64GetDatum(r->c.rows_acked);
		values[c++] = Int64GetDatum(r->c.rows_failed);
		values[c++] = Int64GetDatum(r->c.rows_dead);
		values[c++] = Int64GetDatum(Max(r->c.inflight_rows, 0));
		values[c++] = Int64GetDatum((int64) r->max_inflight * r->nworkers);
		/* queue depth, as the workers last saw it (NULL while none runs) */
		values[c] = Int64GetDatum(r->queue_depth);
		nulls[c++] = r->running == 0;
		values[c++] = Int64GetDatum(r->c.bytes_sent);
		values[c++] = Int64GetDatum(r->c.bytes_acked);
		values[c++] = Int64GetDatum(r->c.requests_sent);
		values[c++] = Int64GetDatum(r->c.requests_acked);
		values[c++] = Int64GetDatum(r->c.batches);
		values[c++] = Int64GetDatum(r->c.streams_opened);
		values[c++] = Int64GetDatum(r->c.reconnects);
		values[c++] = Float8GetDatum(r->rate_ema);
		values[c++] = Int64GetDatum(r->c.rows_generated);
		values[c++] = Float8GetDatum(r->gen_rate_ema);
		if (r->ack_latency.count > 0)
		{
			values[c++] = ms_datum(r->ack_latency.min_us);
			values[c++] = ms_datum(zb_hist_percentile(&r->ack_latency, 0.50));
			values[c++] = ms_datum((double) r->ack_latency.sum_us / r->ack_latency.count);
			values[c++] = ms_datum(zb_hist_percentile(&r->ack_latency, 0.95));
			values[c++] = ms_datum(zb_hist_percentile(&r->ack_latency, 0.99));
			values[c++] = ms_datum(r->ack_latency.max_us);
		}
		else
		{
			for (k = 0; k < 6; k++)
				nulls[c++] = true;
		}
		if (r->e2e_latency.count > 0)
		{
			values[c++] = ms_datum(zb_hist_percentile(&r->e2e_latency, 0.50));
			values[c++] = ms_datum(zb_hist_percentile(&r->e2e_latency, 0.99));
		}
		else
		{
			nulls[c++] = true;
			nulls[c++] = true;
		}
		settled = r->c.rows_acked + r->c.rows_dead;
		if (settled + r->c.rows_failed > 0)
			values[c++] = Float8GetDatum(100.0 * r->c.rows_acked /
										 (settled + r->c.rows_failed));
		else
			nulls[c++] = true;
		values[c] = CStringGetTextDatum(r->last_error);
		nulls[c++] = r->last_error[0] == '\0';
		values[c] = TimestampTzGetDatum(r->last_error_at);
		nulls[c++] = r->last_error_at == 0;
		values[c] = TimestampTzGetDatum(r->started_at);
		nulls[c++] = r->started_at == 0;
		metrics_slot(r, values + c, nulls + c);
		c += 3;
		Assert(c == METRICS_NCOLS);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	pfree(r);
	return (Datum) 0;
}

#define HISTORY_NCOLS 16
#define HISTORY_LATENCY(v) \
	do { \
		nulls[c] = isnan(v); \
		values[c] = Float8GetDatum(nulls[c] ? 0 : (v)); \
		c++; \
	} while (0)

PG_FUNCTION_INFO_V1(zerobus_metrics_history);

/* Every stream's per-second samples, oldest first. */
Datum
zerobus_metrics_history(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ZbShared   *sh = zb_shmem();
	ZbSample   *samples = palloc(sizeof(ZbSample) * ZB_HISTORY_LEN);
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < sh->max_streams; i++)
	{
		ZbStreamSlot *s = &sh->streams[i];
		ZbHistory  *h = &sh->history[i];
		char		name[ZB_NAMELEN];
		Oid			dboid;
		char	   *dbname;
		int			n;
		int			first;
		int			k;

		LWLockAcquire(sh->lock, LW_SHARED);
		if (!s->in_use)
		{
			LWLockRelease(sh->lock);
			continue;
		}
		strlcpy(name, s->name, sizeof(name));
		dboid = s->dboid;
		LWLockRelease(sh->lock);

		LWLockAcquire(sh->history_lock, LW_SHARED);
		n = h->count;
		first = (h->next - n + ZB_HISTORY_LEN) % ZB_HISTORY_LEN;
		for (k = 0; k < n; k++)
			samples[k] = h->samples[(first + k) % ZB_HISTORY_LEN];
		LWLockRelease(sh->history_lock);

		dbname = get_database_name(dboid);
		for (k = 0; k < n; k++)
		{
			ZbSample   *x = &samples[k];
			Datum		values[HISTORY_NCOLS];
			bool		nulls[HISTORY_NCOLS] = {0};
			int			c = 0;

			values[c++] = TimestampTzGetDatum(x->at);
			values[c++] = CStringGetTextDatum(name);
			values[c] = dbname ? DirectFunctionCall1(namein, CStringGetDatum(dbname)) : (Datum) 0;
			nulls[c++] = dbname == NULL;
			values[c++] = Float8GetDatum(x->rows_per_sec);
			values[c++] = Float8GetDatum(x->generated_per_sec);
			values[c++] = Float8GetDatum(x->bytes_per_sec);
			values[c++] = Float8GetDatum(x->dead_per_sec);
			/* seconds without acknowledgements have no latency: NULL */
			HISTORY_LATENCY(x->ack_p50_ms);
			HISTORY_LATENCY(x->ack_p95_ms);
			HISTORY_LATENCY(x->ack_p99_ms);
			HISTORY_LATENCY(x->e2e_p50_ms);
			HISTORY_LATENCY(x->e2e_p99_ms);
			values[c++] = Int64GetDatum((int64) x->queue_depth);
			values[c++] = Int64GetDatum((int64) x->in_flight);
			values[c++] = Int32GetDatum((int32) x->errors);
			values[c++] = Int32GetDatum((int32) x->reconnects);
			Assert(c == HISTORY_NCOLS);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	pfree(samples);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(zerobus_reset_metrics);

/*
 * Zero the counters and history of one stream of this database, or of all
 * of them.  A stream's metrics are its owner's: a non-superuser resets only
 * streams whose owner (the queue table's owner) it has the privileges of;
 * without a name, only those are reset.
 */
Datum
zerobus_reset_metrics(PG_FUNCTION_ARGS)
{
	ZbShared   *sh = zb_shmem();
	char	   *only = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	int			reset = 0;
	int			i;

	for (i = 0; i < sh->max_streams; i++)
	{
		ZbStreamSlot *s = &sh->streams[i];
		bool		match;
		Oid			queue;
		Oid			owner;

		LWLockAcquire(sh->lock, LW_SHARED);
		match = s->in_use && s->dboid == MyDatabaseId && (only == NULL || strcmp(s->name, only) == 0);
		queue = s->queue_relid;
		LWLockRelease(sh->lock);
		if (!match)
			continue;
		owner = zb_queue_owner(queue);
		if (!superuser() && !(OidIsValid(owner) && has_privs_of_role(GetUserId(), owner)))
		{
			if (only == NULL)
				continue;		/* someone else's */
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("must be a member of the owner of stream \"%s\" to reset its metrics", only),
					 errdetail("A stream belongs to the owner of its queue table.")));
		}
		zb_metrics_reset(s, &sh->history[i]);
		reset++;
	}
	if (only && reset == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no running stream \"%s\" in this database", only)));
	PG_RETURN_INT32(reset);
}
