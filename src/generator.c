/*-------------------------------------------------------------------------
 * generator.c
 *	  The built-in traffic generator: SQL functions and the background
 *	  worker that fills a stream's queue at a steady rate (docs/DESIGN.md,
 *	  "Generator").
 *
 * A generator is a row of zerobus.generators (profile, rate, on/off),
 * brought into shared memory like streams are.  The launcher keeps one
 * generator worker per enabled generator of a running stream.  The worker
 * inserts rows of its profile into the stream's queue with one prepared
 * INSERT … SELECT per tick, as the stream's owner, through the same path as
 * any application's rows (triggers and defaults of the queue run as that
 * role, restricted, with the search_path pinned: runas.c).  A missing or
 * forbidden queue is a state, not a crash: the worker backs off and says
 * why in generator_status().last_error and the stream's zb_metrics.
 * Pacing keeps a running account: after t seconds
 * at rate r it has made r·t rows, so the long-run rate is exact while the
 * machine keeps up; when it cannot, the backlog is dropped after a second,
 * and the achieved rate is the machine's limit.
 *
 * Throttle 1-100 (the seed dashboards' speed slider) maps to
 *   rate = 10 × 10^(4 (throttle − 1) / 99) rows/s:
 * 1 → 10, 25 → 93, 50 → 955, 75 → 9,770, 100 → 100,000.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"
#include "utils/wait_event.h"

#include "net.h"
#include "metrics.h"
#include "profiles.h"
#include "runas.h"
#include "shmem.h"
#include "stream.h"
#include "worker.h"

#define GEN_TICK_MS 10			/* at most this often a transaction */
#define GEN_MAX_BATCH 20000		/* rows per transaction */
#define GEN_DEFAULT_THROTTLE 50

static double
throttle_rate(int throttle)
{
	return 10.0 * pow(10.0, 4.0 * (throttle - 1) / 99.0);
}

static void
gen_check_throttle(int throttle)
{
	if (throttle < 1 || throttle > 100)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("throttle must be between 1 and 100, not %d", throttle),
				 errhint("1 is 10 rows/s, 50 about 1,000, 100 is 100,000 rows/s.")));
}

static const ZbProfile *
gen_require_profile(const char *name)
{
	const ZbProfile *p = zb_profile(name);

	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown generator profile \"%s\"", name),
				 errhint("Profiles: %s.", zb_profile_names())));
	return p;
}

/* The queue must have every column the profile fills. */
static void
gen_check_queue(Oid queue, const ZbProfile *p)
{
	List	   *cols;
	ListCell   *lc;
	char	   *copy = pstrdup(p->insert_columns);

	if (!SplitIdentifierString(copy, ',', &cols))
		elog(ERROR, "bad column list of profile %s", p->name);
	foreach(lc, cols)
	{
		const char *col = (const char *) lfirst(lc);

		if (get_attnum(queue, col) == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("queue table \"%s\" has no column \"%s\", which profile \"%s\" fills",
							get_rel_name(queue), col, p->name),
					 errhint("Create a queue for the profile with zerobus.generator_create_queue('%s', 'name'), or add the columns: %s.",
							 p->name, p->columns)));
	}
}

/* The current generator row of a stream: profile (NULL if none). */
static char *
gen_current_profile(const char *stream)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(stream)};
	MemoryContext caller = CurrentMemoryContext;
	char	   *profile = NULL;

	SPI_connect();
	(void) zb_spi_as(zb_catalog_owner(),
					 "SELECT profile FROM zerobus.generators WHERE stream OPERATOR(pg_catalog.=) $1",
					 1, types, values, NULL, true, 1);
	if (SPI_processed == 1)
		profile = MemoryContextStrdup(caller, SPI_getvalue(SPI_tuptable->vals[0],
														   SPI_tuptable->tupdesc, 1));
	SPI_finish();
	return profile;
}

PG_FUNCTION_INFO_V1(zerobus_generator_start);

