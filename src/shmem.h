/*-------------------------------------------------------------------------
 * shmem.h
 *	  Shared memory: registered streams, their workers, and their metrics.
 *
 * Slots hold only values (OIDs, names, counters, pgprocno), never a
 * process-local pointer or descriptor.  Every field names the lock that
 * guards it, the way autovacuum's WorkerInfoData does.  There are four:
 *
 *	ZbShared->lock (LWLock): the slot table: which stream a slot holds and
 *		its registration (the settings the launcher and the views act on,
 *		written by scan workers), who runs it (pids and latches), the
 *		launcher's identity and the rescan requests.
 *	ZbStreamSlot->detail_lock (LWLock, one per stream): what is too large to
 *		copy under a spinlock: the latency histograms and the error texts.
 *	ZbStreamSlot->mutex (spinlock, one per stream): the counters and what
 *		each worker reports of itself (state, in a batch, queue depth); only
 *		scalars, copied in a few instructions.
 *	ZbShared->history_lock (LWLock): every stream's per-second history.
 *
 * Order: ZbShared->lock, then detail_lock, then mutex (a spinlock is always
 * taken last and never held across anything that can fail or wait);
 * history_lock is never held with another.  A worker reads the fields it
 * alone writes from its own copy, not from shared memory.  See
 * docs/DESIGN.md, "Shared memory".
 *-------------------------------------------------------------------------
 */
#ifndef ZB_SHMEM_H
#define ZB_SHMEM_H

#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#define ZB_NAMELEN 64
#define ZB_MAX_STREAM_WORKERS 16
#define ZB_HIST_BUCKETS 128		/* 4 per power of two, in microseconds */
#define ZB_ERRLEN 256
#define ZB_MAX_RESCANS 64
#define ZB_HISTORY_LEN 1024		/* per-second samples: 17 minutes */

typedef enum ZbState
{
	ZB_STATE_STOPPED = 0,
	ZB_STATE_STARTING,			/* worker starting, stream not yet open */
	ZB_STATE_CONNECTING,		/* opening a ZeroBus stream */
	ZB_STATE_IDLE,				/* stream open, queue empty */
	ZB_STATE_STREAMING,			/* rows in flight */
	ZB_STATE_BACKOFF,			/* retrying after a retryable error */
	ZB_STATE_ERROR,				/* a non-retryable error: retrying slowly */
	ZB_STATE_PAUSED				/* the queue's columns cannot be sent */
} ZbState;

typedef struct ZbHistogram
{
	uint64		buckets[ZB_HIST_BUCKETS];
	uint64		count;
	uint64		sum_us;
	uint64		min_us;
	uint64		max_us;
} ZbHistogram;

typedef struct ZbWorkerSlot
{
	/* ZbShared->lock; written by the worker itself when it starts and exits */
	pid_t		pid;			/* 0 when not running */
	int			pgprocno;		/* for SetLatch; -1 when not running */

	/* the stream's mutex; written by the worker itself (reset by a scan) */
	int			state;			/* ZbState: what it last reported, kept after it exits */
	bool		in_batch;		/* a batch's transaction is open */
	int64		queue_depth;	/* rows waiting in its share of the queue; 0 once it exits */
	TimestampTz oldest_unacked; /* change capture: the commit time of the oldest
								 * change sent and not acknowledged; 0 if none */
} ZbWorkerSlot;

typedef struct ZbCounters
{
	uint64		rows_sent;
	uint64		rows_acked;
	uint64		rows_failed;	/* sent, then rolled back to the queue */
	uint64		rows_dead;		/* moved to zerobus.dead_letters */
	uint64		bytes_sent;
	uint64		bytes_acked;
	uint64		requests_sent;
	uint64		requests_acked;
	uint64		batches;		/* committed transactions */
	uint64		streams_opened;
	uint64		reconnects;
	uint64		errors;
	/* sent on a stream and not yet acknowledged: gauges, kept by a reset */
	int64		inflight_rows;
	int64		inflight_bytes;
	int64		inflight_requests;
	uint64		rows_generated; /* by the built-in generator */
} ZbCounters;

