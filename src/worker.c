/*-------------------------------------------------------------------------
 * worker.c
 *	  Background workers: the launcher, per-database scan workers, and the
 *	  stream workers that deliver queue rows to ZeroBus.
 *
 * Launcher (one per cluster, from shared_preload_libraries, connected to no
 * database): runs a short scan worker in each database whose streams must be
 * (re)read from zerobus.streams; keeps the wanted number of stream workers
 * running for each enabled stream, restarting crashed ones with backoff and
 * asking workers of stopped, altered or dropped streams to leave; samples
 * throughput once a second.
 *
 * Stream worker (one per stream and worker index, connected to the stream's
 * database without a user; queue work runs as the queue's owner, see
 * runas.c): repeatedly
 *   1. opens a ZeroBus stream if none is open (token, CreateIngestStream);
 *   2. in one transaction, DELETEs its share of the queue by TID range with
 *      RETURNING, at most max_inflight rows in all (each claim stops after
 *      the rows still allowed), encoding each row as the executor returns it
 *      and sending requests of batch_rows / batch_bytes as they fill;
 *   3. waits until ZeroBus acknowledges every request as durable, then
 *      commits: only now do the rows leave the queue.
 * A batch the server rejects (INVALID_ARGUMENT) is bisected on new streams
 * until the rejected rows are isolated; they go to zerobus.dead_letters with
 * the error, in the same transaction.  A retryable failure is retried on a
 * new stream within the transaction, for as long as each failed stream had
 * made progress (and once more); then the transaction rolls back (the rows
 * return to the queue) and the worker backs off.  A missing or forbidden
 * object is a state ('error', with the fix in last_error), checked before
 * every batch; an ERROR unwinds to zb_worker_recover() and a backoff.
 * See docs/DESIGN.md for why rows are claimed by TID range, and for the
 * states and recovery rules.
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
#include "catalog/namespace.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "common/pg_prng.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/bufmgr.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/float.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "session.h"
#include "option.h"
#include "record.h"
#include "runas.h"
#include "shmem.h"
#include "stream.h"
#include "worker.h"
#include "zerobus.h"

int			zb_poll_interval_ms = 1000;
bool		zb_collect_metrics = true;

#define CHUNK_BLOCKS 64			/* the unit of the queue split among workers */
#define MAX_SPAN_CHUNKS 64		/* one claim scans at most this many chunks */
#define RESCAN_MS 100			/* a full pass at least this often */
#define HOT_MS 1000				/* a chunk that held rows is visited this long */
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 30000
#define BACKOFF_FATAL_MS 60000	/* between attempts after a non-retryable error */
#define STOP_GRACE_MS 60000		/* then the launcher terminates a worker */
#define WORKER_RESTART_MAX_MS 60000


/* ======================================================================
 * Error recovery, shared by the stream and generator workers
 * ====================================================================== */

/*
 * Called first thing in a worker's sigsetjmp block, after an ERROR unwound
 * to its main loop.  The steps are those of PostgresMain's and the
 * autovacuum launcher's recovery: forget the error context callbacks of
 * frames that no longer exist (walking them would crash, or loop), hold
 * interrupts, drop pending timeouts and cancels, log the error, abort the
 * transaction (locks, buffers, SPI, the user id and the GUC nest levels of
 * runas.c go with it), release what can be held outside a transaction, and
 * leave the error state clean.  The message (truncated to len) is copied to
 * msg; returns the SQLSTATE.
 *
 * While it and the caller's own clean-up run, there is no exception stack:
 * an ERROR there becomes FATAL and the process exits (the launcher restarts
 * it with backoff) instead of jumping back into the block that failed.  The
 * caller ends its block with RESUME_INTERRUPTS(); its loop re-arms the
 * exception stack.
 */
int
zb_worker_recover(char *msg, size_t len)
{
	ErrorData  *edata;
	int			sqlerrcode;

	PG_exception_stack = NULL;
	error_context_stack = NULL;
	HOLD_INTERRUPTS();
	disable_all_timeouts(false);
	QueryCancelPending = false;

	/* CopyErrorData() must not allocate in ErrorContext */
	MemoryContextSwitchTo(TopMemoryContext);
	edata = CopyErrorData();
	EmitErrorReport();

	AbortOutOfAnyTransaction();
	LWLockReleaseAll();
	pgstat_report_wait_end();
	ConditionVariableCancelSleep();

	MemoryContextSwitchTo(TopMemoryContext);
	FlushErrorState();
	strlcpy(msg, edata->message ? edata->message : "unknown error", len);
	sqlerrcode = edata->sqlerrcode;
	FreeErrorData(edata);
	return sqlerrcode;
}

/*
 * Can retrying soon help?  Resource shortages, lock and serialization
 * conflicts, operator intervention, I/O and internal errors: yes, with
 * backoff.  A missing object, a privilege, a bad setting, a constraint or a
 * user's trigger raising: not until someone changes something, so the
 * worker waits a minute, or until a relevant catalog row changes.
 */
bool
zb_sqlstate_retryable(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_CONNECTION_EXCEPTION:
		case ERRCODE_TRANSACTION_ROLLBACK:
		case ERRCODE_INSUFFICIENT_RESOURCES:
		case ERRCODE_OPERATOR_INTERVENTION:
		case ERRCODE_SYSTEM_ERROR:
		case ERRCODE_INTERNAL_ERROR:
			return true;
		default:
			return sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;
	}
}

/* ======================================================================
 * Launcher
 * ====================================================================== */

typedef struct LauncherWorker
{
	BackgroundWorkerHandle *handle;
	uint32		generation;
	TimestampTz started_at;
	TimestampTz stop_requested_at;
	int			failures;
	TimestampTz next_start;
	bool		warned;
} LauncherWorker;

static LauncherWorker *launcher_workers;	/* [max_streams][ZB_MAX_STREAM_WORKERS] */
static LauncherWorker *launcher_generators; /* [max_streams] */

#define LW(slot, w) (&launcher_workers[(slot) * ZB_MAX_STREAM_WORKERS + (w)])

static void
launcher_detach(int code, Datum arg)
{
	LWLockAcquire(zb_shared->lock, LW_EXCLUSIVE);
	zb_shared->launcher_pid = 0;
	zb_shared->launcher_procno = -1;
	LWLockRelease(zb_shared->lock);
}

static bool
launcher_start(BackgroundWorker *bgw, BackgroundWorkerHandle **handle)
{
	bgw->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw->bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw->bgw_restart_time = BGW_NEVER_RESTART;
	bgw->bgw_notify_pid = MyProcPid;
	strlcpy(bgw->bgw_library_name, "zerobus_fdw", BGW_MAXLEN);
	return RegisterDynamicBackgroundWorker(bgw, handle);
}

/* Start a scan worker for each database whose streams must be re-read. */
static void
launcher_rescan(void)
{
	Oid			dbs[ZB_MAX_RESCANS];
	int			ndbs;
	bool		all;
	int			i;

	LWLockAcquire(zb_shared->lock, LW_EXCLUSIVE);
	all = zb_shared->rescan_all;
	ndbs = zb_shared->nrescans;
	memcpy(dbs, zb_shared->rescans, sizeof(Oid) * ndbs);
	zb_shared->rescan_all = false;
	zb_shared->nrescans = 0;
	LWLockRelease(zb_shared->lock);

	if (all)
	{
		/* every connectable database; forget streams of databases that are gone */
		List	   *alldbs = NIL;
		Relation	rel;
		TableScanDesc scan;
		HeapTuple	tup;
		ListCell   *lc;

		StartTransactionCommand();
		(void) GetTransactionSnapshot();
		rel = table_open(DatabaseRelationId, AccessShareLock);
		scan = table_beginscan_catalog(rel, 0, NULL);
		while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
		{
			Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

			if (db->datallowconn && !db->datistemplate)
			{
				/* the list is used after the commit that frees the transaction's memory */
				MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

				alldbs = lappend_oid(alldbs, db->oid);
				MemoryContextSwitchTo(old);
			}
		}
		table_endscan(scan);
		table_close(rel, AccessShareLock);
		CommitTransactionCommand();

		LWLockAcquire(zb_shared->lock, LW_EXCLUSIVE);
		for (i = 0; i < zb_shared->max_streams; i++)
		{
			ZbStreamSlot *s = &zb_shared->streams[i];

			if (s->in_use && !list_member_oid(alldbs, s->dboid))
			{
				s->in_use = false;
				s->generation++;
			}
		}
		LWLockRelease(zb_shared->lock);

		ndbs = 0;
		foreach(lc, alldbs)
		{
			if (ndbs == ZB_MAX_RESCANS)
			{
				zb_request_rescan(lfirst_oid(lc));
				continue;
			}
			dbs[ndbs++] = lfirst_oid(lc);
		}
		list_free(alldbs);
	}

	for (i = 0; i < ndbs; i++)
	{
		BackgroundWorker bgw;
		BackgroundWorkerHandle *handle;

		memset(&bgw, 0, sizeof(bgw));
		strlcpy(bgw.bgw_function_name, "zerobus_scan_main", BGW_MAXLEN);
		snprintf(bgw.bgw_name, BGW_MAXLEN, "zerobus_fdw scan of database %u", dbs[i]);
		strlcpy(bgw.bgw_type, "zerobus_fdw scan", BGW_MAXLEN);
		bgw.bgw_main_arg = ObjectIdGetDatum(dbs[i]);
		if (launcher_start(&bgw, &handle))
			pfree(handle);		/* it reports through shared memory */
		else
			zb_request_rescan(dbs[i]);	/* no free worker slot: later */
	}
}

