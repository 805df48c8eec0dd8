/*-------------------------------------------------------------------------
 * runas.h
 *	  Who runs the SQL that zerobus_fdw issues on its own, and how: the one
 *	  rule of docs/DESIGN.md, "Security model".
 *-------------------------------------------------------------------------
 */
#ifndef ZB_RUNAS_H
#define ZB_RUNAS_H

#include "executor/spi.h"

/* The pinned search_path: only pg_catalog objects can be found by name. */
#define ZB_SAFE_SEARCH_PATH "pg_catalog, pg_temp"

/* The saved identity of a section that runs as another role. */
typedef struct ZbRunAs
{
	Oid			save_userid;
	int			save_sec;
	int			nestlevel;
} ZbRunAs;

extern void zb_runas_begin(ZbRunAs *ra, Oid role);
extern void zb_runas_end(ZbRunAs *ra);

extern Oid	zb_catalog_owner(void);
extern Oid	zb_catalog_relid(const char *relname, bool missing_ok);
extern Oid	zb_queue_owner(Oid queue);

extern int	zb_spi_as(Oid role, const char *sql, int nargs, Oid *types, Datum *values,
					  const char *nulls, bool read_only, long count);
extern uint64 zb_catalog_write(const char *sql, int nargs, Oid *types, Datum *values,
							   const char *nulls);

#endif							/* ZB_RUNAS_H */