typedef struct ZbStreamSlot
{
	/*
	 * ZbShared->lock: identity and registration, written by scan workers
	 * (in_use and generation also by the launcher and zb_release_database).
	 * A copy of the catalog's settings that processes other than the
	 * stream's workers act on (docs/DESIGN.md, "Who owns a setting"): the
	 * launcher (enabled, nworkers), committing backends (queue_relid), the
	 * views (nworkers, max_inflight); the workers read the catalog.
	 */
	bool		in_use;
	Oid			dboid;
	char		name[ZB_NAMELEN];
	Oid			queue_relid;
	int			nworkers;
	int			max_inflight;	/* rows per worker transaction */
	bool		enabled;
	char		slot_name[NAMEDATALEN]; /* change capture: its replication slot; "" for a queue */
	uint32		fingerprint;	/* zb_stream_fingerprint() of all the settings */
	uint32		generation;		/* bumped when enabled or the fingerprint changes */
	ZbWorkerSlot workers[ZB_MAX_STREAM_WORKERS];	/* see ZbWorkerSlot */

	/* ZbShared->lock: the built-in generator, written by scan workers */
	bool		gen_enabled;
	char		gen_profile[32];
	double		gen_rate;		/* rows/s; changes apply without a restart */
	int			gen_throttle;	/* 1-100, or 0 when set by rate */
	uint32		gen_generation; /* bumped when the profile or on/off changes */
	TimestampTz gen_started_at;
	pid_t		gen_pid;		/* written by the generator itself */

	/* detail_lock: the histograms and the error texts */
	LWLock	   *detail_lock;	/* set at startup */
	ZbHistogram ack_latency;	/* request sent -> durable ack */
	ZbHistogram e2e_latency;	/* row committed -> durable ack (track_commit_timestamp) */
	TimestampTz last_error_at;
	char		last_error[ZB_ERRLEN];
	char		gen_last_error[ZB_ERRLEN];	/* why the generator makes no rows, or "" */

	/* mutex: the counters, and workers[].state, in_batch, queue_depth, oldest_unacked */
	slock_t		mutex;
	ZbCounters	c;
	double		rate_ema;		/* acked rows/s, exponential moving average */
	double		gen_rate_ema;	/* generated rows/s, the same way */
	TimestampTz started_at;		/* of the counters: set when registered or reset */
	TimestampTz last_ack_at;
} ZbStreamSlot;

/* One second of one stream, as the launcher sampled it. */
typedef struct ZbSample
{
	TimestampTz at;				/* the end of the period it covers */
	float4		rows_per_sec;	/* acknowledged */
	float4		generated_per_sec;
	float4		bytes_per_sec;
	float4		ack_p50_ms;
	float4		ack_p95_ms;
	float4		ack_p99_ms;
	float4		e2e_p50_ms;
	float4		e2e_p99_ms;
	float4		queue_depth;
	float4		in_flight;
	float4		dead_per_sec;
	uint32		errors;			/* in that second */
	uint32		reconnects;
} ZbSample;

/* A stream's per-second samples: history_lock; written by the launcher. */
typedef struct ZbHistory
{
	int			next;			/* where the next sample goes */
	int			count;
	ZbSample	samples[ZB_HISTORY_LEN];
} ZbHistory;

typedef struct ZbShared
{
	/* set at startup, constant afterwards */
	LWLock	   *lock;
	LWLock	   *history_lock;
	ZbHistory  *history;		/* [max_streams], after the slots; history_lock */
	int			max_streams;

	/* lock */
	pid_t		launcher_pid;
	int			launcher_procno;
	/* databases whose streams must be re-read from their catalog */
	int			nrescans;
	Oid			rescans[ZB_MAX_RESCANS];
	bool		rescan_all;

	ZbStreamSlot streams[FLEXIBLE_ARRAY_MEMBER];
} ZbShared;

extern int	zb_max_streams;
extern ZbShared *zb_shared;

extern void zb_shmem_request(void);
extern void zb_shmem_startup(void);
extern ZbShared *zb_shmem(void);

extern int	zb_slot_find(Oid dboid, const char *name);
extern void zb_request_rescan(Oid dboid);
extern void zb_wake_launcher(void);
extern void zb_wake_queue(Oid dboid, Oid queue_relid);
extern void zb_wake_stream(int slot);
extern void zb_release_database(Oid dboid);


#endif							/* ZB_SHMEM_H */