static long
launcher_backoff_ms(int failures)
{
	long		ms = 1000L << Min(failures, 6);

	return Min(ms, WORKER_RESTART_MAX_MS);
}

/*
 * Keep one background worker in the wanted state: start it if wanted (after
 * its restart backoff), ask it to leave if not wanted or outdated (then
 * terminate it after a grace period), and notice when it exits.
 * 'generation' identifies the configuration it must run with.
 */
static void
launcher_keep(LauncherWorker *lw, bool wanted, uint32 generation, int slot,
			  const ZbWorkerSlot *ws,
			  const char *function, const char *name, const char *type,
			  int32 main_arg, const WorkerExtra *extra, long *next_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	pid_t		pid;

	if (lw->handle)
	{
		if (GetBackgroundWorkerPid(lw->handle, &pid) == BGWH_STOPPED)
		{
			pfree(lw->handle);
			lw->handle = NULL;
			if (wanted && lw->generation == generation && lw->stop_requested_at == 0)
			{
				/* it exited on its own: restart, backing off if it keeps dying */
				if (now - lw->started_at < 10 * USECS_PER_SEC)
					lw->failures++;
				else
					lw->failures = 0;
				lw->next_start = TimestampTzPlusMilliseconds(now, launcher_backoff_ms(lw->failures));
			}
			else
			{
				lw->failures = 0;
				lw->next_start = 0;
			}
			lw->stop_requested_at = 0;
		}
		else if (!wanted || lw->generation != generation)
		{
			/*
			 * Ask it to leave at a batch boundary; insist after a grace
			 * period.  A stream worker opening a ZeroBus stream outside a
			 * batch holds nothing and may wait for the network for a long
			 * time: it is terminated at once.
			 */
			if (lw->stop_requested_at == 0)
			{
				lw->stop_requested_at = now;
				zb_wake_stream(slot);
			}
			if (now - lw->stop_requested_at > STOP_GRACE_MS * 1000L ||
				(ws != NULL && ws->state == ZB_STATE_CONNECTING && !ws->in_batch))
				TerminateBackgroundWorker(lw->handle);
		}
	}

	if (lw->handle == NULL && wanted)
	{
		BackgroundWorker bgw;

		if (lw->next_start > now)
		{
			*next_ms = Min(*next_ms, (long) ((lw->next_start - now) / 1000) + 1);
			return;
		}
		memset(&bgw, 0, sizeof(bgw));
		strlcpy(bgw.bgw_function_name, function, BGW_MAXLEN);
		strlcpy(bgw.bgw_name, name, BGW_MAXLEN);
		strlcpy(bgw.bgw_type, type, BGW_MAXLEN);
		bgw.bgw_main_arg = Int32GetDatum(main_arg);
		memcpy(bgw.bgw_extra, extra, sizeof(*extra));
		if (launcher_start(&bgw, &lw->handle))
		{
			lw->generation = generation;
			lw->started_at = now;
			lw->stop_requested_at = 0;
			lw->warned = false;
		}
		else
		{
			lw->handle = NULL;
			lw->next_start = TimestampTzPlusMilliseconds(now, 1000);
			if (!lw->warned)
			{
				ereport(WARNING,
						(errmsg("zerobus_fdw could not start %s: no background worker slot is free", name),
						 errhint("Raise max_worker_processes (now %d): the launcher, each stream worker and each generator need one.",
								 max_worker_processes)));
				zb_metrics_error(&zb_shared->streams[slot],
								 "no background worker slot is free: raise max_worker_processes");
				lw->warned = true;
			}
		}
	}
}

/* Keep the wanted stream and generator workers running, and only those. */
static long
launcher_reconcile(void)
{
	long		next_ms = 1000;
	int			i;

	for (i = 0; i < zb_shared->max_streams; i++)
	{
		ZbStreamSlot *s = &zb_shared->streams[i];
		bool		in_use;
		bool		enabled;
		bool		gen_enabled;
		int			nworkers;
		WorkerExtra extra;
		int			w;

		memset(&extra, 0, sizeof(extra));
		LWLockAcquire(zb_shared->lock, LW_SHARED);
		in_use = s->in_use;
		enabled = s->enabled;
		gen_enabled = s->gen_enabled;
		nworkers = s->nworkers;
		extra.generation = s->generation;
		extra.gen_generation = s->gen_generation;
		extra.dboid = s->dboid;
		strlcpy(extra.name, s->name, sizeof(extra.name));
		LWLockRelease(zb_shared->lock);

		for (w = 0; w < ZB_MAX_STREAM_WORKERS; w++)
			launcher_keep(LW(i, w), in_use && enabled && w < nworkers, extra.generation, i,
						  &s->workers[w], "zerobus_stream_main",
						  psprintf("zerobus_fdw stream %s worker %d", extra.name, w),
						  "zerobus_fdw stream", i * ZB_MAX_STREAM_WORKERS + w, &extra, &next_ms);
		launcher_keep(&launcher_generators[i], in_use && enabled && gen_enabled,
					  extra.generation ^ (extra.gen_generation << 16), i, NULL,
					  "zerobus_generator_main",
					  psprintf("zerobus_fdw generator %s", extra.name),
					  "zerobus_fdw generator", i, &extra, &next_ms);
	}
	return next_ms;
}

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

