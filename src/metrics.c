/*-------------------------------------------------------------------------
 * metrics.c
 *	  Stream metrics: the counters, states and latency histograms workers
 *	  publish in shared memory, the launcher's per-second sampling of them
 *	  into each stream's history, and the set-returning functions behind
 *	  zb_metrics and zb_metrics_history, and reset_metrics.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/pg_bitutils.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "metrics.h"
#include "runas.h"
#include "shmem.h"

/* ---------- what workers publish ---------- */

void
zb_metrics_state(ZbStreamSlot *s, ZbState state)
{
	SpinLockAcquire(&s->mutex);
	s->state = state;
	SpinLockRelease(&s->mutex);
}

void
zb_metrics_error(ZbStreamSlot *s, const char *message)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&s->mutex);
	strlcpy(s->last_error, message, sizeof(s->last_error));
	s->last_error_at = now;
	s->c.errors++;
	SpinLockRelease(&s->mutex);
}

/*
 * Zero a stream's counters, histograms and history (its identity, state
 * and configuration stay).  The caller holds no lock.
 */
void
zb_metrics_reset(ZbStreamSlot *s, ZbHistory *h)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&s->mutex);
	memset(&s->c.rows_sent, 0, offsetof(ZbCounters, inflight_rows));
	s->c.rows_generated = 0;
	memset(&s->ack_latency, 0, sizeof(s->ack_latency));
	memset(&s->e2e_latency, 0, sizeof(s->e2e_latency));
	s->rate_ema = s->gen_rate_ema = 0;
	s->started_at = now;
	s->last_ack_at = 0;
	s->last_error_at = 0;
	s->last_error[0] = '\0';
	SpinLockRelease(&s->mutex);

	LWLockAcquire(zb_shared->history_lock, LW_EXCLUSIVE);
	h->next = 0;
	h->count = 0;
	LWLockRelease(zb_shared->history_lock);
}

/*
 * Rows waiting in a stream's queue, as its workers last saw them (the sum
 * of their shares).  Caller holds the slot's mutex.
 */
