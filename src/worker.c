/*-------------------------------------------------------------------------
 * worker.c
 *	  The stream worker: its main loop, its states, and its recovery.
 *
 * One per stream and worker index, connected to the stream's database
 * without a user (the source's work runs as its table's owner: runas.c).
 * It loads the stream's settings from the catalog and the record schema
 * from its source, opens a ZeroBus stream through its session (session.c:
 * token, CreateIngestStream, one new token if the service refuses it), and
 * runs batches (batch.c) for as long as the launcher wants it: each claims
 * rows from the source (queue.c), sends them and settles them once they are
 * durably acknowledged.  Between batches it waits for a wake-up, the poll
 * interval or the network.  Trouble is a state published in zb_metrics,
 * never a crash: a retryable failure backs off (100 ms doubling to 30 s,
 * with jitter); a missing object or privilege is 'error', looked at again
 * after a minute or at once when a relevant catalog row changes; a table
 * whose columns records cannot carry is 'paused'; an ERROR unwinds to
 * zb_worker_recover() and a backoff.  See docs/DESIGN.md, "Workers:
 * errors, states and recovery".
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "batch.h"
#include "compat.h"
#include "metrics.h"
#include "option.h"
#include "record.h"
#include "runas.h"
#include "session.h"
#include "shmem.h"
#include "stream.h"
#include "worker.h"
#include "zerobus.h"

int			zb_poll_interval_ms = 1000;

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 30000
#define BACKOFF_FATAL_MS 60000	/* between attempts after a non-retryable error */


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
 * Stream worker
 * ====================================================================== */

static ZbWorker W;

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
	if (!OidIsValid(relid) || relid == W.row.queue || relid == W.row.source)
		catalog_changed = true;
}

/* What this worker does, in zb_metrics (written when it changes). */
void
zb_worker_state(ZbState state)
{
	if (state == W.state)
		return;
	W.state = state;
	zb_metrics_worker_state(W.s, W.widx, state);
}

void
zb_worker_error(const char *msg)
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
	}
	LWLockRelease(zb_shared->lock);
	/* its state stays: its last word, shown while no worker runs */
	zb_metrics_worker_gone(s, W.widx);
	zb_batch_release(&W);
}

/*
 * Still wanted: same slot identity and generation, enabled.  Also for a
 * source in the middle of a long claim (change capture's initial copy).
 */
bool
zb_worker_wanted(void)
{
	bool		ok;

	LWLockAcquire(zb_shared->lock, LW_SHARED);
	ok = W.s->in_use && W.s->enabled && W.s->generation == W.generation &&
		W.s->dboid == W.dboid && strcmp(W.s->name, W.name) == 0 && W.widx < W.s->nworkers;
	LWLockRelease(zb_shared->lock);
	return ok;
}

void
zb_worker_publish_depth(int64 depth)
{
	zb_metrics_worker_depth(W.s, W.widx, depth);
}

void
zb_worker_close_stream(void)
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
	LOAD_WAIT,					/* the catalog is ahead of (or behind) our generation */
	LOAD_PROBLEM				/* a missing object or privilege: W.problem says which */
} WorkerLoad;

/*
 * Forget everything derived from the stream's configuration, so that
 * nothing can point into the reset config context.
 */