static SamplePrev *launcher_prev;	/* [max_streams] */

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
static void
launcher_sample(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int			i;

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

PGDLLEXPORT void
zerobus_launcher_main(Datum arg)
{
	TimestampTz last_sample = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("zerobus_fdw launcher");

	launcher_workers = MemoryContextAllocZero(TopMemoryContext,
											  sizeof(LauncherWorker) * zb_shared->max_streams *
											  ZB_MAX_STREAM_WORKERS);
	launcher_generators = MemoryContextAllocZero(TopMemoryContext,
												 sizeof(LauncherWorker) * zb_shared->max_streams);
	launcher_prev = MemoryContextAllocZero(TopMemoryContext,
										   sizeof(SamplePrev) * zb_shared->max_streams);
	LWLockAcquire(zb_shared->lock, LW_EXCLUSIVE);
	zb_shared->launcher_pid = MyProcPid;
	zb_shared->launcher_procno = GetNumberFromPGProc(MyProc);
	zb_shared->rescan_all = true;
	LWLockRelease(zb_shared->lock);
	before_shmem_exit(launcher_detach, 0);

	ereport(LOG, (errmsg("zerobus_fdw launcher started")));
	for (;;)
	{
		long		wait_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		launcher_rescan();
		wait_ms = launcher_reconcile();
		if (GetCurrentTimestamp() - last_sample >= USECS_PER_SEC)
		{
			launcher_sample();
			last_sample = GetCurrentTimestamp();
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(wait_ms, 10), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* Registered from _PG_init when preloaded. */
void
zb_register_launcher(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	strlcpy(bgw.bgw_library_name, "zerobus_fdw", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "zerobus_launcher_main", BGW_MAXLEN);
	strlcpy(bgw.bgw_name, "zerobus_fdw launcher", BGW_MAXLEN);
	strlcpy(bgw.bgw_type, "zerobus_fdw launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&bgw);
}

/* ======================================================================
 * Scan worker: bring one database's streams into shared memory
 * ====================================================================== */

/*
 * The lock that serializes the scans of one database: an advisory lock tag
 * in a class of its own (SQL's advisory-lock functions use classes 1 and 2),
 * so no user lock can collide with it.
 */
#define ZB_SCAN_LOCK_KEY1 0x7a62	/* "zb" */
#define ZB_SCAN_LOCK_KEY2 0x7363	/* "sc" */
#define ZB_SCAN_LOCK_CLASS 0x7a62

typedef struct ScanRow
{
	char		name[ZB_NAMELEN];
	Oid			queue;
	int			workers;
	int			max_inflight;
	bool		enabled;
	bool		gen_enabled;
	char		gen_profile[32];
	double		gen_rate;
	int			gen_throttle;
	TimestampTz gen_started_at;
	uint32		settings;
} ScanRow;

PGDLLEXPORT void
zerobus_scan_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	ScanRow    *rows = NULL;
	int			nrows = 0;
	int			i;
	LOCKTAG		scan_tag;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* no user: the bootstrap superuser, which reads only our own catalog */
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("zerobus_fdw scan");

	StartTransactionCommand();

	/*
	 * Scans of one database apply one after the other, each with a snapshot
	 * taken after the previous one finished: two scans started by two quick
	 * commits (stop_stream, then start_stream) could otherwise apply in the
	 * wrong order and leave the older catalog in shared memory.  The lock is
	 * held until this transaction ends, after the shared state is written.
	 */
	SET_LOCKTAG_ADVISORY(scan_tag, dboid, ZB_SCAN_LOCK_KEY1, ZB_SCAN_LOCK_KEY2, ZB_SCAN_LOCK_CLASS);
	(void) LockAcquire(&scan_tag, ExclusiveLock, false, false);

	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (OidIsValid(get_extension_oid("zerobus_fdw", true)) &&
		OidIsValid(zb_catalog_relid("stream_settings", true)))
	{
		/* the database's search_path applies to us too: pinned, and all qualified */
		(void) zb_spi_as(InvalidOid,
						 "SELECT s.name, s.queue::pg_catalog.oid, s.workers, s.enabled,"
						 " COALESCE(g.enabled, false), COALESCE(g.profile, ''),"
						 " COALESCE(g.rate, 0::pg_catalog.float8), COALESCE(g.throttle, 0),"
						 " g.started_at, s.max_inflight,"
						 " pg_catalog.hashtext((s.server, s.target, s.record_format, s.batch_rows,"
						 " s.batch_bytes, s.max_inflight, s.ack_timeout, s.dedup_column)::pg_catalog.text)"
						 " FROM zerobus.stream_settings s LEFT JOIN zerobus.generators g"
						 " ON g.stream OPERATOR(pg_catalog.=) s.name",
						 0, NULL, NULL, NULL, true, 0);
		nrows = (int) SPI_processed;
		rows = MemoryContextAllocZero(TopMemoryContext, sizeof(ScanRow) * Max(nrows, 1));
		for (i = 0; i < nrows; i++)
		{
			HeapTuple	t = SPI_tuptable->vals[i];
			TupleDesc	td = SPI_tuptable->tupdesc;
			bool		isnull;

			strlcpy(rows[i].name, SPI_getvalue(t, td, 1), ZB_NAMELEN);
			rows[i].queue = DatumGetObjectId(SPI_getbinval(t, td, 2, &isnull));
			rows[i].workers = DatumGetInt32(SPI_getbinval(t, td, 3, &isnull));
			rows[i].enabled = DatumGetBool(SPI_getbinval(t, td, 4, &isnull));
			rows[i].gen_enabled = DatumGetBool(SPI_getbinval(t, td, 5, &isnull));
			strlcpy(rows[i].gen_profile, SPI_getvalue(t, td, 6), sizeof(rows[i].gen_profile));
			rows[i].gen_rate = DatumGetFloat8(SPI_getbinval(t, td, 7, &isnull));
			rows[i].gen_throttle = DatumGetInt32(SPI_getbinval(t, td, 8, &isnull));
			rows[i].gen_started_at = DatumGetTimestampTz(SPI_getbinval(t, td, 9, &isnull));
			if (isnull)
				rows[i].gen_started_at = 0;
			rows[i].max_inflight = DatumGetInt32(SPI_getbinval(t, td, 10, &isnull));
			rows[i].settings = DatumGetUInt32(SPI_getbinval(t, td, 11, &isnull));
		}
	}
	PopActiveSnapshot();
	SPI_finish();

	LWLockAcquire(zb_shared->lock, LW_EXCLUSIVE);
	/* streams gone from the catalog */
	for (i = 0; i < zb_shared->max_streams; i++)
	{
		ZbStreamSlot *s = &zb_shared->streams[i];
		int			j;

		if (!s->in_use || s->dboid != dboid)
			continue;
		for (j = 0; j < nrows; j++)
			if (strcmp(rows[j].name, s->name) == 0)
				break;
		if (j == nrows)
		{
			s->in_use = false;
			s->generation++;
		}
	}
	/* streams added or changed */
	for (i = 0; i < nrows; i++)
	{
		int			slot = zb_slot_find(dboid, rows[i].name);
		ZbStreamSlot *s;

		if (slot < 0)
		{
			for (slot = 0; slot < zb_shared->max_streams; slot++)
				if (!zb_shared->streams[slot].in_use)
					break;
			if (slot == zb_shared->max_streams)
			{
				ereport(WARNING,
						(errmsg("stream \"%s\" cannot run: all %d stream slots are in use",
								rows[i].name, zb_shared->max_streams),
						 errhint("Raise zerobus.max_streams and restart the server.")));
				continue;
			}
			s = &zb_shared->streams[slot];
			s->in_use = true;
			s->dboid = dboid;
			strlcpy(s->name, rows[i].name, ZB_NAMELEN);
			s->generation++;
			SpinLockAcquire(&s->mutex);
			memset(&s->c, 0, sizeof(s->c));
			memset(&s->ack_latency, 0, sizeof(s->ack_latency));
			memset(&s->e2e_latency, 0, sizeof(s->e2e_latency));
			s->rate_ema = 0;
			s->gen_rate_ema = 0;
			s->state = ZB_STATE_STOPPED;
			s->started_at = GetCurrentTimestamp();
			s->last_ack_at = 0;
			s->last_error_at = 0;
			s->last_error[0] = '\0';
			s->gen_last_error[0] = '\0';
			SpinLockRelease(&s->mutex);
		}
		else
			s = &zb_shared->streams[slot];
		/* any change restarts the workers: they read the settings when they start */
		if (s->queue_relid != rows[i].queue ||
			s->nworkers != rows[i].workers || s->enabled != rows[i].enabled ||
			s->settings != rows[i].settings)
			s->generation++;
		s->settings = rows[i].settings;
		s->queue_relid = rows[i].queue;
		s->nworkers = rows[i].workers;
		s->max_inflight = rows[i].max_inflight;
		s->enabled = rows[i].enabled;
		if (s->gen_enabled != rows[i].gen_enabled ||
			strcmp(s->gen_profile, rows[i].gen_profile) != 0)
			s->gen_generation++;
		s->gen_enabled = rows[i].gen_enabled;
		strlcpy(s->gen_profile, rows[i].gen_profile, sizeof(s->gen_profile));
		s->gen_rate = rows[i].gen_rate;
		s->gen_throttle = rows[i].gen_throttle;
		s->gen_started_at = rows[i].gen_started_at;
		if (!s->enabled)
			zb_metrics_state(s, ZB_STATE_STOPPED);
	}
	LWLockRelease(zb_shared->lock);
	CommitTransactionCommand();	/* releases the scan lock */
	zb_wake_launcher();
	proc_exit(0);
}

/* ======================================================================
 * Stream worker
 * ====================================================================== */

typedef struct WorkerRow
{
	uint32		off;			/* record bytes in recbuf */
	uint32		len;
	ItemPointerData tid;		/* the queue row, to dead-letter it */
	TimestampTz committed_at;	/* 0 if unknown */
} WorkerRow;

typedef struct WorkerRequest
{
	int			first;			/* rows[first .. first + nrows) */
	int			nrows;
	size_t		bytes;
	int64		offset;			/* offset on the current stream, -1 if not sent there */
	TimestampTz sent_at;
	bool		acked;
} WorkerRequest;

typedef struct DeadRow
{
	ItemPointerData tid;
	char	   *error;
} DeadRow;

typedef struct Worker
{
	/* identity */
	int			slot;
	int			widx;
	uint32		generation;
	Oid			dboid;
	char		name[ZB_NAMELEN];
	ZbStreamSlot *s;

	/* configuration, reloaded when the stream or its queue changes */
	bool		loaded;
	MemoryContext cfg_cxt;		/* everything below points into it */
	Oid			owner;			/* the queue's owner: queue work runs as this role */
	char	   *problem;		/* why the queue cannot be worked on, or NULL */
	ZbStreamRow row;
	ZbSession  *session;		/* the owner's on the stream's server, held by cfg_cxt */
	ZbRecordSchema *schema;
	bool		json;
	SPIPlanPtr	plan;

	/* the ZeroBus stream */
	MemoryContext stream_cxt;
	ZbStream   *stream;
	bool		ever_connected;
	int			failures;
	TimestampTz retry_at;

	/* the current batch (one transaction) */
	MemoryContext batch_cxt;	/* reset after every batch */
	MemoryContext keep_cxt;		/* the batch's big arrays, kept across batches */
	ZbBuf		recbuf;
	WorkerRow  *rows;
	int			nrows;
	int			maxrows;
	WorkerRequest *reqs;
	int			nreqs;
	int			maxreqs;
	int			open_req;		/* being filled, or -1 */
	DeadRow    *dead;
	int			ndead;
	int			maxdead;
	bool		probing;		/* a refusal came: send one request at a time */
	int64		inflight;		/* rows sent and not yet acked, as published */
	TransactionId last_xmin;
	TimestampTz last_commit_ts;
	ItemPointerData first_tid;	/* of the row the current claim returned first */
	ItemPointerData last_tid;	/* and last */
	Oid			key_relid;		/* the queue and its storage, for dedup keys */
	Oid			key_relfilenode;
	FullTransactionId next_fxid;	/* recent; the epoch of xmins in dedup keys */

	/* where the next pass over the queue starts */
	BlockNumber cursor;
	ItemPointerData resume;		/* in chunk 'cursor': the first row not yet claimed
								 * when the last batch ran out of room, or invalid */
	bool		woken;			/* a latch wake-up arrived since the pass began */
	bool		paused;			/* the queue's columns cannot be sent */
	uint32		paused_fingerprint; /* of those columns */
	char	   *paused_reason;
	TimestampTz last_full_at;	/* of the last pass over the whole share */
	BlockNumber known_chunks;	/* chunks of the table at that pass */
	TimestampTz *hot_until;		/* per chunk: it held rows lately */
	BlockNumber nhot;
	TimestampTz depth_at;		/* when the queue depth was last published */
} Worker;

static Worker W;

/*
 * A catalog row that can decide whether the queue may be worked on changed
 * (a role, a schema, a server, a user mapping, the queue table itself): a
 * worker waiting out a non-retryable error looks again at once.
 */
static volatile bool catalog_changed = false;

/*
 * Our session (server, user mapping) is stale: its options changed, so the
 * stream is reopened with the new ones.  session.c's own syscache callbacks
 * mark it; invalidations are processed at transaction start.
 */
static bool
worker_session_stale(void)
{
	return W.session != NULL && !zb_session_is_current(W.session);
}

static void
worker_catalog_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	catalog_changed = true;
}

static void
worker_relation_changed(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == W.row.queue)
		catalog_changed = true;
}

static void
worker_state(ZbState state)
{
	W.s->workers[W.widx].state = state;
	zb_metrics_state(W.s, state);
}

static void
worker_error(const char *msg)
{
	elog(LOG, "zerobus_fdw stream \"%s\": %s", W.name, msg);
	zb_metrics_error(W.s, msg);
}

static void
worker_detach(int code, Datum arg)
{
	ZbStreamSlot *s = W.s;

	if (s == NULL)
		return;
	LWLockAcquire(zb_shared->lock, LW_EXCLUSIVE);
	if (s->workers[W.widx].pid == MyProcPid)
	{
		s->workers[W.widx].pid = 0;
		s->workers[W.widx].pgprocno = -1;
		s->workers[W.widx].state = ZB_STATE_STOPPED;
	}
	LWLockRelease(zb_shared->lock);
	SpinLockAcquire(&s->mutex);
	s->c.inflight_rows -= W.inflight;
	SpinLockRelease(&s->mutex);
	W.inflight = 0;
}

/* Still wanted: same slot identity and generation, enabled. */
static bool
worker_wanted(void)
{
	bool		ok;

	LWLockAcquire(zb_shared->lock, LW_SHARED);
	ok = W.s->in_use && W.s->enabled && W.s->generation == W.generation &&
		W.s->dboid == W.dboid && strcmp(W.s->name, W.name) == 0 && W.widx < W.s->nworkers;
	LWLockRelease(zb_shared->lock);
	return ok;
}

static void
worker_publish_inflight(int64 inflight)
{
	SpinLockAcquire(&W.s->mutex);
	W.s->c.inflight_rows += inflight - W.inflight;
	SpinLockRelease(&W.s->mutex);
	W.inflight = inflight;
}

static void
worker_publish_depth(int64 depth)
{
	SpinLockAcquire(&W.s->mutex);
	W.s->workers[W.widx].queue_depth = depth;
	SpinLockRelease(&W.s->mutex);
}

static void
worker_close_stream(void)
{
	if (W.stream)
	{
		zb_stream_free(W.stream);
		W.stream = NULL;
	}
	MemoryContextReset(W.stream_cxt);
}

/* What worker_load() found. */
typedef enum WorkerLoad
{
	LOAD_OK,					/* configured: the queue can be worked on */
	LOAD_GONE,					/* the stream was dropped: leave */
	LOAD_PROBLEM				/* a missing object or privilege: W.problem says which */
} WorkerLoad;

/*
 * Forget everything derived from the stream's configuration, so that
 * nothing can point into the reset config context.
 */
static void
worker_unload(void)
{
	worker_close_stream();
	if (W.plan)
	{
		SPI_freeplan(W.plan);
		W.plan = NULL;
	}
	MemoryContextReset(W.cfg_cxt);
	memset(&W.row, 0, sizeof(W.row));
	W.session = NULL;			/* its hold went with cfg_cxt */
	W.schema = NULL;
	W.json = false;
	W.paused = false;
	W.paused_reason = NULL;
	W.problem = NULL;
	W.owner = InvalidOid;
	W.loaded = false;
}

/*
 * (Re)load the stream's configuration: catalog row, owner, server and user
 * mapping, the queue's record schema, the prepared DELETE.  Runs in its own
 * transaction.  A missing or forbidden object is LOAD_PROBLEM with the
 * reason in W.problem; the worker reports it and tries again later.
 */
static WorkerLoad
worker_load(void)
{
	Relation	rel;
	char	   *qname = NULL;
	char	   *problem;
	char	   *hint;
	int			sqlstate;
	Oid			argtypes[2] = {TIDOID, TIDOID};
	MemoryContext old;
	WorkerLoad	result = LOAD_OK;

	worker_unload();
	/* the queue may be another table now: look at all of it first */
	W.known_chunks = 0;
	W.last_full_at = 0;
	W.cursor = 0;
	ItemPointerSetInvalid(&W.resume);
	if (W.hot_until)
		memset(W.hot_until, 0, sizeof(TimestampTz) * W.nhot);

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	old = MemoryContextSwitchTo(W.cfg_cxt);
	if (!zb_stream_lookup(W.name, false, &W.row))
		result = LOAD_GONE;
	else if ((W.problem = zb_stream_problem(&W.row, ACL_SELECT | ACL_DELETE, true, &W.owner)) != NULL)
		result = LOAD_PROBLEM;
	else
	{
		W.session = zb_session_get(zb_server_oid(W.row.server), W.owner);
		zb_session_require(W.session, ZB_NEED_ZEROBUS);
		W.json = strcmp(W.row.record_format, "json") == 0;

		rel = table_open(W.row.queue, AccessShareLock);
		problem = zb_record_columns_problem(RelationGetDescr(rel), RelationGetRelationName(rel),
											&hint, &sqlstate);
		if (problem == NULL && W.row.dedup_column)
			problem = zb_record_key_problem(RelationGetDescr(rel), RelationGetRelationName(rel),
											W.row.dedup_column, &hint, &sqlstate);
		W.paused = problem != NULL;
		if (W.paused)
		{
			/* the queue was altered into something records cannot carry */
			W.paused_fingerprint = zb_record_fingerprint(RelationGetDescr(rel));
			W.paused_reason = psprintf("paused: %s%s%s", problem, hint ? ". " : "", hint ? hint : "");
		}
		else
		{
			/* RETURNING ctid, xmin, *: the columns start at index 2 */
			W.schema = zb_record_schema(RelationGetDescr(rel), RelationGetRelationName(rel), 2,
										W.row.dedup_column);
			qname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											   RelationGetRelationName(rel));
		}
		table_close(rel, AccessShareLock);
	}
	MemoryContextSwitchTo(old);
	if (result == LOAD_OK && !W.paused)
	{
		ZbRunAs		ra;

		/* parsed as the owner, under the pinned search_path, like every execution */
		zb_runas_begin(&ra, W.owner);
		W.plan = SPI_prepare(psprintf("DELETE FROM ONLY %s"
									  " WHERE ctid OPERATOR(pg_catalog.>=) $1"
									  " AND ctid OPERATOR(pg_catalog.<) $2"
									  " RETURNING ctid, xmin, *", qname),
							 2, argtypes);
		zb_runas_end(&ra);
		if (W.plan == NULL)
			elog(ERROR, "could not prepare the queue DELETE: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(W.plan);
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	W.loaded = result == LOAD_OK;
	return result;
}

static void
worker_backoff(bool retryable)
{
	long		ms;

	W.failures++;
	if (retryable)
	{
		ms = BACKOFF_FIRST_MS << Min(W.failures - 1, 10);
		ms = Min(ms, BACKOFF_MAX_MS);
		/* +-25% jitter so that many workers do not retry in step */
		ms = (long) (ms * (0.75 + 0.5 * pg_prng_double(&pg_global_prng_state)));
	}
	else
		ms = BACKOFF_FATAL_MS;
	W.retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
	worker_state(retryable ? ZB_STATE_BACKOFF : ZB_STATE_ERROR);
}

/* Open a ZeroBus stream; false (with backoff set) on failure. */
static bool
worker_connect(void)
{
	ZbError		err;
	ProtobufCBinaryData descriptor = {0};
	MemoryContext old;

	worker_state(ZB_STATE_CONNECTING);
	if (!W.json)
	{
		descriptor.data = (uint8 *) W.schema->descriptor;
		descriptor.len = W.schema->descriptor_len;
	}
	old = MemoryContextSwitchTo(W.stream_cxt);
	W.stream = zb_session_open_stream(W.session, W.row.target,
									  W.json ? ZB_RECORD_JSON : ZB_RECORD_PROTO,
									  W.json ? NULL : &descriptor, 0, &err);
	MemoryContextSwitchTo(old);
	if (W.stream)
	{
		SpinLockAcquire(&W.s->mutex);
		W.s->c.streams_opened++;
		if (W.ever_connected)
			W.s->c.reconnects++;
		SpinLockRelease(&W.s->mutex);
		W.ever_connected = true;
		W.failures = 0;
		worker_state(ZB_STATE_IDLE);
		return true;
	}
	worker_close_stream();
	if (err.at_token)
		worker_error(psprintf("could not get a ZeroBus token: %s", err.message));
	else
		worker_error(psprintf("could not open a ZeroBus stream to %s: %s", W.row.target, err.message));
	worker_backoff(err.retryable);
	return false;
}

/* ---------- filling a batch ---------- */

static bool
worker_stream_usable(void)
{
	return W.stream != NULL && !zb_stream_closing(W.stream, NULL);
}

static void
worker_send(WorkerRequest *r)
{
	void	   *recs = palloc(sizeof(ProtobufCBinaryData) * r->nrows);
	int			i;

	if (W.json)
	{
		char	  **j = recs;

		for (i = 0; i < r->nrows; i++)
			j[i] = (char *) W.recbuf.data + W.rows[r->first + i].off;
		r->offset = zb_stream_send_json_batch(W.stream, j, r->nrows);
	}
	else
	{
		ProtobufCBinaryData *b = recs;

		for (i = 0; i < r->nrows; i++)
		{
			b[i].data = W.recbuf.data + W.rows[r->first + i].off;
			b[i].len = W.rows[r->first + i].len;
		}
		r->offset = zb_stream_send_proto_batch(W.stream, b, r->nrows);
	}
	pfree(recs);
	r->sent_at = GetCurrentTimestamp();
	if (!zb_collect_metrics)
		return;
	SpinLockAcquire(&W.s->mutex);
	W.s->c.rows_sent += r->nrows;
	W.s->c.bytes_sent += r->bytes;
	W.s->c.requests_sent++;
	SpinLockRelease(&W.s->mutex);
}

/* Close the request being filled, and send it if the stream can take it. */
static void
worker_seal(void)
{
	WorkerRequest *r;

	if (W.open_req < 0)
		return;
	r = &W.reqs[W.open_req];
	W.open_req = -1;
	if (worker_stream_usable())
		worker_send(r);
}

static void
worker_add_dead(ItemPointer tid, const char *error)
{
	if (W.ndead == W.maxdead)
	{
		W.maxdead = Max(16, W.maxdead * 2);
		W.dead = W.dead ? repalloc(W.dead, sizeof(DeadRow) * W.maxdead)
			: MemoryContextAlloc(W.batch_cxt, sizeof(DeadRow) * W.maxdead);
	}
	W.dead[W.ndead].tid = *tid;
	W.dead[W.ndead].error = MemoryContextStrdup(W.batch_cxt, error);
	W.ndead++;
}

/*
 * The transaction id, with its epoch, that inserted a row version whose xmin
 * is xid: the latest full id below the next one to be assigned that ends in
 * xid's 32 bits.  Exact for a row version younger than 2^32 transactions (an
 * unfrozen one is younger than 2^31).  W.next_fxid is read at the start of
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
		uint64		next = U64FromFullTransactionId(W.next_fxid);
		uint32		epoch = EpochFromFullTransactionId(W.next_fxid);
		uint64		full;

		if (xid >= XidFromFullTransactionId(W.next_fxid) && epoch > 0)
			epoch--;
		full = ((uint64) epoch << 32) | xid;
		if (fresh || (full < next && next - full <= ((uint64) 1 << 31)))
			return full;
		W.next_fxid = ReadNextFullTransactionId();
		fresh = true;
	}
}

/* DestReceiver for DELETE … RETURNING: encode each row as it comes. */
static bool
worker_receive(TupleTableSlot *slot, DestReceiver *self)
{
	MemoryContext old = MemoryContextSwitchTo(W.batch_cxt);
	Datum	   *values;
	bool	   *isnull;
	ItemPointer tid;
	TransactionId xmin;
	size_t		start = W.recbuf.len;
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
	if (!ItemPointerIsValid(&W.first_tid))
		W.first_tid = *tid;
	W.last_tid = *tid;

	if (W.schema->key_name)
	{
		/*
		 * The row version's identity (docs/DESIGN.md).  xmin is the inserting
		 * transaction's id even for a frozen row: freezing sets a flag and
		 * keeps it, and the system column shows it.
		 */
		zb_record_format_key(keybuf, W.key_relid, W.key_relfilenode, worker_full_xid(xmin),
							 ItemPointerGetBlockNumber(tid), ItemPointerGetOffsetNumber(tid));
		key = keybuf;
	}
	len = W.json
		? zb_record_encode_json(W.schema, values, isnull, key, W.keep_cxt, &W.recbuf, &error)
		: zb_record_encode_proto(W.schema, values, isnull, key, W.keep_cxt, &W.recbuf, &error);
	if (len >= 0 && (size_t) len > ZB_MAX_REQUEST_BYTES - 1024)
	{
		error = psprintf("the row's record is %zd bytes, above the %d-byte ZeroBus request limit",
						 len, ZB_MAX_REQUEST_BYTES);
		W.recbuf.len = start;
		len = -1;
	}
	if (len < 0)
	{
		worker_add_dead(tid, error);
		MemoryContextSwitchTo(old);
		return true;
	}

	if (W.nrows == W.maxrows)
	{
		W.maxrows = Max(1024, W.maxrows * 2);
		W.rows = W.rows ? repalloc_huge(W.rows, sizeof(WorkerRow) * W.maxrows)
			: MemoryContextAlloc(W.keep_cxt, sizeof(WorkerRow) * W.maxrows);
	}
	row = &W.rows[W.nrows];
	row->off = start;
	row->len = len;
	row->tid = *tid;
	row->committed_at = 0;
	if (zb_collect_metrics && track_commit_timestamp && TransactionIdIsNormal(xmin))
	{
		if (xmin != W.last_xmin)
		{
			RepOriginId origin;

			W.last_xmin = xmin;
			if (!TransactionIdGetCommitTsData(xmin, &W.last_commit_ts, &origin))
				W.last_commit_ts = 0;
		}
		row->committed_at = W.last_commit_ts;
	}

	/* into the open request, or a new one */
	if (W.open_req >= 0)
	{
		r = &W.reqs[W.open_req];
		if (r->nrows + 1 > W.row.batch_rows || r->bytes + len > (size_t) W.row.batch_bytes)
			worker_seal();
	}
	if (W.open_req < 0)
	{
		if (W.nreqs == W.maxreqs)
		{
			W.maxreqs = Max(16, W.maxreqs * 2);
			W.reqs = W.reqs ? repalloc(W.reqs, sizeof(WorkerRequest) * W.maxreqs)
				: MemoryContextAlloc(W.keep_cxt, sizeof(WorkerRequest) * W.maxreqs);
		}
		r = &W.reqs[W.nreqs];
		memset(r, 0, sizeof(*r));
		r->first = W.nrows;
		r->offset = -1;
		W.open_req = W.nreqs++;
	}
	r = &W.reqs[W.open_req];
	r->nrows++;
	r->bytes += len;
	W.nrows++;
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
 * W.last_tid is then the last row claimed.
 */
static uint64
worker_claim(ItemPointer lo, ItemPointer hi, uint64 limit)
{
	ParamListInfo params = makeParamList(2);
	SPIExecuteOptions opts;
	int			before = W.nrows + W.ndead;
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
	rc = SPI_execute_plan_extended(W.plan, &opts);
	if (rc != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "queue DELETE failed: %s", SPI_result_code_string(rc));
	return W.nrows + W.ndead - before;
}

/* Did chunk c hold rows lately? */
static bool
worker_chunk_hot(BlockNumber c, TimestampTz now)
{
	return c < W.nhot && W.hot_until[c] > now;
}

static void
worker_mark_hot(BlockNumber first, BlockNumber last, TimestampTz now)
{
	BlockNumber c;

	if (last >= W.nhot)
	{
		BlockNumber n = Max(last + 1, W.nhot * 2);

		W.hot_until = W.hot_until
			? repalloc(W.hot_until, sizeof(TimestampTz) * n)
			: MemoryContextAlloc(W.keep_cxt, sizeof(TimestampTz) * n);
		memset(W.hot_until + W.nhot, 0, sizeof(TimestampTz) * (n - W.nhot));
		W.nhot = n;
	}
	for (c = first; c <= last; c++)
		W.hot_until[c] = TimestampTzPlusMilliseconds(now, HOT_MS);
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
 * after it (W.resume), so the rows before it are not read again.
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
	int			nworkers = W.row.workers;
	BlockNumber mine;			/* chunks c with c % nworkers == widx */
	BlockNumber visited = 0;
	BlockNumber c;
	TimestampTz now = GetCurrentTimestamp();
	ItemPointerData resume = W.resume;

	ItemPointerSetInvalid(&W.resume);
	if (nchunks <= (BlockNumber) W.widx)
		return full;
	mine = (nchunks - W.widx + nworkers - 1) / nworkers;
	c = W.cursor;
	if (c >= nchunks || c % nworkers != (BlockNumber) W.widx)
	{
		c = W.widx;
		ItemPointerSetInvalid(&resume);
	}
	while (c < nchunks && visited < mine && W.nrows + W.ndead < W.row.max_inflight)
	{
		uint64		room = W.row.max_inflight - (W.nrows + W.ndead);
		BlockNumber span = 1;
		ItemPointerData lo;
		ItemPointerData hi;
		bool		partial = false;
		uint64		got;
		ZbError		err;
		int			wake;

		if (full || c >= W.known_chunks || worker_chunk_hot(c, now))
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
			ItemPointerSetInvalid(&W.first_tid);
			got = worker_claim(&lo, &hi, room);
			if (got > 0)
				worker_mark_hot(ItemPointerGetBlockNumber(&W.first_tid) / CHUNK_BLOCKS,
								ItemPointerGetBlockNumber(&W.last_tid) / CHUNK_BLOCKS, now);
			if (got == room)
			{
				/* out of room, possibly in the middle of the range: resume there */
				c = ItemPointerGetBlockNumber(&W.last_tid) / CHUNK_BLOCKS;
				ItemPointerSet(&W.resume, ItemPointerGetBlockNumber(&W.last_tid),
							   ItemPointerGetOffsetNumber(&W.last_tid) + 1);
				break;
			}

			/* let requests already sealed go out, and acks come in */
			if (W.stream && !zb_stream_poll(W.stream, 0, &wake, &err))
			{
				c += span * nworkers;
				break;			/* the ack phase deals with it */
			}
			if (W.stream && (wake & ZB_WAKE_LATCH))
				W.woken = true;
		}
		/* a chunk entered after its start is visited again from its start */
		visited += partial ? span - 1 : span;
		c += span * nworkers;
		if (c >= nchunks && visited < mine && W.nrows + W.ndead < W.row.max_inflight)
			c = W.widx;			/* wrap once to cover the chunks before the cursor */
	}
	W.cursor = c;
	if (W.open_req >= 0)
		worker_seal();
	if (full && visited >= mine)
	{
		W.known_chunks = nchunks;
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
	SpinLockAcquire(&W.s->mutex);
	W.s->c.rows_acked += r->nrows;
	W.s->c.bytes_acked += r->bytes;
	W.s->c.requests_acked++;
	W.s->last_ack_at = now;
	zb_hist_add(&W.s->ack_latency, (uint64) Max(now - r->sent_at, 0));
	for (i = 0; i < r->nrows; i++)
	{
		TimestampTz c = W.rows[r->first + i].committed_at;

		if (c != 0)
			zb_hist_add(&W.s->e2e_latency, (uint64) Max(now - c, 0));
	}
	SpinLockRelease(&W.s->mutex);
}

static int64
worker_unacked_rows(void)
{
	int64		n = 0;
	int			i;

	for (i = 0; i < W.nreqs; i++)
		if (!W.reqs[i].acked && W.reqs[i].offset >= 0)
			n += W.reqs[i].nrows;
	return n;
}

/* Split request i (the one the server refused) in two, or dead-letter its
 * only row. */
static void
worker_bisect(int i, const char *error)
{
	Assert(i >= 0 && i < W.nreqs && !W.reqs[i].acked);
	if (W.reqs[i].nrows == 1)
	{
		worker_add_dead(&W.rows[W.reqs[i].first].tid, error);
		W.reqs[i].acked = true; /* settled: it leaves the queue as a dead letter */
		SpinLockAcquire(&W.s->mutex);
		W.s->c.rows_dead++;
		SpinLockRelease(&W.s->mutex);
	}
	else
	{
		WorkerRequest *r;
		int			half = W.reqs[i].nrows / 2;
		int			k;
		size_t		bytes = 0;

		if (W.nreqs == W.maxreqs)
		{
			W.maxreqs *= 2;
			W.reqs = repalloc(W.reqs, sizeof(WorkerRequest) * W.maxreqs);
		}
		memmove(&W.reqs[i + 2], &W.reqs[i + 1], sizeof(WorkerRequest) * (W.nreqs - i - 1));
		W.nreqs++;
		r = &W.reqs[i];
		for (k = 0; k < half; k++)
			bytes += W.rows[r->first + k].len;
		W.reqs[i + 1] = *r;
		W.reqs[i + 1].first = r->first + half;
		W.reqs[i + 1].nrows = r->nrows - half;
		W.reqs[i + 1].bytes = r->bytes - bytes;
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

	worker_close_stream();
	if (!worker_connect())
		return false;
	for (i = 0; i < W.nreqs; i++)
	{
		W.reqs[i].offset = -1;
		if (!W.reqs[i].acked && !(W.probing && sent))
		{
			worker_send(&W.reqs[i]);
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

	if (W.stream == NULL)
		return 0;
	acked = zb_stream_acked(W.stream);
	for (i = 0; i < W.nreqs; i++)
	{
		WorkerRequest *r = &W.reqs[i];

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

	worker_state(ZB_STATE_STREAMING);
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
		for (i = 0; i < W.nreqs; i++)
		{
			WorkerRequest *r = &W.reqs[i];

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
		worker_publish_inflight(worker_unacked_rows());
		if (all_acked)
			return true;

		if (W.stream && zb_stream_closing(W.stream, &close_deadline))
		{
			/* the server asked us to move: drain what is in flight, then move */
			if (all_sent_acked || now >= close_deadline)
			{
				if (!all_sent_acked)
					worker_error("CloseStreamSignal deadline passed with requests unacknowledged");
				if (!worker_resend())
					return false;
				continue;
			}
		}
		else if (W.stream)
		{
			/* requests held back while the stream was closing, or while probing */
			for (i = 0; i < W.nreqs; i++)
			{
				if (W.reqs[i].acked || W.reqs[i].offset >= 0)
					continue;
				if (W.probing && !all_sent_acked)
					break;
				worker_send(&W.reqs[i]);
				if (W.probing)
					break;
			}
		}
		else if (!worker_resend())
			return false;

		if (oldest != 0 && now - oldest > W.row.ack_timeout_ms * 1000)
		{
			zb_error_set(&err, ZB_ERR_TIMEOUT, true,
						 "no durable acknowledgement within %lld ms (acked up to offset " INT64_FORMAT
						 " of " INT64_FORMAT ", %zu bytes not yet sent)",
						 (long long) W.row.ack_timeout_ms, zb_stream_acked(W.stream),
						 zb_stream_last_sent(W.stream), zb_stream_send_pending(W.stream));
			failed = true;
		}
		else
		{
			wait_ms = 1000;
			if (oldest != 0)
				wait_ms = Min(wait_ms, (long) (W.row.ack_timeout_ms - (now - oldest) / 1000) + 1);
			if (close_deadline != 0)
				wait_ms = Min(wait_ms, Max(zb_ms_until(close_deadline), 1));
			if (!zb_stream_poll(W.stream, Max(wait_ms, 1), &wake, &err))
				failed = true;
			if (wake & ZB_WAKE_LATCH)
				W.woken = true;
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
			for (i = 0; i < W.nreqs; i++)
			{
				if (!W.reqs[i].acked && W.reqs[i].offset >= 0)
				{
					if (culprit < 0)
						culprit = i;
					in_flight++;
				}
			}
			if (in_flight == 0)
			{
				worker_error(err.message);
				worker_close_stream();
				worker_backoff(false);
				return false;
			}
			if (in_flight == 1)
				worker_bisect(culprit, err.message);
			W.probing = true;
			if (!worker_resend())
				return false;
			continue;
		}
		if (err.kind == ZB_ERR_GRPC && err.grpc_code == GRPC_UNAUTHENTICATED)
			zb_session_token_refused(W.session, ZB_TOKEN_ZEROBUS, W.row.target);
		worker_error(err.message);
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
		worker_close_stream();
		worker_backoff(err.retryable);
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

	for (i = 0; i < W.ndead; i++)
	{
		Datum		row[1];
		Datum		values[4];
		bool		isnull;

		/* the row version our DELETE removed is still there for us */
		if (!table_tuple_fetch_row_version(rel, &W.dead[i].tid, SnapshotAny, slot))
			continue;
		row[0] = ExecFetchSlotHeapTupleDatum(slot);
		(void) zb_spi_as(W.owner, "SELECT pg_catalog.to_jsonb($1)", 1, rowtype, row, NULL, true, 1);
		if (SPI_processed != 1)
			elog(ERROR, "could not convert a dead row to jsonb");
		values[0] = CStringGetTextDatum(W.name);
		values[1] = ObjectIdGetDatum(W.owner);
		values[2] = CStringGetTextDatum(W.dead[i].error);
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

static void
worker_reset_batch(void)
{
	MemoryContextReset(W.batch_cxt);
	if (W.recbuf.cap > KEEP_MAX_BYTES)
	{
		MemoryContextReset(W.keep_cxt);
		memset(&W.recbuf, 0, sizeof(W.recbuf));
		W.rows = NULL;
		W.maxrows = 0;
		W.reqs = NULL;
		W.maxreqs = 0;
		W.hot_until = NULL;
		W.nhot = 0;
	}
	W.recbuf.len = W.recbuf.off = 0;
	W.nrows = 0;
	W.nreqs = 0;
	W.open_req = -1;
	W.dead = NULL;
	W.ndead = W.maxdead = 0;
	W.probing = false;
	W.last_xmin = InvalidTransactionId;
}

/*
 * One batch: claim, send, await acks, commit.  Returns the rows that left
 * the queue (delivered or dead-lettered); 0 if the queue had nothing for us.
 */
static int
worker_batch(void)
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

	worker_reset_batch();
	StartTransactionCommand();
	W.s->workers[W.widx].in_batch = true;
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());

	/*
	 * Before every batch: the queue, its owner, the owner's privileges on it
	 * and its schema, USAGE on the server and a user mapping (syscache
	 * lookups).  A REVOKE stops delivery here; a changed owner reloads.
	 */
	if (zb_stream_problem(&W.row, ACL_SELECT | ACL_DELETE, true, &owner) != NULL ||
		owner != W.owner)
	{
		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
		W.loaded = false;		/* worker_load() reports the problem */
		return 1;
	}

	rel = table_open(W.row.queue, RowExclusiveLock);
	if (zb_record_fingerprint(RelationGetDescr(rel)) != W.schema->fingerprint)
	{
		/* the queue's columns changed: reload and open a stream with the new schema */
		table_close(rel, RowExclusiveLock);
		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
		ereport(LOG,
				(errmsg("zerobus_fdw stream \"%s\": the queue's columns changed; re-sending the schema",
						W.name)));
		W.loaded = false;
		return 1;
	}

	if (W.schema->key_name)
	{
		/* dedup keys name the queue's storage and need the current xid epoch */
		W.key_relid = RelationGetRelid(rel);
		W.key_relfilenode = zb_rel_filenumber(rel);
		W.next_fxid = ReadNextFullTransactionId();
	}

	/*
	 * Everything that touches the queue runs as its owner, restricted, with
	 * the search_path pinned: the DELETE fires the owner's triggers and
	 * policies, never with our rights.  The section ends before the
	 * transaction does, whichever way it ends.
	 */
	zb_runas_begin(&ra, W.owner);

	/* a full pass now and then, and when a wake-up's rows are not where we looked */
	start_cursor = W.cursor;
	start_resume = W.resume;
	full = GetCurrentTimestamp() - W.last_full_at >= RESCAN_MS * 1000L;
	complete = worker_fill(rel, full);
	if (!full && W.nrows == 0 && W.ndead == 0)
	{
		full = true;
		complete = worker_fill(rel, true);
	}
	if (complete)
		W.last_full_at = GetCurrentTimestamp();
	local_dead = W.ndead;

	/*
	 * Queue depth: a pass that covered this worker's whole share claimed every
	 * committed row in it, so nothing of its share waits; a pass cut short by
	 * max_inflight leaves a backlog, estimated from the statistics.
	 */
	if (complete)
		worker_publish_depth(0);
	else if (GetCurrentTimestamp() - W.depth_at >= USECS_PER_SEC)
	{
		int64		live = DatumGetInt64(DirectFunctionCall1(pg_stat_get_live_tuples,
															 ObjectIdGetDatum(W.row.queue)));

		worker_publish_depth(Max(live / W.row.workers - W.nrows - W.ndead, 1));
		W.depth_at = GetCurrentTimestamp();
	}
	if (W.nrows == 0 && W.ndead == 0)
	{
		zb_runas_end(&ra);
		table_close(rel, RowExclusiveLock);
		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
		return 0;
	}

	if (W.nrows > 0 && !worker_await_acks())
	{
		/* give the rows back: the transaction rolls back; the next one claims them first */
		W.cursor = start_cursor;
		W.resume = start_resume;
		SpinLockAcquire(&W.s->mutex);
		W.s->c.rows_failed += W.nrows;
		SpinLockRelease(&W.s->mutex);
		worker_publish_inflight(0);
		zb_runas_end(&ra);
		table_close(rel, RowExclusiveLock);
		PopActiveSnapshot();
		SPI_finish();
		AbortCurrentTransaction();
		return 0;
	}
	if (W.ndead > 0)
	{
		worker_bury(rel);
		SpinLockAcquire(&W.s->mutex);
		W.s->c.rows_dead += local_dead;
		SpinLockRelease(&W.s->mutex);
	}
	zb_runas_end(&ra);
	table_close(rel, RowExclusiveLock);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

	settled = W.nrows + local_dead;
	SpinLockAcquire(&W.s->mutex);
	W.s->c.batches++;
	SpinLockRelease(&W.s->mutex);
	worker_publish_inflight(0);
	return settled;
}

/* Sleep until woken, the poll interval, or a network event on the stream. */
static void
worker_idle(long max_ms)
{
	long		ms = Min((long) zb_poll_interval_ms, max_ms);

	if (W.stream)
	{
		ZbError		err;
		int			wake;
		TimestampTz deadline;

		worker_state(ZB_STATE_IDLE);
		if (!zb_stream_poll(W.stream, ms, &wake, &err))
		{
			/* an idle stream that ended is simply reopened */
			if (err.kind != ZB_ERR_TRANSPORT)
				worker_error(err.message);
			worker_close_stream();
		}
		else if (zb_stream_closing(W.stream, &deadline))
			worker_close_stream();	/* nothing in flight: move now */
	}
	else
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(ms, 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * A problem the worker cannot fix (a missing object or privilege): say so
 * in zb_metrics, once per distinct message, and wait (state 'error').
 */
static void
worker_problem(const char *problem)
{
	if (strncmp(W.s->last_error, problem, ZB_ERRLEN - 1) != 0)
		worker_error(problem);
	worker_backoff(false);
}

PGDLLEXPORT void
zerobus_stream_main(Datum arg)
{
	int			code = DatumGetInt32(arg);
	WorkerExtra extra;
	sigjmp_buf	local_sigjmp_buf;
	bool		ok;

	memset(&W, 0, sizeof(W));
	memcpy(&extra, MyBgworkerEntry->bgw_extra, sizeof(extra));
	W.slot = code / ZB_MAX_STREAM_WORKERS;
	W.widx = code % ZB_MAX_STREAM_WORKERS;
	W.generation = extra.generation;
	W.dboid = extra.dboid;
	strlcpy(W.name, extra.name, sizeof(W.name));
	W.open_req = -1;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (W.slot >= zb_shared->max_streams)
		proc_exit(0);
	LWLockAcquire(zb_shared->lock, LW_SHARED);
	ok = zb_shared->streams[W.slot].in_use &&
		zb_shared->streams[W.slot].generation == W.generation &&
		zb_shared->streams[W.slot].dboid == W.dboid &&
		strcmp(zb_shared->streams[W.slot].name, W.name) == 0;
	LWLockRelease(zb_shared->lock);
	if (!ok)
		proc_exit(0);			/* superseded before it started */

	/*
	 * Connected without a user, as autovacuum is (the bootstrap superuser):
	 * the owner may be a NOLOGIN role, and may change or disappear while we
	 * run.  Queue work switches to the owner (runas.c).
	 */
	BackgroundWorkerInitializeConnectionByOid(W.dboid, InvalidOid, 0);
	pgstat_report_appname(psprintf("zerobus_fdw stream %s", W.name));

	W.s = &zb_shared->streams[W.slot];
	LWLockAcquire(zb_shared->lock, LW_EXCLUSIVE);
	W.s->workers[W.widx].pid = MyProcPid;
	W.s->workers[W.widx].pgprocno = GetNumberFromPGProc(MyProc);
	LWLockRelease(zb_shared->lock);
	before_shmem_exit(worker_detach, 0);
	worker_state(ZB_STATE_STARTING);

	W.cfg_cxt = AllocSetContextCreate(TopMemoryContext, "zerobus worker config",
									  ALLOCSET_DEFAULT_SIZES);
	W.stream_cxt = AllocSetContextCreate(TopMemoryContext, "zerobus worker stream",
										 ALLOCSET_DEFAULT_SIZES);
	W.batch_cxt = AllocSetContextCreate(TopMemoryContext, "zerobus worker batch",
										ALLOCSET_DEFAULT_SIZES);
	W.keep_cxt = AllocSetContextCreate(TopMemoryContext, "zerobus worker buffers",
									   ALLOCSET_DEFAULT_SIZES);
	CacheRegisterSyscacheCallback(FOREIGNSERVEROID, worker_catalog_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(USERMAPPINGOID, worker_catalog_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, worker_catalog_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, worker_catalog_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, worker_catalog_changed, (Datum) 0);
	CacheRegisterRelcacheCallback(worker_relation_changed, (Datum) 0);

	/*
	 * An ERROR anywhere below lands here: recover (zb_worker_recover), count
	 * the batch's rows as failed (they are back in the queue), forget the
	 * ZeroBus stream and the configuration (the error may come from a
	 * changed or dropped object), and back off before trying again.
	 */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		char		msg[ZB_ERRLEN];
		int			sqlerrcode = zb_worker_recover(msg, sizeof(msg));

		W.s->workers[W.widx].in_batch = false;
		zb_metrics_error(W.s, msg);
		if (W.nrows > 0)
		{
			SpinLockAcquire(&W.s->mutex);
			W.s->c.rows_failed += W.nrows;
			SpinLockRelease(&W.s->mutex);
		}
		worker_publish_inflight(0);
		worker_unload();
		worker_reset_batch();
		worker_backoff(zb_sqlstate_retryable(sqlerrcode));
		RESUME_INTERRUPTS();
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		int			n;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (!worker_wanted())
			break;
		if (W.retry_at > GetCurrentTimestamp())
		{
			/*
			 * While backing off: look for fixed options, and keep the queue
			 * depth current (it grows while the service is away), once a
			 * second.
			 */
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Min(Max(zb_ms_until(W.retry_at), 1), 1000), PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			StartTransactionCommand();	/* processes catalog invalidations */
			if (W.loaded && SearchSysCacheExists1(RELOID, ObjectIdGetDatum(W.row.queue)))
				worker_publish_depth(DatumGetInt64(DirectFunctionCall1(pg_stat_get_live_tuples,
																	   ObjectIdGetDatum(W.row.queue))) /
									 W.row.workers);
			CommitTransactionCommand();
			/* a grant, a new object, changed options: look again now */
			if (worker_session_stale() ||
				(catalog_changed && W.s->workers[W.widx].state == ZB_STATE_ERROR))
				W.retry_at = 0;
			catalog_changed = false;
			continue;
		}
		if (worker_session_stale())
			W.loaded = false;
		if (!W.loaded)
		{
			catalog_changed = false;
			switch (worker_load())
			{
				case LOAD_OK:
					break;
				case LOAD_GONE:
					goto done;	/* the stream was dropped */
				case LOAD_PROBLEM:
					worker_problem(W.problem);
					continue;
			}
		}
		if (W.paused)
		{
			/* wait for the queue's columns to change, then look again */
			bool		changed;
			Relation	rel;

			worker_close_stream();
			worker_state(ZB_STATE_PAUSED);
			if (strncmp(W.s->last_error, W.paused_reason, ZB_ERRLEN - 1) != 0)
				worker_error(W.paused_reason);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 zb_poll_interval_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			StartTransactionCommand();
			/* a queue dropped meanwhile is noticed by the reload */
			rel = try_table_open(W.row.queue, AccessShareLock);
			changed = rel == NULL ||
				zb_record_fingerprint(RelationGetDescr(rel)) != W.paused_fingerprint;
			if (rel != NULL)
				table_close(rel, AccessShareLock);
			CommitTransactionCommand();
			if (changed)
				W.loaded = false;
			continue;
		}
		if (W.stream == NULL && !worker_connect())
			continue;

		W.woken = false;
		n = worker_batch();
		W.s->workers[W.widx].in_batch = false;
		/* a background worker flushes its own statistics (queue depth) */
		pgstat_report_stat(n == 0);
		if (n == 0 && !W.woken && W.retry_at <= GetCurrentTimestamp())
			worker_idle(zb_poll_interval_ms);
	}
done:
	worker_close_stream();
	proc_exit(0);
}
