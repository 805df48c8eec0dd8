/*-------------------------------------------------------------------------
 * fdw.h
 *	  What the history FDW's files share: the layout of a ForeignScan's
 *	  fdw_private (planned in fdw.c, executed in fdwscan.c), and the
 *	  callbacks each file installs in the FdwRoutine.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_FDW_H
#define ZB_FDW_H

#include "foreign/fdwapi.h"

/* fdw_private of a ForeignScan */
enum ZbScanPrivate
{
	ZbScanSql,
	ZbScanRetrievedAttrs,
	ZbScanOutKinds,
	ZbScanRelationName,
	ZbScanTableOid				/* the foreign table (options are read at execution) */
};

extern int64 zb_strtoint64(const char *s);
extern void zb_fdw_scan_routines(FdwRoutine *routine);
extern void zb_fdw_import_routines(FdwRoutine *routine);

#endif							/* ZB_FDW_H */
