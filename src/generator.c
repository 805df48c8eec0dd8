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
 * A profile with a lifecycle (orders) can instead run it in an ordinary
 * table named by generator_start(…, lifecycle_table => …): each tick makes
 * its n changes there, in place of queue rows (the stream's queue gets
 * none), as the stream's owner like the queue's rows.  First at most a
 * share of the finished rows that are due are deleted, then at most a
 * share of the due rows are moved on a status, oldest first, and the rest
 * of the n changes are new rows; the shares are running accounts (so that
 * one change per tick still gets the mix right) with room above the mix the
 * lifecycle needs, so that due rows never pile up at a steady rate and new
 * rows keep coming while a backlog (after a rate cut) is worked off.  The
 * statuses and how long each lasts are the profile's (profiles.c).  Change
 * capture of that table (docs/DESIGN.md) then streams realistic INSERTs,
 * UPDATEs and DELETEs.
 *
 * Throttle 1-100 (the seed dashboards' speed slider) maps to
 *   rate = 10 × 10^(4 (throttle − 1) / 99) rows/s:
 * 1 → 10, 25 → 93, 50 → 955, 75 → 9,770, 100 → 100,000.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_class.h"
#include "catalog/pg_namespace.h"
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
#include "utils/regproc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"
#include "utils/wait_event.h"

#include "compat.h"
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

/*
 * A lifecycle's long-run shares of the changes: at most this many deletes
 * and status moves; the rest are new rows.  A lifecycle of one INSERT, about
 * 2.8 UPDATEs and one DELETE per row needs 21% and 58%.
 */
#define GEN_PURGE_SHARE 0.30
#define GEN_ADVANCE_SHARE 0.65

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

/* "orders", for hints: the profiles that have a lifecycle */
static char *
gen_lifecycle_profile_names(void)
{
	StringInfoData s;
	const ZbProfile *p;

	initStringInfo(&s);
	for (p = zb_profiles; p->name; p++)
		if (p->lifecycle)
			appendStringInfo(&s, "%s%s", s.len ? ", " : "", p->name);
	return s.data;
}

static const ZbLifecycle *
gen_require_lifecycle(const ZbProfile *p)
{
	if (p->lifecycle == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("profile \"%s\" has no lifecycle table", p->name),
				 errhint("Profiles with one: %s.", gen_lifecycle_profile_names())));
	return p->lifecycle;
}

