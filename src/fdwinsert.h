/*-------------------------------------------------------------------------
 * fdwinsert.h
 *	  INSERT into history foreign tables through ZeroBus.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_FDWINSERT_H
#define ZB_FDWINSERT_H

#include "foreign/fdwapi.h"

extern void zb_fdw_insert_routines(FdwRoutine *routine);

#endif							/* ZB_FDWINSERT_H */
