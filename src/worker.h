/*-------------------------------------------------------------------------
 * worker.h
 *	  Background workers: launcher, scan workers, stream workers.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_WORKER_H
#define ZB_WORKER_H

extern int	zb_poll_interval_ms;

extern void zb_register_launcher(void);

extern PGDLLEXPORT void zerobus_launcher_main(Datum arg);
extern PGDLLEXPORT void zerobus_scan_main(Datum arg);
extern PGDLLEXPORT void zerobus_stream_main(Datum arg);

#endif							/* ZB_WORKER_H */
