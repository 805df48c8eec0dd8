/*-------------------------------------------------------------------------
 * fdw.c
 *	  The foreign-data wrapper handler: reading Delta tables through the
 *	  SQL Statement Execution API.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "foreign/fdwapi.h"

static void
zb_get_rel_size(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("reading zerobus_fdw foreign tables is not supported in this version")));
}

PG_FUNCTION_INFO_V1(zerobus_fdw_handler);

Datum
zerobus_fdw_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *routine = makeNode(FdwRoutine);

	routine->GetForeignRelSize = zb_get_rel_size;
	PG_RETURN_POINTER(routine);
}
