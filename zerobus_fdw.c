/*-------------------------------------------------------------------------
 * zerobus_fdw.c
 *	  Module entry: _PG_init, GUCs, shared memory, the launcher, and the
 *	  utility hook that keeps stream workers out of DROP DATABASE's way.
 *
 * zerobus_fdw streams rows from queue tables to Databricks through ZeroBus
 * Ingest, and reads Delta tables back through the SQL Statement Execution
 * API.  The modules under src/ each own one job; see the top of each file.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "commands/dbcommands.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/ipc.h"
#include "tcop/utility.h"
#include "utils/guc.h"

#include "compat.h"
#include "cdc.h"
#include "metrics.h"
#include "net.h"
#include "shmem.h"
#include "stream.h"
#include "worker.h"

ZB_MODULE_MAGIC;

void		_PG_init(void);

static ProcessUtility_hook_type prev_utility_hook = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
zb_shmem_request_hook(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	zb_shmem_request();
	zb_cdc_shmem_request();
}

static void
zb_shmem_startup_hook(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	zb_shmem_startup();
	zb_cdc_shmem_startup();
}

/* The database a statement needs to itself (no other sessions), if any. */
static Oid
zb_exclusive_database(Node *stmt)
{
	const char *dbname = NULL;

	if (IsA(stmt, DropdbStmt))
		dbname = ((DropdbStmt *) stmt)->dbname;
	else if (IsA(stmt, RenameStmt) && ((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
		dbname = ((RenameStmt *) stmt)->subname;
	else if (IsA(stmt, AlterDatabaseStmt))
	{
		ListCell   *lc;

		foreach(lc, ((AlterDatabaseStmt *) stmt)->options)
			if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
				dbname = ((AlterDatabaseStmt *) stmt)->dbname;
	}
	return dbname ? get_database_oid(dbname, true) : InvalidOid;
}

/* DROP EXTENSION zerobus_fdw: this database's streams must be forgotten. */
static bool
zb_drops_extension(Node *stmt)
{
	ListCell   *lc;

	if (!IsA(stmt, DropStmt) || ((DropStmt *) stmt)->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, ((DropStmt *) stmt)->objects)
		if (strcmp(strVal(lfirst(lc)), "zerobus_fdw") == 0)
			return true;
	return false;
}

/*
 * DROP DATABASE (and RENAME, SET TABLESPACE) fail while other sessions are
 * connected.  Release the database's streams first, so their workers leave
 * and are not restarted; re-read them afterwards in case the database is
 * still there.
 */
static void
zb_utility_hook(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				ProcessUtilityContext context, ParamListInfo params,
				QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	volatile Oid dboid = InvalidOid;

	if (zb_shared != NULL)
	{
		dboid = zb_exclusive_database(pstmt->utilityStmt);
		if (!OidIsValid(dboid) && zb_drops_extension(pstmt->utilityStmt))
		{
			zb_rescan_at_commit();
			/* and the replication slots of its change-capture streams */
			zb_cdc_drop_database_slots_at_commit();
		}
	}
	if (OidIsValid(dboid))
		zb_release_database(dboid);

	PG_TRY();
	{
		if (prev_utility_hook)
			prev_utility_hook(pstmt, queryString, readOnlyTree, context, params, queryEnv,
							  dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
									queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		if (OidIsValid(dboid))
			zb_request_rescan(dboid);
	}
	PG_END_TRY();
}

void
_PG_init(void)
{
	DefineCustomIntVariable("zerobus.max_streams",
							"Maximum number of streams in the cluster.",
							"Each takes a slot of shared memory for its state and metrics.",
							&zb_max_streams, 32, 1, 1024,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("zerobus.poll_interval",
							"How often an idle stream worker looks at its queue without a wake-up.",
							"Commits that insert into a queue wake its workers at once; this is the fallback.",
							&zb_poll_interval_ms, 1000, 10, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomBoolVariable("zerobus.metrics",
							 "Collect stream metrics (counters, latency histograms, commit timestamps).",
							 "Off only to measure what collecting them costs; zb_metrics then shows zeros.",
							 &zb_collect_metrics, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	MarkGUCPrefixReserved("zerobus");

	/* libcurl's global state is set up once, before any thread could exist */
	zb_curl_global_init();

	/* change capture: commit-time wake-ups and slot drops (every backend) */
	zb_cdc_init();

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = zb_shmem_request_hook;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = zb_shmem_startup_hook;
	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = zb_utility_hook;
	zb_register_launcher();
}