static char *
gen_relname(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/*
 * What keeps the stream's owner from running a lifecycle in this table, as
 * a message with the fix; NULL if nothing does.  Syscache lookups only:
 * checked before every tick, like the queue.
 */
static char *
gen_lifecycle_problem(Oid relid, Oid owner, const char *stream)
{
	static const AclMode needs[] = {ACL_SELECT, ACL_INSERT, ACL_UPDATE, ACL_DELETE};
	static const char *const names[] = {"SELECT", "INSERT", "UPDATE", "DELETE"};
	char	   *rolename;
	char	   *relname;
	Oid			nsp;
	int			i;

	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
		return psprintf("the lifecycle table (OID %u) no longer exists: SELECT zerobus.generator_start('%s', 'orders', lifecycle_table => '<table>');",
						relid, stream);
	rolename = GetUserNameFromId(owner, true);
	if (rolename == NULL)
		return psprintf("the owner (OID %u) of stream \"%s\" no longer exists", owner, stream);
	nsp = get_rel_namespace(relid);
	relname = gen_relname(relid);
	if (object_aclcheck(NamespaceRelationId, nsp, owner, ACL_USAGE) != ACLCHECK_OK)
		return psprintf("role %s, the owner of stream \"%s\", has no USAGE on the schema of its lifecycle table %s: GRANT USAGE ON SCHEMA %s TO %s;",
						quote_identifier(rolename), stream, relname,
						quote_identifier(get_namespace_name(nsp)), quote_identifier(rolename));
	for (i = 0; i < lengthof(needs); i++)
		if (pg_class_aclcheck(relid, owner, needs[i]) != ACLCHECK_OK)
			return psprintf("role %s, the owner of stream \"%s\", has no %s privilege on its lifecycle table %s: GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %s;",
							quote_identifier(rolename), stream, names[i], relname, relname,
							quote_identifier(rolename));
	return NULL;
}

/*
 * generator_start's checks of a lifecycle table: an ordinary (or
 * partitioned) table that another process can see, with every column the
 * lifecycle names, its key filled by the table, not the stream's queue, and
 * the stream's owner allowed to change it.
 */
static void
gen_check_lifecycle_table(Oid relid, const ZbLifecycle *lc, const ZbStreamRow *row)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Form_pg_class cls;
	char	   *relname;
	char	   *problem;
	char	   *copy;
	List	   *cols;
	ListCell   *cell;
	AttrNumber	key;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	cls = (Form_pg_class) GETSTRUCT(tup);
	relname = gen_relname(relid);
	if (cls->relkind != RELKIND_RELATION && cls->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", relname),
				 errdetail("A lifecycle runs in an ordinary or partitioned table.")));
	if (cls->relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("lifecycle table \"%s\" is a temporary table", NameStr(cls->relname)),
				 errdetail("The generator runs in a background worker, which cannot see another session's temporary tables.")));
	ReleaseSysCache(tup);
	if (relid == row->queue)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the lifecycle table cannot be the stream's queue table"),
				 errhint("Create a table for it: SELECT zerobus.generator_create_table('orders', 'orders');")));

	copy = pstrdup(lc->required_columns);
	if (!SplitIdentifierString(copy, ',', &cols))
		elog(ERROR, "bad column list of a lifecycle");
	foreach(cell, cols)
	{
		const char *col = (const char *) lfirst(cell);

		if (get_attnum(relid, col) == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("lifecycle table \"%s\" has no column \"%s\"", relname, col),
					 errhint("Create a table for the lifecycle with zerobus.generator_create_table('orders', 'name'), or add the columns: %s.",
							 lc->columns)));
	}
	key = get_attnum(relid, lc->key_column);
	tup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid), Int16GetDatum(key));
	if (HeapTupleIsValid(tup))
	{
		Form_pg_attribute att = (Form_pg_attribute) GETSTRUCT(tup);
		bool		filled = att->attidentity != '\0' || att->atthasdef;

		ReleaseSysCache(tup);
		if (!filled)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_COLUMN_DEFINITION),
					 errmsg("column \"%s\" of lifecycle table \"%s\" has no default",
							lc->key_column, relname),
					 errdetail("The generator leaves the key of a new row to the table."),
					 errhint("ALTER TABLE %s ALTER COLUMN %s ADD GENERATED ALWAYS AS IDENTITY;",
							 relname, quote_identifier(lc->key_column))));
	}
	if (!OidIsValid(row->owner))
		return;					/* the queue is gone: only a superuser gets here */
	problem = gen_lifecycle_problem(relid, row->owner, row->name);
	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the owner of stream \"%s\" cannot change lifecycle table \"%s\"",
						row->name, relname),
				 errdetail("The generator changes the table as the stream's owner, %s.",
						   GetUserNameFromId(row->owner, false)),
				 errhint("%s", problem)));
}

/*
 * The current generator row of a stream: profile (NULL if none) and, if
 * asked, its lifecycle table (InvalidOid if none).
 */
static char *
gen_current(const char *stream, Oid *lifecycle)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(stream)};
	MemoryContext caller = CurrentMemoryContext;
	char	   *profile = NULL;

	if (lifecycle)
		*lifecycle = InvalidOid;
	SPI_connect();
	(void) zb_spi_as(zb_catalog_owner(),
					 "SELECT profile, lifecycle_table::pg_catalog.oid FROM zerobus.generators"
					 " WHERE stream OPERATOR(pg_catalog.=) $1",
					 1, types, values, NULL, true, 1);
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d;

		profile = MemoryContextStrdup(caller, SPI_getvalue(SPI_tuptable->vals[0],
														   SPI_tuptable->tupdesc, 1));
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		if (lifecycle && !isnull)
			*lifecycle = DatumGetObjectId(d);
	}
	SPI_finish();
	return profile;
}