Datum
zerobus_generator_start(PG_FUNCTION_ARGS)
{
	char	   *stream;
	char	   *profile;
	const ZbProfile *p;
	ZbStreamRow row;
	double		rate;
	int			throttle = 0;
	Oid			types[4] = {TEXTOID, TEXTOID, INT4OID, FLOAT8OID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	(void) zb_shmem();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream must not be NULL")));
	stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	zb_stream_require(stream, false, &row);

	profile = PG_ARGISNULL(1) ? gen_current_profile(stream) : text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (profile == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream \"%s\" has no generator yet: name a profile", stream),
				 errhint("Profiles: %s.", zb_profile_names())));
	p = gen_require_profile(profile);
	gen_check_queue(row.queue, p);

	if (!PG_ARGISNULL(2))
	{
		rate = PG_GETARG_FLOAT8(2);
		if (!(rate > 0 && rate <= 10000000))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("rate must be between 0 and 10,000,000 rows/s")));
	}
	else
	{
		throttle = PG_ARGISNULL(3) ? GEN_DEFAULT_THROTTLE : PG_GETARG_INT32(3);
		gen_check_throttle(throttle);
		rate = throttle_rate(throttle);
	}

	values[0] = CStringGetTextDatum(stream);
	values[1] = CStringGetTextDatum(p->name);
	values[2] = Int32GetDatum(throttle);
	if (throttle == 0)
		nulls[2] = 'n';
	values[3] = Float8GetDatum(rate);
	zb_catalog_write("INSERT INTO zerobus.generators (stream, profile, throttle, rate, enabled, started_at)"
					 " VALUES ($1, $2, $3, $4, true, pg_catalog.now())"
					 " ON CONFLICT (stream) DO UPDATE SET profile = EXCLUDED.profile,"
					 " throttle = EXCLUDED.throttle, rate = EXCLUDED.rate, enabled = true,"
					 " started_at = CASE WHEN zerobus.generators.enabled"
					 "                   THEN zerobus.generators.started_at ELSE pg_catalog.now() END",
					 4, types, values, nulls);
	if (!row.enabled)
		ereport(NOTICE,
				(errmsg("stream \"%s\" is stopped: its generator runs once the stream is started", stream)));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(zerobus_generator_throttle);

Datum
zerobus_generator_throttle(PG_FUNCTION_ARGS)
{
	char	   *stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int			throttle = PG_GETARG_INT32(1);
	ZbStreamRow row;
	Oid			types[3] = {TEXTOID, INT4OID, FLOAT8OID};
	Datum		values[3];
	double		rate;

	(void) zb_shmem();
	gen_check_throttle(throttle);
	zb_stream_require(stream, false, &row);
	if (gen_current_profile(stream) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" has no generator", stream),
				 errhint("SELECT zerobus.generator_start('%s', profile => 'transactions');", stream)));
	rate = throttle_rate(throttle);
	values[0] = CStringGetTextDatum(stream);
	values[1] = Int32GetDatum(throttle);
	values[2] = Float8GetDatum(rate);
	zb_catalog_write("UPDATE zerobus.generators SET throttle = $2, rate = $3"
					 " WHERE stream OPERATOR(pg_catalog.=) $1",
					 3, types, values, NULL);
	PG_RETURN_FLOAT8(rate);
}

PG_FUNCTION_INFO_V1(zerobus_generator_stop);

Datum
zerobus_generator_stop(PG_FUNCTION_ARGS)
{
	char	   *stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ZbStreamRow row;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(stream)};

	(void) zb_shmem();
	zb_stream_require(stream, false, &row);
	if (gen_current_profile(stream) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" has no generator", stream)));
	zb_catalog_write("UPDATE zerobus.generators SET enabled = false"
					 " WHERE stream OPERATOR(pg_catalog.=) $1",
					 1, types, values, NULL);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(zerobus_generator_status);