static void
worker_unload(void)
{
	zb_worker_close_stream();
	W.source->unload(&W);
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
 * Are the settings just loaded those of the generation this worker was
 * started for?  The launcher started it for the settings a scan worker
 * registered (their fingerprint); the catalog may have moved on since (a
 * rescan is then on its way, and a new generation will replace us) or, for
 * a worker started just before a rescan, be ahead of the slot.  Either
 * way, work only with the settings the launcher and the other workers of
 * the stream see (the split of the queue among workers depends on them).
 */
static bool
worker_settings_current(void)
{
	uint32		fingerprint = zb_stream_fingerprint(&W.row);
	bool		current;

	LWLockAcquire(zb_shared->lock, LW_SHARED);
	current = W.s->fingerprint == fingerprint && W.s->generation == W.generation;
	LWLockRelease(zb_shared->lock);
	return current;
}

/*
 * (Re)load the stream's configuration: catalog row, owner, server and user
 * mapping, and what the source builds from its table (the record schema;
 * for the queue, the prepared DELETE).  Runs in its own transaction.  A
 * missing or forbidden object is LOAD_PROBLEM with the reason in
 * W.problem; the worker reports it and tries again later.
 */
static WorkerLoad
worker_load(void)
{
	MemoryContext old;
	WorkerLoad	result = LOAD_OK;

	worker_unload();

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	old = MemoryContextSwitchTo(W.cfg_cxt);
	if (!zb_stream_lookup(W.name, false, &W.row))
		result = LOAD_GONE;
	else
	{
		/* the stream's kind picks where its rows come from */
		W.source = OidIsValid(W.row.source) ? &zb_cdc_source : &zb_queue_source;
		if (!worker_settings_current())
			result = LOAD_WAIT;
		else if ((W.problem = zb_stream_problem(&W.row, W.source->privileges, true, &W.owner)) != NULL)
			result = LOAD_PROBLEM;
		else
		{
			W.session = zb_session_get(zb_server_oid(W.row.server), W.owner);
			zb_session_require(W.session, ZB_NEED_ZEROBUS);
			W.json = strcmp(W.row.record_format, "json") == 0;
			W.source->load(&W); /* the record schema, or why the stream is paused */
			if (W.problem)
				result = LOAD_PROBLEM;	/* found by the source (change capture: a lost slot) */
		}
	}
	MemoryContextSwitchTo(old);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	W.loaded = result == LOAD_OK;
	W.loaded_at = GetCurrentTimestamp();
	return result;
}

void
zb_worker_backoff(bool retryable)
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
	zb_worker_state(retryable ? ZB_STATE_BACKOFF : ZB_STATE_ERROR);
}

/* Open a ZeroBus stream; false (with backoff set) on failure. */
static bool
worker_connect(void)
{
	ZbError		err;
	ProtobufCBinaryData descriptor = {0};
	MemoryContext old;

	zb_worker_state(ZB_STATE_CONNECTING);
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
		zb_worker_state(ZB_STATE_IDLE);
		return true;
	}
	zb_worker_close_stream();
	if (err.at_token)
		zb_worker_error(psprintf("could not get a ZeroBus token: %s", err.message));
	else
		zb_worker_error(psprintf("could not open a ZeroBus stream to %s: %s", W.row.target, err.message));
	zb_worker_backoff(err.retryable);
	return false;
}

/* Drop the ZeroBus stream and open a new one; false (with backoff set) on failure. */
bool
zb_worker_reconnect(void)
{
	zb_worker_close_stream();
	return worker_connect();
}