static char *
gen_current_profile(const char *stream)
{
	return gen_current(stream, NULL);
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
	Oid			lifecycle = InvalidOid;
	Oid			types[5] = {TEXTOID, TEXTOID, INT4OID, FLOAT8OID, OIDOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	(void) zb_shmem();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream must not be NULL")));
	stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	zb_stream_require(stream, false, &row);

	/* without a profile: as it was, lifecycle table included */
	if (PG_ARGISNULL(1))
		profile = gen_current(stream, &lifecycle);
	else
		profile = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (profile == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream \"%s\" has no generator yet: name a profile", stream),
				 errhint("Profiles: %s.", zb_profile_names())));
	p = gen_require_profile(profile);
	if (PG_NARGS() > 4 && !PG_ARGISNULL(4))
		lifecycle = PG_GETARG_OID(4);
	if (OidIsValid(lifecycle))
		gen_check_lifecycle_table(lifecycle, gen_require_lifecycle(p), &row);
	else
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
	values[4] = ObjectIdGetDatum(lifecycle);
	if (!OidIsValid(lifecycle))
		nulls[4] = 'n';
	zb_catalog_write("INSERT INTO zerobus.generators (stream, profile, throttle, rate, enabled, started_at,"
					 " lifecycle_table)"
					 " VALUES ($1, $2, $3, $4, true, pg_catalog.now(), $5::pg_catalog.regclass)"
					 " ON CONFLICT (stream) DO UPDATE SET profile = EXCLUDED.profile,"
					 " throttle = EXCLUDED.throttle, rate = EXCLUDED.rate, enabled = true,"
					 " started_at = CASE WHEN zerobus.generators.enabled"
					 "                   THEN zerobus.generators.started_at ELSE pg_catalog.now() END,"
					 " lifecycle_table = EXCLUDED.lifecycle_table",
					 5, types, values, nulls);
	/*
	 * A running generator reads its lifecycle table when it prepares: tell it
	 * at commit that the row changed (the launcher restarts it only for a new
	 * profile).
	 */
	CacheInvalidateRelcacheByRelid(zb_catalog_relid("generators", false));
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
		Datum		values[6];
		bool		nulls[6] = {0};

		values[0] = CStringGetTextDatum(p->name);
		values[1] = CStringGetTextDatum(p->description);
		values[2] = CStringGetTextDatum(p->columns);
		values[3] = CStringGetTextDatum(p->delta_columns);
		if (p->lifecycle)
		{
			values[4] = CStringGetTextDatum(p->lifecycle->columns);
			values[5] = CStringGetTextDatum(p->lifecycle->changes_delta_columns);
		}
		else
			nulls[4] = nulls[5] = true;
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

PG_FUNCTION_INFO_V1(zerobus_generator_create_table);

/*
 * CREATE TABLE <table> (<the profile's lifecycle columns>), its short
 * varlena columns kept inline (STORAGE PLAIN, in an ALTER TABLE: CREATE
 * TABLE takes STORAGE only from 16 on) and the index that finds its due
 * rows, as the caller, like generator_create_queue.
 */
