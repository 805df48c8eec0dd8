/*-------------------------------------------------------------------------
 * zerobus_fdw.c
 *	  Module entry: _PG_init and the foreign-data wrapper handler.
 *
 * zerobus_fdw streams rows from queue tables to Databricks through ZeroBus
 * Ingest, and reads Delta tables back through the SQL Statement Execution
 * API.  The modules under src/ each own one job; see the top of each file.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "foreign/fdwapi.h"

#include "net.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	/* libcurl's global state must be set up before any thread could exist */
	zb_curl_global_init();
}

static void
zb_scan_not_ready(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("reading zerobus_fdw foreign tables is not supported in this version")));
}

static void
zb_get_rel_size(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	zb_scan_not_ready();
}

PG_FUNCTION_INFO_V1(zerobus_fdw_handler);

Datum
zerobus_fdw_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *routine = makeNode(FdwRoutine);

	routine->GetForeignRelSize = zb_get_rel_size;
	PG_RETURN_POINTER(routine);
}
