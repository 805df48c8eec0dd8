/*-------------------------------------------------------------------------
 * launcher.c
 *	  The launcher, and the per-database scan workers that register each
 *	  database's streams in shared memory.
 *
 * Launcher (one per cluster, from shared_preload_libraries, connected to no
 * database): runs a short scan worker in each database whose streams must be
 * (re)read from zerobus.streams; keeps the wanted number of stream workers
 * running for each enabled stream, restarting crashed ones with backoff and
 * asking workers of stopped, altered or dropped streams to leave; samples
 * throughput once a second (metrics.c).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "cdc.h"
#include "compat.h"
#include "metrics.h"
#include "runas.h"
#include "shmem.h"
#include "stream.h"
#include "worker.h"

#define STOP_GRACE_MS 60000		/* then the launcher terminates a worker */
#define WORKER_RESTART_MAX_MS 60000


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

/* Start a worker; its handle is kept across rounds of the loop. */
static bool
launcher_start(BackgroundWorker *bgw, BackgroundWorkerHandle **handle)
{
	MemoryContext old;
	bool		started;

	bgw->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw->bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw->bgw_restart_time = BGW_NEVER_RESTART;
	bgw->bgw_notify_pid = MyProcPid;
	strlcpy(bgw->bgw_library_name, "zerobus_fdw", BGW_MAXLEN);
	old = MemoryContextSwitchTo(TopMemoryContext);
	started = RegisterDynamicBackgroundWorker(bgw, handle);
	MemoryContextSwitchTo(old);
	return started;
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
 * 'generation' identifies the configuration it must run with;
 * 'connecting' says that it is opening a ZeroBus stream outside a batch.
 */
static void
launcher_keep(LauncherWorker *lw, bool wanted, uint32 generation, int slot,
			  bool connecting,
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
				LWLockAcquire(zb_shared->lock, LW_SHARED);
				zb_wake_stream(slot);
				LWLockRelease(zb_shared->lock);
			}
			if (now - lw->stop_requested_at > STOP_GRACE_MS * 1000L || connecting)
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
		bool		connecting[ZB_MAX_STREAM_WORKERS];
		char		name[BGW_MAXLEN];
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
		SpinLockAcquire(&s->mutex);
		for (w = 0; w < ZB_MAX_STREAM_WORKERS; w++)
			connecting[w] = s->workers[w].state == ZB_STATE_CONNECTING && !s->workers[w].in_batch;
		SpinLockRelease(&s->mutex);
		LWLockRelease(zb_shared->lock);

		for (w = 0; w < ZB_MAX_STREAM_WORKERS; w++)
		{
			snprintf(name, sizeof(name), "zerobus_fdw stream %s worker %d", extra.name, w);
			launcher_keep(LW(i, w), in_use && enabled && w < nworkers, extra.generation, i,
						  connecting[w], "zerobus_stream_main", name,
						  "zerobus_fdw stream", i * ZB_MAX_STREAM_WORKERS + w, &extra, &next_ms);
		}
		snprintf(name, sizeof(name), "zerobus_fdw generator %s", extra.name);
		launcher_keep(&launcher_generators[i], in_use && enabled && gen_enabled,
					  extra.generation ^ (extra.gen_generation << 16), i, false,
					  "zerobus_generator_main", name,
					  "zerobus_fdw generator", i, &extra, &next_ms);
	}
	return next_ms;
}