Datum
zerobus_generator_create_table(PG_FUNCTION_ARGS)
{
	const ZbProfile *p = gen_require_profile(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	const ZbLifecycle *lc = gen_require_lifecycle(p);
	text	   *ttext = PG_GETARG_TEXT_PP(1);
	List	   *names = textToQualifiedNameList(ttext);
	RangeVar   *rv = makeRangeVarFromNameList(names);
	Oid			nsp = RangeVarGetCreationNamespace(rv);
	char	   *qualified = quote_qualified_identifier(get_namespace_name(nsp), rv->relname);
	Oid			relid;

	SPI_connect();
	(void) zb_spi_as(InvalidOid, psprintf("CREATE TABLE %s (%s)", qualified, lc->columns),
					 0, NULL, NULL, NULL, false, 0);
	if (lc->plain_columns)
	{
		StringInfoData alter;
		List	   *cols;
		ListCell   *cell;
		char	   *copy = pstrdup(lc->plain_columns);

		if (!SplitIdentifierString(copy, ',', &cols))
			elog(ERROR, "bad column list of a lifecycle");
		initStringInfo(&alter);
		appendStringInfo(&alter, "ALTER TABLE %s", qualified);
		foreach(cell, cols)
			appendStringInfo(&alter, "%s ALTER COLUMN %s SET STORAGE PLAIN",
							 cell == list_head(cols) ? "" : ",",
							 quote_identifier((const char *) lfirst(cell)));
		(void) zb_spi_as(InvalidOid, alter.data, 0, NULL, NULL, NULL, false, 0);
	}
	(void) zb_spi_as(InvalidOid, psprintf("CREATE INDEX ON %s (%s)", qualified, lc->index_columns),
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
static SPIPlanPtr gen_advance_plan; /* a lifecycle's UPDATE, or NULL */
static SPIPlanPtr gen_purge_plan;	/* a lifecycle's DELETE, or NULL */
static List *gen_old_plans = NIL;	/* plans an ERROR or a change left behind, to free */
static ZbStreamRow gen_row;		/* name and queue, for the checks of each tick */
static Oid	gen_lifecycle = InvalidOid; /* the lifecycle table, or none: the queue */
static Oid	gen_generators_relid = InvalidOid;
static double gen_purge_credit;	/* the lifecycle's running accounts */
static double gen_advance_credit;
static int	gen_failures;
static bool gen_fatal;			/* the last problem needs someone to act */
static TimestampTz gen_retry_at;
static volatile bool gen_catalog_changed = false;
static volatile bool gen_config_changed = false;

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
	if (!OidIsValid(relid) || relid == gen_row.queue || relid == gen_lifecycle)
		gen_catalog_changed = true;
	/* generator_start changed a generator's row: its lifecycle table may differ */
	if (!OidIsValid(relid) || relid == gen_generators_relid)
		gen_catalog_changed = gen_config_changed = true;
}

/* Forget the prepared statements; the next gen_prepare() frees them, in a transaction. */
static void
gen_drop_plans(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	if (gen_plan)
		gen_old_plans = lappend(gen_old_plans, gen_plan);
	if (gen_advance_plan)
		gen_old_plans = lappend(gen_old_plans, gen_advance_plan);
	if (gen_purge_plan)
		gen_old_plans = lappend(gen_old_plans, gen_purge_plan);
	MemoryContextSwitchTo(old);
	gen_plan = gen_advance_plan = gen_purge_plan = NULL;
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
 * What keeps this tick from running, with the owner to run it as; NULL if
 * nothing does.  The queue needs INSERT; with a lifecycle table the queue
 * is not written, and the table needs what gen_lifecycle_problem() checks.
 */
static char *
gen_tick_problem(Oid *owner)
{
	char	   *problem = NULL;

	if (!OidIsValid(gen_lifecycle))
		return zb_stream_problem(&gen_row, ACL_INSERT, false, owner);
	if (OidIsValid(gen_row.queue))
		problem = zb_stream_problem(&gen_row, 0, false, owner);
	else
	{
		/*
		 * A stream without a queue (a change-capture stream, typically of this
		 * very table) belongs to the role stored with it; what its delivery
		 * needs is not the generator's business.
		 */
		*owner = gen_row.owner;
	}
	if (problem == NULL)
		problem = gen_lifecycle_problem(gen_lifecycle, *owner, gen_extra.name);
	return problem;
}

/* Prepare one statement of the generator as the owner (inside zb_runas). */
static SPIPlanPtr
gen_prepare_one(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "could not prepare the generator's statement: %s",
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/*
 * Prepare the profile's statements, as the stream's owner: the INSERT into
 * the stream's queue, or the lifecycle's INSERT, UPDATE and DELETE of its
 * table.  Returns false when the stream is gone (the worker leaves); a
 * problem with the queue or the table is reported and leaves gen_plan NULL.
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
	ListCell   *cell;

	LWLockAcquire(zb_shared->lock, LW_SHARED);
	strlcpy(profile, gen_slot->gen_profile, sizeof(profile));
	LWLockRelease(zb_shared->lock);

	StartTransactionCommand();
	foreach(cell, gen_old_plans)
		SPI_freeplan((SPIPlanPtr) lfirst(cell));
	list_free(gen_old_plans);
	gen_old_plans = NIL;
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	gen_generators_relid = zb_catalog_relid("generators", true);
	found = zb_stream_lookup(gen_extra.name, false, &row);
	if (found)
	{
		gen_row.queue = row.queue;
		gen_row.owner = row.owner;
		(void) gen_current(gen_extra.name, &gen_lifecycle);
		p = zb_profile(profile);
		problem = gen_tick_problem(&owner);
		if (problem == NULL && p == NULL)
			problem = psprintf("unknown generator profile \"%s\"", profile);
		if (problem == NULL && OidIsValid(gen_lifecycle) && p->lifecycle == NULL)
			problem = psprintf("profile \"%s\" has no lifecycle table", profile);
		if (problem == NULL)
		{
			const ZbLifecycle *lc = OidIsValid(gen_lifecycle) ? p->lifecycle : NULL;
			char	   *target = gen_relname(OidIsValid(gen_lifecycle) ? gen_lifecycle : row.queue);
			ZbRunAs		ra;

			zb_runas_begin(&ra, owner);
			gen_plan = gen_prepare_one(psprintf("INSERT INTO %s (%s) SELECT %s FROM"
												" (SELECT pg_catalog.random() AS r1, pg_catalog.random() AS r2,"
												" pg_catalog.random() AS r3, pg_catalog.random() AS r4,"
												" pg_catalog.random() AS r5, pg_catalog.random() AS r6,"
												" pg_catalog.random() AS r7, pg_catalog.random() AS r8,"
												" 1 OPERATOR(pg_catalog.+) pg_catalog.floor(pg_catalog.random()"
												" OPERATOR(pg_catalog.*) 500)::pg_catalog.int4 AS d"
												" FROM pg_catalog.generate_series(1, $1)) s",
												target,
												lc ? lc->insert_columns : p->insert_columns,
												lc ? lc->select_list : p->select_list),
									   1, argtypes);
			if (lc)
			{
				gen_advance_plan = gen_prepare_one(psprintf(lc->advance_sql, target), 1, argtypes);
				gen_purge_plan = gen_prepare_one(psprintf(lc->purge_sql, target), 1, argtypes);
			}
			zb_runas_end(&ra);
			gen_purge_credit = gen_advance_credit = 0;
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

/* Run one of the generator's statements for at most n rows; the rows it changed. */
static uint64
gen_run(SPIPlanPtr plan, int n, int expect)
{
	Datum		values[1] = {Int32GetDatum(n)};

	if (SPI_execute_plan(plan, values, NULL, false, 0) != expect)
		elog(ERROR, "a statement of the generator failed");
	return SPI_processed;
}

/*
 * One tick's n rows, as the stream's owner: INSERT … SELECT into the queue;
 * or, with a lifecycle table, n changes there: due deletes and status moves
 * within their running shares, then new rows for the rest.  A problem found
 * by the checks drops the plans (the next attempt prepares them again).
 */
static bool
gen_insert(int n)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *problem;
	Oid			owner;
	ZbRunAs		ra;

	/* now() in the tick's statements and defaults: a worker sets it itself */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	problem = gen_tick_problem(&owner);
	if (problem == NULL)
	{
		int			left = n;

		zb_runas_begin(&ra, owner);
		if (gen_purge_plan)
		{
			int			take;

			/* at most one change over the share is owed, so that idle credit does not pile up */
			gen_purge_credit = Min(gen_purge_credit + GEN_PURGE_SHARE * n, GEN_PURGE_SHARE * n + 1);
			gen_advance_credit = Min(gen_advance_credit + GEN_ADVANCE_SHARE * n, GEN_ADVANCE_SHARE * n + 1);
			take = Min(left, (int) gen_purge_credit);
			if (take > 0)
			{
				int			done = (int) gen_run(gen_purge_plan, take, SPI_OK_DELETE);

				gen_purge_credit -= done;
				left -= done;
			}
			take = Min(left, (int) gen_advance_credit);
			if (take > 0)
			{
				int			done = (int) gen_run(gen_advance_plan, take, SPI_OK_UPDATE);

				gen_advance_credit -= done;
				left -= done;
			}
		}
		if (left > 0)
			(void) gen_run(gen_plan, left, SPI_OK_INSERT);
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
		gen_drop_plans();
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

		/* the next gen_prepare() frees them, in a transaction */
		gen_drop_plans();
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
		if (gen_config_changed)
		{
			gen_config_changed = false;
			gen_drop_plans();
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
