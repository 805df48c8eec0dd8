/*-------------------------------------------------------------------------
 * zerobus_fdw.c
 *	  Module entry: _PG_init.
 *
 * zerobus_fdw streams rows from queue tables to Databricks through ZeroBus
 * Ingest, and reads Delta tables back through the SQL Statement Execution
 * API.  The modules under src/ each own one job; see the top of each file.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "net.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	/* libcurl's global state must be set up before any thread could exist */
	zb_curl_global_init();
}
