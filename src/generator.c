/*-------------------------------------------------------------------------
 * generator.c
 *	  The built-in traffic generator (SPEC section 6): SQL functions and the
 *	  background worker that fills a stream's queue at a steady rate.
 *
 * A generator is a row of zerobus.generators (profile, rate, on/off),
 * brought into shared memory like streams are.  The launcher keeps one
 * generator worker per enabled generator of a running stream.  The worker
 * inserts rows of its profile into the stream's queue with one prepared
 * INSERT … SELECT per tick, as the stream's owner, through the same path as
 * any application's rows.  Pacing keeps a running account: after t seconds
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
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"
#include "utils/wait_event.h"

#include "profiles.h"
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

/* The stream must exist and be changeable by the caller. */
static void
gen_require_stream(const char *name, ZbStreamRow *row)
{
	if (!zb_stream_lookup(name, false, row))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" does not exist", name)));
	if (!has_privs_of_role(GetUserId(), row->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be a member of role \"%s\" to drive stream \"%s\"",
						GetUserNameFromId(row->owner, false), name)));
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

/* Write the generator's row as the catalog's owner. */
static void
gen_write(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls)
{
	Oid			save_userid;
	int			save_sec;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(zb_catalog_owner(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	SPI_connect();
	if (SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0) < 0)
		elog(ERROR, "could not write zerobus.generators");
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec);
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
	if (SPI_execute_with_args("SELECT profile FROM zerobus.generators WHERE stream = $1",
							  1, types, values, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
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
	gen_require_stream(stream, &row);

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
	gen_write("INSERT INTO zerobus.generators (stream, profile, throttle, rate, enabled, started_at)"
			  " VALUES ($1, $2, $3, $4, true, now())"
			  " ON CONFLICT (stream) DO UPDATE SET profile = EXCLUDED.profile,"
			  " throttle = EXCLUDED.throttle, rate = EXCLUDED.rate, enabled = true,"
			  " started_at = CASE WHEN zerobus.generators.enabled"
			  "                   THEN zerobus.generators.started_at ELSE now() END",
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
	gen_require_stream(stream, &row);
	if (gen_current_profile(stream) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" has no generator", stream),
				 errhint("SELECT zerobus.generator_start('%s', profile => 'transactions');", stream)));
	rate = throttle_rate(throttle);
	values[0] = CStringGetTextDatum(stream);
	values[1] = Int32GetDatum(throttle);
	values[2] = Float8GetDatum(rate);
	gen_write("UPDATE zerobus.generators SET throttle = $2, rate = $3 WHERE stream = $1",
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
	gen_require_stream(stream, &row);
	if (gen_current_profile(stream) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" has no generator", stream)));
	gen_write("UPDATE zerobus.generators SET enabled = false WHERE stream = $1",
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
		Datum		values[8];
		bool		nulls[8] = {0};
		char		name[ZB_NAMELEN];
		char		profile[32];
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

/* CREATE TABLE <queue> (<the profile's columns>), as the caller. */
Datum
zerobus_generator_create_queue(PG_FUNCTION_ARGS)
{
	const ZbProfile *p = gen_require_profile(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	text	   *qtext = PG_GETARG_TEXT_PP(1);
	List	   *names = textToQualifiedNameList(qtext);
	RangeVar   *rv = makeRangeVarFromNameList(names);
	char	   *qualified = rv->schemaname
		? quote_qualified_identifier(rv->schemaname, rv->relname)
		: pstrdup(quote_identifier(rv->relname));
	Oid			relid;

	SPI_connect();
	if (SPI_execute(psprintf("CREATE TABLE %s (%s)", qualified, p->columns), false, 0) < 0)
		elog(ERROR, "could not create the queue table");
	SPI_finish();
	CommandCounterIncrement();
	relid = RangeVarGetRelid(rv, NoLock, false);
	PG_RETURN_OID(relid);
}

/* ======================================================================
 * The generator worker
 * ====================================================================== */

static ZbStreamSlot *gen_slot;

static void
gen_detach(int code, Datum arg)
{
	LWLockAcquire(zb_shared->lock, LW_EXCLUSIVE);
	if (gen_slot->gen_pid == MyProcPid)
		gen_slot->gen_pid = 0;
	LWLockRelease(zb_shared->lock);
}

PGDLLEXPORT void
zerobus_generator_main(Datum arg)
{
	int			slot = DatumGetInt32(arg);
	WorkerExtra extra;
	Oid			owner;
	bool		ok;
	ZbStreamRow row;
	const ZbProfile *p;
	SPIPlanPtr	plan;
	Oid			argtypes[1] = {INT4OID};
	double		rate = 0;
	TimestampTz base_at = 0;
	uint64		base_rows = 0;
	uint64		generated = 0;

	memcpy(&extra, MyBgworkerEntry->bgw_extra, sizeof(extra));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (slot < 0 || slot >= zb_shared->max_streams)
		proc_exit(0);
	gen_slot = &zb_shared->streams[slot];
	LWLockAcquire(zb_shared->lock, LW_EXCLUSIVE);
	ok = gen_slot->in_use && gen_slot->generation == extra.generation &&
		gen_slot->gen_generation == extra.gen_generation && gen_slot->dboid == extra.dboid &&
		strcmp(gen_slot->name, extra.name) == 0;
	owner = gen_slot->owner;
	if (ok)
		gen_slot->gen_pid = MyProcPid;
	LWLockRelease(zb_shared->lock);
	if (!ok)
		proc_exit(0);
	before_shmem_exit(gen_detach, 0);

	BackgroundWorkerInitializeConnectionByOid(extra.dboid, owner, 0);
	pgstat_report_appname(psprintf("zerobus_fdw generator %s", extra.name));

	/* the prepared INSERT … SELECT of the profile */
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (!zb_stream_lookup(extra.name, false, &row))
		proc_exit(0);
	p = zb_profile(gen_slot->gen_profile);
	if (p == NULL)
		elog(ERROR, "unknown generator profile \"%s\"", gen_slot->gen_profile);
	plan = SPI_prepare(psprintf("INSERT INTO %s (%s) SELECT %s FROM"
								" (SELECT random() AS r1, random() AS r2, random() AS r3,"
								" random() AS r4, random() AS r5, random() AS r6, random() AS r7,"
								" random() AS r8, 1 + floor(random() * 500)::int AS d"
								" FROM generate_series(1, $1)) s",
								quote_qualified_identifier(get_namespace_name(get_rel_namespace(row.queue)),
														   get_rel_name(row.queue)),
								p->insert_columns, p->select_list),
					   1, argtypes);
	if (plan == NULL)
		elog(ERROR, "could not prepare the generator's INSERT: %s",
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

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
			gen_slot->generation == extra.generation &&
			gen_slot->gen_generation == extra.gen_generation;
		want = gen_slot->gen_rate;
		LWLockRelease(zb_shared->lock);
		if (!ok)
			break;

		now = GetCurrentTimestamp();
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
			Datum		values[1];
			int			n = (int) Min(due, GEN_MAX_BATCH);

			values[0] = Int32GetDatum(n);
			StartTransactionCommand();
			SPI_connect();
			PushActiveSnapshot(GetTransactionSnapshot());
			if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "the generator's INSERT failed");
			PopActiveSnapshot();
			SPI_finish();
			CommitTransactionCommand();
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