int64
zb_queue_depth(ZbStreamSlot *s)
{
	int64		depth = 0;
	int			w;

	for (w = 0; w < ZB_MAX_STREAM_WORKERS; w++)
		if (s->workers[w].pid != 0)
			depth += s->workers[w].queue_depth;
	return depth;
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

/* Caller holds the slot's mutex. */
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
		bool		in_use;
		int64		depth;

		LWLockAcquire(zb_shared->lock, LW_SHARED);
		in_use = s->in_use;
		cur.dboid = s->dboid;
		strlcpy(cur.name, s->name, sizeof(cur.name));
		LWLockRelease(zb_shared->lock);
		if (!in_use)
		{
			prev->valid = false;
			continue;
		}

		SpinLockAcquire(&s->mutex);
		cur.c = s->c;
		cur.ack = s->ack_latency;
		cur.e2e = s->e2e_latency;
		cur.started_at = s->started_at;
		depth = zb_queue_depth(s);
		if (prev->valid && prev->started_at == cur.started_at && now > prev->at)
		{
			double		secs = (now - prev->at) / (double) USECS_PER_SEC;

			s->rate_ema = 0.3 * ((cur.c.rows_acked - prev->c.rows_acked) / secs) + 0.7 * s->rate_ema;
			s->gen_rate_ema = 0.3 * ((cur.c.rows_generated - prev->c.rows_generated) / secs) +
				0.7 * s->gen_rate_ema;
		}
		SpinLockRelease(&s->mutex);
		cur.at = now;
		cur.valid = true;

		if (prev->valid && prev->dboid == cur.dboid && strcmp(prev->name, cur.name) == 0 &&
			prev->started_at == cur.started_at && now > prev->at)
		{
			double		secs = (now - prev->at) / (double) USECS_PER_SEC;
			ZbHistory  *h = &zb_shared->history[i];
			ZbHistogram ack;
			ZbHistogram e2e;
			ZbSample	x;

			zb_hist_delta(&cur.ack, &prev->ack, &ack);
			zb_hist_delta(&cur.e2e, &prev->e2e, &e2e);
			memset(&x, 0, sizeof(x));
			x.at = now;
			x.rows_per_sec = (cur.c.rows_acked - prev->c.rows_acked) / secs;
			x.generated_per_sec = (cur.c.rows_generated - prev->c.rows_generated) / secs;
			x.bytes_per_sec = (cur.c.bytes_acked - prev->c.bytes_acked) / secs;
			x.dead_per_sec = (cur.c.rows_dead - prev->c.rows_dead) / secs;
			x.ack_p50_ms = sample_ms(&ack, 0.50);
			x.ack_p95_ms = sample_ms(&ack, 0.95);
			x.ack_p99_ms = sample_ms(&ack, 0.99);
			x.e2e_p50_ms = sample_ms(&e2e, 0.50);
			x.e2e_p99_ms = sample_ms(&e2e, 0.99);
			x.queue_depth = depth;
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

#define METRICS_NCOLS 34

static Datum
ms_datum(double us)
{
	return Float8GetDatum(us / 1000.0);
}

PG_FUNCTION_INFO_V1(zerobus_metrics);

Datum
zerobus_metrics(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ZbShared   *sh = zb_shmem();
	int			i;

	InitMaterializedSRF(fcinfo, 0);

	for (i = 0; i < sh->max_streams; i++)
	{
		ZbStreamSlot *s = &sh->streams[i];
		ZbStreamSlot copy;
		Datum		values[METRICS_NCOLS];
		bool		nulls[METRICS_NCOLS];
		int			running = 0;
		int			w;
		int			c = 0;
		char	   *dbname;
		uint64		settled;

		LWLockAcquire(sh->lock, LW_SHARED);
		if (!s->in_use)
		{
			LWLockRelease(sh->lock);
			continue;
		}
		SpinLockAcquire(&s->mutex);
		memcpy(&copy, s, sizeof(ZbStreamSlot));
		SpinLockRelease(&s->mutex);
		LWLockRelease(sh->lock);

		for (w = 0; w < ZB_MAX_STREAM_WORKERS; w++)
			if (copy.workers[w].pid != 0)
				running++;
		memset(nulls, false, sizeof(nulls));
		dbname = get_database_name(copy.dboid);

		values[c++] = CStringGetTextDatum(copy.name);
		values[c] = dbname ? DirectFunctionCall1(namein, CStringGetDatum(dbname)) : (Datum) 0;
		nulls[c++] = dbname == NULL;
		values[c++] = CStringGetTextDatum(!copy.enabled ? "stopped"
										  : running == 0 && copy.state != ZB_STATE_ERROR ? "starting"
										  : zb_state_name(copy.state));
		values[c++] = Int32GetDatum(running);
		values[c++] = Int32GetDatum(copy.nworkers);
		values[c++] = Int64GetDatum(copy.c.rows_sent);
		values[c++] = Int64GetDatum(copy.c.rows_acked);
		values[c++] = Int64GetDatum(copy.c.rows_failed);
		values[c++] = Int64GetDatum(copy.c.rows_dead);
		values[c++] = Int64GetDatum(Max(copy.c.inflight_rows, 0));
		values[c++] = Int64GetDatum((int64) copy.max_inflight * copy.nworkers);
		/* queue depth, as the workers last saw it (NULL while none runs) */
		values[c] = Int64GetDatum(zb_queue_depth(&copy));
		nulls[c++] = running == 0;
		values[c++] = Int64GetDatum(copy.c.bytes_sent);
		values[c++] = Int64GetDatum(copy.c.bytes_acked);
		values[c++] = Int64GetDatum(copy.c.requests_sent);
		values[c++] = Int64GetDatum(copy.c.requests_acked);
		values[c++] = Int64GetDatum(copy.c.batches);
		values[c++] = Int64GetDatum(copy.c.streams_opened);
		values[c++] = Int64GetDatum(copy.c.reconnects);
		values[c++] = Float8GetDatum(copy.rate_ema);
		values[c++] = Int64GetDatum(copy.c.rows_generated);
		values[c++] = Float8GetDatum(copy.gen_rate_ema);
		if (copy.ack_latency.count > 0)
		{
			values[c++] = ms_datum(copy.ack_latency.min_us);
			values[c++] = ms_datum(zb_hist_percentile(&copy.ack_latency, 0.50));
			values[c++] = ms_datum((double) copy.ack_latency.sum_us / copy.ack_latency.count);
			values[c++] = ms_datum(zb_hist_percentile(&copy.ack_latency, 0.95));
			values[c++] = ms_datum(zb_hist_percentile(&copy.ack_latency, 0.99));
			values[c++] = ms_datum(copy.ack_latency.max_us);
		}
		else
		{
			for (w = 0; w < 6; w++)
				nulls[c++] = true;
		}
		if (copy.e2e_latency.count > 0)
		{
			values[c++] = ms_datum(zb_hist_percentile(&copy.e2e_latency, 0.50));
			values[c++] = ms_datum(zb_hist_percentile(&copy.e2e_latency, 0.99));
		}
		else
		{
			nulls[c++] = true;
			nulls[c++] = true;
		}
		settled = copy.c.rows_acked + copy.c.rows_dead;
		if (settled + copy.c.rows_failed > 0)
			values[c++] = Float8GetDatum(100.0 * copy.c.rows_acked /
										 (settled + copy.c.rows_failed));
		else
			nulls[c++] = true;
		values[c] = CStringGetTextDatum(copy.last_error);
		nulls[c++] = copy.last_error[0] == '\0';
		values[c] = TimestampTzGetDatum(copy.last_error_at);
		nulls[c++] = copy.last_error_at == 0;
		values[c] = TimestampTzGetDatum(copy.started_at);
		nulls[c++] = copy.started_at == 0;
		Assert(c == METRICS_NCOLS);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
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
