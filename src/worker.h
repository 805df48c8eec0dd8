/*-------------------------------------------------------------------------
 * worker.h
 *	  Background workers: launcher, scan workers, stream workers.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_WORKER_H
#define ZB_WORKER_H

#include "access/transam.h"
#include "executor/spi.h"
#include "storage/itemptr.h"

#include "buf.h"
#include "oauth.h"
#include "option.h"
#include "record.h"
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

/* ---------- the stream worker (worker.c, batch.c) ---------- */

typedef struct WorkerRow
{
	uint32		off;			/* record bytes in recbuf */
	uint32		len;
	ItemPointerData tid;		/* the queue row, to dead-letter it */
	TimestampTz committed_at;	/* 0 if unknown */
} WorkerRow;

typedef struct WorkerRequest
{
	int			first;			/* rows[first .. first + nrows) */
	int			nrows;
	size_t		bytes;
	int64		offset;			/* offset on the current stream, -1 if not sent there */
	TimestampTz sent_at;
	bool		acked;
} WorkerRequest;

typedef struct DeadRow
{
	ItemPointerData tid;
	char	   *error;
} DeadRow;

typedef struct ZbWorker
{
	/* identity */
	int			slot;
	int			widx;
	uint32		generation;
	Oid			dboid;
	char		name[ZB_NAMELEN];
	ZbStreamSlot *s;

	/* configuration, reloaded when the stream or its queue changes */
	bool		loaded;
	MemoryContext cfg_cxt;		/* everything below points into it */
	Oid			owner;			/* the queue's owner: queue work runs as this role */
	char	   *problem;		/* why the queue cannot be worked on, or NULL */
	ZbStreamRow row;
	ZbServerConfig *server;
	ZbCredentials cred;
	ZbRecordSchema *schema;
	bool		json;
	SPIPlanPtr	plan;

	/* the ZeroBus stream */
	MemoryContext stream_cxt;
	ZbStream   *stream;
	bool		ever_connected;
	int			failures;
	TimestampTz retry_at;

	/* the current batch (one transaction) */
	MemoryContext batch_cxt;	/* reset after every batch */
	MemoryContext keep_cxt;		/* the batch's big arrays, kept across batches */
	ZbBuf		recbuf;
	WorkerRow  *rows;
	int			nrows;
	int			maxrows;
	WorkerRequest *reqs;
	int			nreqs;
	int			maxreqs;
	int			open_req;		/* being filled, or -1 */
	DeadRow    *dead;
	int			ndead;
	int			maxdead;
	bool		probing;		/* a refusal came: send one request at a time */
	int64		inflight;		/* rows sent and not yet acked, as published */
	TransactionId last_xmin;
	TimestampTz last_commit_ts;
	ItemPointerData first_tid;	/* of the row the current claim returned first */
	ItemPointerData last_tid;	/* and last */
	Oid			key_relid;		/* the queue and its storage, for dedup keys */
	Oid			key_relfilenode;
	FullTransactionId next_fxid;	/* recent; the epoch of xmins in dedup keys */

	/* where the next pass over the queue starts */
	BlockNumber cursor;
	ItemPointerData resume;		/* in chunk 'cursor': the first row not yet claimed
								 * when the last batch ran out of room, or invalid */
	bool		woken;			/* a latch wake-up arrived since the pass began */
	bool		paused;			/* the queue's columns cannot be sent */
	uint32		paused_fingerprint; /* of those columns */
	char	   *paused_reason;
	TimestampTz last_full_at;	/* of the last pass over the whole share */
	BlockNumber known_chunks;	/* chunks of the table at that pass */
	TimestampTz *hot_until;		/* per chunk: it held rows lately */
	BlockNumber nhot;
	TimestampTz depth_at;		/* when the queue depth was last published */
} ZbWorker;

extern void zb_worker_state(ZbState state);
extern void zb_worker_error(const char *msg);
extern void zb_worker_backoff(bool retryable);
extern void zb_worker_close_stream(void);
extern bool zb_worker_reconnect(void);
extern void zb_worker_publish_inflight(int64 inflight);
extern void zb_worker_publish_depth(int64 depth);
extern int	zb_batch_run(ZbWorker *worker);
extern void zb_batch_reset(ZbWorker *worker);

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