/* ZeroBus refused the token mid-batch: the next stream fetches a new one. */
void
zb_worker_token_refused(void)
{
	zb_session_token_refused(W.session, ZB_TOKEN_ZEROBUS, W.row.target);
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

		zb_worker_state(ZB_STATE_IDLE);
		if (!zb_stream_poll(W.stream, ms, &wake, &err))
		{
			/* an idle stream that ended is simply reopened */
			if (err.kind != ZB_ERR_TRANSPORT)
				zb_worker_error(err.message);
			zb_worker_close_stream();
		}
		else if (zb_stream_closing(W.stream, &deadline))
			zb_worker_close_stream();	/* nothing in flight: move now */
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
	if (zb_metrics_error_once(W.s, problem, true))
		elog(LOG, "zerobus_fdw stream \"%s\": %s", W.name, problem);
	zb_worker_backoff(false);
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
	W.source = &zb_queue_source;

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
	W.state = -1;				/* unknown: the first report is written */
	LWLockAcquire(zb_shared->lock, LW_EXCLUSIVE);
	W.s->workers[W.widx].pid = MyProcPid;
	W.s->workers[W.widx].pgprocno = GetNumberFromPGProc(MyProc);
	LWLockRelease(zb_shared->lock);
	before_shmem_exit(worker_detach, 0);
	zb_worker_state(ZB_STATE_STARTING);

	W.cfg_cxt = AllocSetContextCreate(TopMemoryContext, "zerobus worker config",
									  ALLOCSET_DEFAULT_SIZES);
	W.stream_cxt = AllocSetContextCreate(TopMemoryContext, "zerobus worker stream",
										 ALLOCSET_DEFAULT_SIZES);
	CacheRegisterSyscacheCallback(FOREIGNSERVEROID, worker_catalog_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(USERMAPPINGOID, worker_catalog_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, worker_catalog_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, worker_catalog_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, worker_catalog_changed, (Datum) 0);
	CacheRegisterRelcacheCallback(worker_relation_changed, (Datum) 0);

	/*
	 * An ERROR anywhere below lands here: recover (zb_worker_recover), count
	 * the batch's rows as failed (they are back in the source), forget the
	 * ZeroBus stream and the configuration (the error may come from a
	 * changed or dropped object), and back off before trying again.
	 */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		char		msg[ZB_ERRLEN];
		int			sqlerrcode = zb_worker_recover(msg, sizeof(msg));

		zb_metrics_worker_in_batch(W.s, W.widx, false);
		zb_metrics_error(W.s, msg);
		zb_batch_forget(&W);
		worker_unload();
		zb_worker_backoff(zb_sqlstate_retryable(sqlerrcode));
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
		if (!zb_worker_wanted())
			break;
		if (W.retry_at > GetCurrentTimestamp())
		{
			/*
			 * While backing off: look for fixed options, and let the source
			 * keep what it publishes current (the queue's depth grows while
			 * the service is away), once a second.
			 */
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Min(Max(zb_ms_until(W.retry_at), 1), 1000), PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			StartTransactionCommand();	/* processes catalog invalidations */
			if (W.loaded && W.source->waiting)
				W.source->waiting(&W);
			CommitTransactionCommand();
			/* a grant, a new object, changed options: look again now */
			if (worker_session_stale() ||
				(catalog_changed && W.state == ZB_STATE_ERROR))
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
				case LOAD_WAIT:
					/* until the rescan: the launcher wakes us if we must go */
					(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
									 100, PG_WAIT_EXTENSION);
					ResetLatch(MyLatch);
					continue;
				case LOAD_PROBLEM:
					worker_problem(W.problem);
					continue;
			}
		}
		if (W.paused)
		{
			/*
			 * The table has columns no record can carry: say so, and load
			 * again after a poll interval (or a wake-up), which looks at the
			 * columns again.
			 */
			zb_worker_close_stream();
			zb_worker_state(ZB_STATE_PAUSED);
			if (zb_metrics_error_once(W.s, W.paused_reason, true))
				elog(LOG, "zerobus_fdw stream \"%s\": %s", W.name, W.paused_reason);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 zb_poll_interval_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			if (GetCurrentTimestamp() - W.loaded_at >= zb_poll_interval_ms * 1000L)
				W.loaded = false;
			continue;
		}
		if (W.stream == NULL && !worker_connect())
			continue;

		W.woken = false;
		zb_metrics_worker_in_batch(W.s, W.widx, true);
		n = zb_batch_run(&W);
		zb_metrics_worker_in_batch(W.s, W.widx, false);
		/* a background worker flushes its own statistics (queue depth) */
		pgstat_report_stat(n == 0);
		if (n == 0 && !W.woken && W.retry_at <= GetCurrentTimestamp())
			worker_idle(zb_poll_interval_ms);
	}
done:
	zb_worker_close_stream();
	if (W.source->leave)
		W.source->leave(&W);
	proc_exit(0);
}
