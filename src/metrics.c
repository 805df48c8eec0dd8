/*-------------------------------------------------------------------------
 * metrics.c
 *	  The set-returning functions behind zb_metrics: one row per stream,
 *	  read from shared memory (counters copied out under each slot's
 *	  spinlock, so a row is self-consistent), and reset_metrics.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"

#include "runas.h"
#include "shmem.h"

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