Datum
zerobus_generator_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ZbShared   *sh = zb_shmem();
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < sh->max_streams; i++)
	{
		ZbStreamSlot *s = &sh->streams[i];
		Datum		values[9];
		bool		nulls[9] = {0};
		char		name[ZB_NAMELEN];
		char		profile[32];
		char		last_error[ZB_ERRLEN];
		bool		running;
		int			throttle;
		double		rate;
		double		actual;
		uint64		generated;
		TimestampTz started;

		LWLockAcquire(sh->lock, LW_SHARED);
		if (!s->in_use || s->dboid != MyDatabaseId || s->gen_profile[0] == '\0')
		{
			LWLockRelease(sh->lock);
			continue;
		}
		strlcpy(name, s->name, sizeof(name));
		strlcpy(profile, s->gen_profile, sizeof(profile));
		running = s->gen_enabled && s->enabled && s->gen_pid != 0;
		throttle = s->gen_throttle;
		rate = s->gen_rate;
		started = s->gen_started_at;
		LWLockAcquire(s->detail_lock, LW_SHARED);
		strlcpy(last_error, s->gen_last_error, sizeof(last_error));
		LWLockRelease(s->detail_lock);
		SpinLockAcquire(&s->mutex);
		actual = s->gen_rate_ema;
		generated = s->c.rows_generated;
		SpinLockRelease(&s->mutex);
		LWLockRelease(sh->lock);

		values[0] = CStringGetTextDatum(name);
		values[1] = CStringGetTextDatum(profile);
		values[2] = BoolGetDatum(running);
		values[3] = Int32GetDatum(throttle);
		nulls[3] = throttle == 0;
		values[4] = Float8GetDatum(rate);
		values[5] = Float8GetDatum(actual);
		values[6] = Int64GetDatum((int64) generated);
		values[7] = TimestampTzGetDatum(started);
		nulls[7] = started == 0;
		values[8] = CStringGetTextDatum(last_error);
		nulls[8] = last_error[0] == '\0';
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(zerobus_generator_profiles);

Datum
zerobus_generator_profiles(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const ZbProfile *p;

	InitMaterializedSRF(fcinfo, 0);
	for (p = zb_profiles; p->name; p++)
	{
		Datum		values[4];
		bool		nulls[4] = {0};

		values[0] = CStringGetTextDatum(p->name);
		values[1] = CStringGetTextDatum(p->description);
		values[2] = CStringGetTextDatum(p->columns);
		values[3] = CStringGetTextDatum(p->delta_columns);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(zerobus_generator_create_queue);

/*
 * CREATE TABLE <queue> (<the profile's columns>), as the caller.  The name
 * is resolved with the caller's search_path (the table goes where the
 * caller would create it); the column types and defaults are bound to
 * pg_catalog's whatever that search_path holds (runas.c).
 */
Datum
zerobus_generator_create_queue(PG_FUNCTION_ARGS)
{
	const ZbProfile *p = gen_require_profile(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	text	   *qtext = PG_GETARG_TEXT_PP(1);
	List	   *names = textToQualifiedNameList(qtext);
	RangeVar   *rv = makeRangeVarFromNameList(names);
	Oid			nsp = RangeVarGetCreationNamespace(rv);
	char	   *qualified = quote_qualified_identifier(get_namespace_name(nsp), rv->relname);
	Oid			relid;

	SPI_connect();
	(void) zb_spi_as(InvalidOid, psprintf("CREATE TABLE %s (%s)", qualified, p->columns),
					 0, NULL, NULL, NULL, false, 0);
	SPI_finish();
	CommandCounterIncrement();
	relid = get_relname_relid(rv->relname, nsp);
	PG_RETURN_OID(relid);
}

/* ======================================================================
 * The generator worker
 * ====================================================================== */

#define GEN_BACKOFF_FIRST_MS 100
#define GEN_BACKOFF_MAX_MS 30000
#define GEN_BACKOFF_FATAL_MS 60000	/* after a non-retryable problem */

static ZbStreamSlot *gen_slot;
static WorkerExtra gen_extra;
static SPIPlanPtr gen_plan;		/* the profile's INSERT, or NULL */
static SPIPlanPtr gen_old_plan;	/* one an ERROR left behind, to free */
static ZbStreamRow gen_row;		/* name and queue, for the checks of each tick */
static int	gen_failures;
static bool gen_fatal;			/* the last problem needs someone to act */
static TimestampTz gen_retry_at;
static volatile bool gen_catalog_changed = false;

static void
gen_detach(int code, Datum arg)
{
	LWLockAcquire(zb_shared->lock, LW_EXCLUSIVE);
	if (gen_slot->gen_pid == MyProcPid)
		gen_slot->gen_pid = 0;
	LWLockRelease(zb_shared->lock);
}

static void
gen_syscache_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	gen_catalog_changed = true;
}

static void
gen_relation_changed(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == gen_row.queue)
		gen_catalog_changed = true;
}

/* Why no rows are made: in generator_status() and (once per message) zb_metrics. */
static void
gen_problem(const char *message, bool retryable)
{
	long		ms;

	if (zb_metrics_generator_error(gen_slot, message))
	{
		char	   *full = psprintf("generator: %s", message);

		elog(LOG, "zerobus_fdw stream \"%s\": %s", gen_extra.name, full);
		zb_metrics_error(gen_slot, full);
		pfree(full);
	}
	gen_failures++;
	gen_fatal = !retryable;
	if (retryable)
		ms = Min(GEN_BACKOFF_FIRST_MS << Min(gen_failures - 1, 10), GEN_BACKOFF_MAX_MS);
	else
		ms = GEN_BACKOFF_FATAL_MS;
	gen_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
}

static void
gen_ok(void)
{
	if (gen_failures == 0)
		return;
	gen_failures = 0;
	gen_fatal = false;
	(void) zb_metrics_generator_error(gen_slot, "");
}

/*
 * Prepare the profile's INSERT into the stream's queue, as the queue's
 * owner.  Returns false when the stream is gone (the worker leaves); a
 * problem with the queue is reported and leaves gen_plan NULL.
 */
static bool
gen_prepare(void)
{
	MemoryContext caller = CurrentMemoryContext;
	const ZbProfile *p;
	char	   *problem = NULL;
	char		profile[32];
	ZbStreamRow row;
	Oid			owner;
	Oid			argtypes[1] = {INT4OID};
	bool		found;

	LWLockAcquire(zb_shared->lock, LW_SHARED);
	strlcpy(profile, gen_slot->gen_profile, sizeof(profile));
	LWLockRelease(zb_shared->lock);

	StartTransactionCommand();
	if (gen_old_plan)
	{
		SPI_freeplan(gen_old_plan);
		gen_old_plan = NULL;
	}
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	found = zb_stream_lookup(gen_extra.name, false, &row);
	if (found)
	{
		gen_row.queue = row.queue;
		problem = zb_stream_problem(&row, ACL_INSERT, false, &owner);
		p = zb_profile(profile);
		if (problem == NULL && p == NULL)
			problem = psprintf("unknown generator profile \"%s\"", profile);
		if (problem == NULL)
		{
			ZbRunAs		ra;

			zb_runas_begin(&ra, owner);
			gen_plan = SPI_prepare(psprintf("INSERT INTO %s (%s) SELECT %s FROM"
											" (SELECT pg_catalog.random() AS r1, pg_catalog.random() AS r2,"
											" pg_catalog.random() AS r3, pg_catalog.random() AS r4,"
											" pg_catalog.random() AS r5, pg_catalog.random() AS r6,"
											" pg_catalog.random() AS r7, pg_catalog.random() AS r8,"
											" 1 OPERATOR(pg_catalog.+) pg_catalog.floor(pg_catalog.random()"
											" OPERATOR(pg_catalog.*) 500)::pg_catalog.int4 AS d"
											" FROM pg_catalog.generate_series(1, $1)) s",
											quote_qualified_identifier(get_namespace_name(get_rel_namespace(row.queue)),
																	   get_rel_name(row.queue)),
											p->insert_columns, p->select_list),
								   1, argtypes);
			zb_runas_end(&ra);
			if (gen_plan == NULL)
				elog(ERROR, "could not prepare the generator's INSERT: %s",
					 SPI_result_code_string(SPI_result));
			SPI_keepplan(gen_plan);
		}
		else
			problem = MemoryContextStrdup(caller, problem);
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	if (problem)
	{
		gen_problem(problem, false);
		pfree(problem);
	}
	return found;
}

/*
 * One tick's rows: INSERT … SELECT as the queue's owner.  A problem found
 * by the checks drops the plan (the next attempt prepares it again).
 */
static bool
gen_insert(int n)
{
	MemoryContext caller = CurrentMemoryContext;
	Datum		values[1] = {Int32GetDatum(n)};
	char	   *problem;
	Oid			owner;
	ZbRunAs		ra;

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	problem = zb_stream_problem(&gen_row, ACL_INSERT, false, &owner);
	if (problem == NULL)
	{
		zb_runas_begin(&ra, owner);
		if (SPI_execute_plan(gen_plan, values, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "the generator's INSERT failed");
		zb_runas_end(&ra);
	}
	else
		problem = MemoryContextStrdup(caller, problem);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	if (problem)
	{
		gen_problem(problem, false);
		pfree(problem);
		gen_old_plan = gen_plan;
		gen_plan = NULL;
		return false;
	}
	return true;
}

PGDLLEXPORT void
zerobus_generator_main(Datum arg)
{
	int			slot = DatumGetInt32(arg);
	sigjmp_buf	local_sigjmp_buf;
	bool		ok;

	/* the pacing account; static, so that it survives the longjmp of an ERROR */
	static double rate = 0;
	static TimestampTz base_at = 0;
	static uint64 base_rows = 0;
	static uint64 generated = 0;

	memcpy(&gen_extra, MyBgworkerEntry->bgw_extra, sizeof(gen_extra));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (slot < 0 || slot >= zb_shared->max_streams)
		proc_exit(0);
	gen_slot = &zb_shared->streams[slot];
	LWLockAcquire(zb_shared->lock, LW_EXCLUSIVE);
	ok = gen_slot->in_use && gen_slot->generation == gen_extra.generation &&
		gen_slot->gen_generation == gen_extra.gen_generation && gen_slot->dboid == gen_extra.dboid &&
		strcmp(gen_slot->name, gen_extra.name) == 0;
	if (ok)
		gen_slot->gen_pid = MyProcPid;
	LWLockRelease(zb_shared->lock);
	if (!ok)
		proc_exit(0);
	before_shmem_exit(gen_detach, 0);

	/* without a user, like the stream workers: rows are made as the queue's owner */
	BackgroundWorkerInitializeConnectionByOid(gen_extra.dboid, InvalidOid, 0);
	pgstat_report_appname(psprintf("zerobus_fdw generator %s", gen_extra.name));
	gen_row.name = gen_extra.name;
	CacheRegisterSyscacheCallback(NAMESPACEOID, gen_syscache_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, gen_syscache_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, gen_syscache_changed, (Datum) 0);
	CacheRegisterRelcacheCallback(gen_relation_changed, (Datum) 0);

	/* an ERROR lands here: recover, drop the plan, back off (worker.c) */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		char		msg[ZB_ERRLEN];
		int			sqlerrcode = zb_worker_recover(msg, sizeof(msg));

		/* the next gen_prepare() frees it, in a transaction */
		if (gen_plan)
			gen_old_plan = gen_plan;
		gen_plan = NULL;
		gen_problem(msg, zb_sqlstate_retryable(sqlerrcode));
		RESUME_INTERRUPTS();
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		double		want;
		TimestampTz now;
		int64		due;
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		LWLockAcquire(zb_shared->lock, LW_SHARED);
		ok = gen_slot->in_use && gen_slot->enabled && gen_slot->gen_enabled &&
			gen_slot->generation == gen_extra.generation &&
			gen_slot->gen_generation == gen_extra.gen_generation;
		want = gen_slot->gen_rate;
		LWLockRelease(zb_shared->lock);
		if (!ok)
			break;

		now = GetCurrentTimestamp();
		if (gen_retry_at > now)
		{
			/* backing off; a changed grant, role or queue is looked at again at once */
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Min(Max(zb_ms_until(gen_retry_at), 1), 1000), PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			StartTransactionCommand();	/* processes catalog invalidations */
			CommitTransactionCommand();
			if (gen_catalog_changed && gen_fatal)
				gen_retry_at = 0;
			gen_catalog_changed = false;
			rate = 0;			/* the account restarts after a pause */
			continue;
		}
		if (gen_plan == NULL)
		{
			gen_catalog_changed = false;
			if (!gen_prepare())
				break;			/* the stream is gone */
			if (gen_plan == NULL)
				continue;
			rate = 0;
		}

		if (want != rate)
		{
			/* a new rate counts from now */
			rate = want;
			base_at = now;
			base_rows = generated;
		}
		due = (int64) floor(rate * (now - base_at) / (double) USECS_PER_SEC) - (int64) (generated - base_rows);
		if (due > rate + GEN_MAX_BATCH)
		{
			/* more than a second behind: the machine cannot keep up; drop the backlog */
			base_at = now;
			base_rows = generated;
			due = Min((int64) ceil(rate * GEN_TICK_MS / 1000.0), GEN_MAX_BATCH);
		}
		if (due > 0)
		{
			int			n = (int) Min(due, GEN_MAX_BATCH);

			if (!gen_insert(n))
				continue;
			gen_ok();
			generated += n;
			SpinLockAcquire(&gen_slot->mutex);
			gen_slot->c.rows_generated += n;
			SpinLockRelease(&gen_slot->mutex);
			pgstat_report_stat(false);
			if (due > n)
				continue;		/* catching up */
		}
		/* until the next row is due, between one tick and 100 ms */
		sleep_ms = (long) ceil(1000.0 / rate);
		sleep_ms = Max(GEN_TICK_MS, Min(sleep_ms, 100));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	proc_exit(0);
}
