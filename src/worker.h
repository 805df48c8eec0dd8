/*-------------------------------------------------------------------------
 * worker.h
 *	  Background workers: launcher, scan workers, stream workers.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_WORKER_H
#define ZB_WORKER_H

#include "shmem.h"

/* What a stream or generator worker is told at start, in bgw_extra. */
typedef struct WorkerExtra
{
	uint32		generation;
	uint32		gen_generation;
	Oid			dboid;
	char		name[ZB_NAMELEN];
} WorkerExtra;

extern int	zb_poll_interval_ms;
extern bool zb_collect_metrics;

extern void zb_register_launcher(void);
extern int	zb_worker_recover(char *msg, size_t len);
extern bool zb_sqlstate_retryable(int sqlerrcode);

extern PGDLLEXPORT void zerobus_launcher_main(Datum arg);
extern PGDLLEXPORT void zerobus_scan_main(Datum arg);
extern PGDLLEXPORT void zerobus_stream_main(Datum arg);
extern PGDLLEXPORT void zerobus_generator_main(Datum arg);

#endif							/* ZB_WORKER_H */
