/*-------------------------------------------------------------------------
 * worker.h
 *	  What the background workers share: what the launcher tells a stream
 *	  or generator worker (bgw_extra), a stream worker's state as batch.c
 *	  and queue.c see it, and the workers' entry points (launcher.c,
 *	  worker.c, generator.c).
 *-------------------------------------------------------------------------
 */
#ifndef ZB_WORKER_H
#define ZB_WORKER_H

#include "buf.h"
#include "record.h"
#include "session.h"
#include "shmem.h"
#include "stream.h"
#include "zerobus.h"

/* What a stream or generator worker is told at start, in bgw_extra. */
typedef struct WorkerExtra
{
	uint32		generation;
	uint32		gen_generation;
	Oid			dboid;
	char		name[ZB_NAMELEN];
} WorkerExtra;

/* ---------- the stream worker (worker.c; used by batch.c and queue.c) ---------- */

/*
 * A stream worker's state (one per process: W in worker.c).  The batch
 * engine (batch.c) and the row sources (queue.c) read the settings and
 * use the ZeroBus stream through it.
 */
typedef struct ZbWorker
{
	/* identity */
	int			slot;
	int			widx;
	uint32		generation;
	Oid			dboid;
	char		name[ZB_NAMELEN];
	ZbStreamSlot *s;
	int			state;			/* ZbState, as last published */
	const struct ZbSource *source;	/* where rows come from (batch.h) */

	/* configuration, reloaded when the stream or its table changes */
	bool		loaded;
	TimestampTz loaded_at;
	MemoryContext cfg_cxt;		/* everything below points into it */
	Oid			owner;			/* the table's owner: the source works as this role */
	char	   *problem;		/* why the table cannot be worked on, or NULL */
	ZbStreamRow row;
	ZbSession  *session;		/* the owner's on the stream's server, held by cfg_cxt */
	ZbRecordSchema *schema;		/* built by the source's load() */
	bool		json;
	bool		paused;			/* the table's columns cannot be sent */
	char	   *paused_reason;

	/* the ZeroBus stream */
	MemoryContext stream_cxt;
	ZbStream   *stream;
	bool		ever_connected;
	int			failures;
	TimestampTz retry_at;
	bool		woken;			/* a latch wake-up arrived during the batch */
} ZbWorker;

extern bool zb_worker_wanted(void);
extern void zb_worker_state(ZbState state);
extern void zb_worker_error(const char *msg);
extern void zb_worker_backoff(bool retryable);
extern void zb_worker_close_stream(void);
extern bool zb_worker_reconnect(void);
extern void zb_worker_publish_depth(int64 depth);
extern void zb_worker_token_refused(void);

extern int	zb_poll_interval_ms;

extern void zb_register_launcher(void);
extern int	zb_worker_recover(char *msg, size_t len);
extern bool zb_sqlstate_retryable(int sqlerrcode);

extern PGDLLEXPORT void zerobus_launcher_main(Datum arg);
extern PGDLLEXPORT void zerobus_scan_main(Datum arg);
extern PGDLLEXPORT void zerobus_stream_main(Datum arg);
extern PGDLLEXPORT void zerobus_generator_main(Datum arg);

#endif							/* ZB_WORKER_H */