PGDLLEXPORT void
zerobus_launcher_main(Datum arg)
{
	TimestampTz last_sample = 0;
	MemoryContext round_cxt;

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
	LWLockAcquire(zb_shared->lock, LW_EXCLUSIVE);
	zb_shared->launcher_pid = MyProcPid;
	zb_shared->launcher_procno = GetNumberFromPGProc(MyProc);
	zb_shared->rescan_all = true;
	LWLockRelease(zb_shared->lock);
	before_shmem_exit(launcher_detach, 0);

	/*
	 * The loop runs for the life of the cluster: what a round allocates is
	 * freed at the start of the next (worker handles live in
	 * TopMemoryContext, see launcher_start).
	 */
	round_cxt = AllocSetContextCreate(TopMemoryContext, "zerobus_fdw launcher round",
									  ALLOCSET_DEFAULT_SIZES);

	ereport(LOG, (errmsg("zerobus_fdw launcher started")));
	for (;;)
	{
		long		wait_ms;

		MemoryContextReset(round_cxt);
		MemoryContextSwitchTo(round_cxt);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		launcher_rescan();
		/* a rescan's commit left TopMemoryContext current */
		MemoryContextSwitchTo(round_cxt);
		wait_ms = launcher_reconcile();
		if (GetCurrentTimestamp() - last_sample >= USECS_PER_SEC)
		{
			zb_metrics_sample();
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
	char		slot_name[NAMEDATALEN]; /* change capture; "" for a queue */
	bool		gen_enabled;
	char		gen_profile[32];
	double		gen_rate;
	int			gen_throttle;
	TimestampTz gen_started_at;
	uint32		fingerprint;	/* zb_stream_fingerprint() of the stream's settings */
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
		/*
		 * The database's search_path applies to us too: pinned, and all
		 * qualified.  The settings are read as zb_stream_lookup() reads them
		 * (ZB_STREAM_COLUMNS), so that their fingerprint is the one a worker
		 * computes from the row it loads.
		 */
		(void) zb_spi_as(InvalidOid,
						 "SELECT s.*, COALESCE(g.enabled, false), COALESCE(g.profile, ''),"
						 " COALESCE(g.rate, 0::pg_catalog.float8), COALESCE(g.throttle, 0),"
						 " g.started_at"
						 " FROM (SELECT name, " ZB_STREAM_COLUMNS " FROM zerobus.stream_settings) s"
						 " LEFT JOIN zerobus.generators g ON g.stream OPERATOR(pg_catalog.=) s.name",
						 0, NULL, NULL, NULL, true, 0);
		nrows = (int) SPI_processed;
		rows = MemoryContextAllocZero(TopMemoryContext, sizeof(ScanRow) * Max(nrows, 1));
		for (i = 0; i < nrows; i++)
		{
			HeapTuple	t = SPI_tuptable->vals[i];
			TupleDesc	td = SPI_tuptable->tupdesc;
			int			g = 2 + ZB_STREAM_NCOLUMNS; /* the generator's first column */
			ZbStreamRow row;
			bool		isnull;

			strlcpy(rows[i].name, SPI_getvalue(t, td, 1), ZB_NAMELEN);
			zb_stream_row_decode(t, td, 2, rows[i].name, &row);
			rows[i].queue = row.queue;
			rows[i].workers = row.workers;
			rows[i].max_inflight = row.max_inflight;
			rows[i].enabled = row.enabled;
			if (row.slot_name)
				strlcpy(rows[i].slot_name, row.slot_name, NAMEDATALEN);
			rows[i].fingerprint = zb_stream_fingerprint(&row);
			rows[i].gen_enabled = DatumGetBool(SPI_getbinval(t, td, g, &isnull));
			strlcpy(rows[i].gen_profile, SPI_getvalue(t, td, g + 1), sizeof(rows[i].gen_profile));
			rows[i].gen_rate = DatumGetFloat8(SPI_getbinval(t, td, g + 2, &isnull));
			rows[i].gen_throttle = DatumGetInt32(SPI_getbinval(t, td, g + 3, &isnull));
			rows[i].gen_started_at = DatumGetTimestampTz(SPI_getbinval(t, td, g + 4, &isnull));
			if (isnull)
				rows[i].gen_started_at = 0;
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
			zb_metrics_init(s);
		}
		else
			s = &zb_shared->streams[slot];
		/*
		 * Any change restarts the workers: they run with the settings of
		 * their generation (they check the fingerprint when they load).
		 */
		if (s->enabled != rows[i].enabled || s->fingerprint != rows[i].fingerprint)
			s->generation++;
		s->fingerprint = rows[i].fingerprint;
		s->queue_relid = rows[i].queue;
		s->nworkers = rows[i].workers;
		s->max_inflight = rows[i].max_inflight;
		s->enabled = rows[i].enabled;
		strlcpy(s->slot_name, rows[i].slot_name, NAMEDATALEN);
		if (s->gen_enabled != rows[i].gen_enabled ||
			strcmp(s->gen_profile, rows[i].gen_profile) != 0)
			s->gen_generation++;
		s->gen_enabled = rows[i].gen_enabled;
		strlcpy(s->gen_profile, rows[i].gen_profile, sizeof(s->gen_profile));
		s->gen_rate = rows[i].gen_rate;
		s->gen_throttle = rows[i].gen_throttle;
		s->gen_started_at = rows[i].gen_started_at;
	}
	LWLockRelease(zb_shared->lock);

	/*
	 * Change capture: the slots of this database's streams that are gone
	 * (dropped while their worker held the slot, a resync's old slot, DROP
	 * EXTENSION), once nobody holds them.
	 */
	(void) zb_cdc_sweep();
	CommitTransactionCommand();	/* releases the scan lock */
	zb_wake_launcher();
	proc_exit(0);
}
