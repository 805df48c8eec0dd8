/*-------------------------------------------------------------------------
 * batch.h
 *	  The batch engine of a stream worker, and the interface of the sources
 *	  that give it rows.
 *
 * A batch is what a worker delivers at once: the rows a source claims (at
 * most max_inflight), encoded into records, sent in requests of batch_rows
 * / batch_bytes, acknowledged as durable by ZeroBus (re-sent on a new
 * stream after a failure, bisected when the service refuses a record),
 * and then settled by the source: only then do they leave it.  Rows that
 * cannot be delivered become dead letters, settled with the others.
 *
 * The engine (batch.c) knows nothing of where rows come from.  A source
 * (ZbSource) claims them and settles them:
 *
 *	- the queue source (queue.c) claims a queue table's rows with
 *	  DELETE … RETURNING by TID range, in a transaction that settles by
 *	  committing (the rows leave the queue) and gives them back by rolling
 *	  back;
 *	- the change-capture source (cdcsource.c) claims the records a logical
 *	  slot decodes, and settles by confirming the slot's position once they
 *	  are acknowledged; it gives them back by decoding again from the
 *	  confirmed position.  It cannot always stop where the batch is full
 *	  (a decoded transaction is replayed whole): it delivers what it holds
 *	  with zb_batch_flush() and goes on.
 *
 * See docs/DESIGN.md, "The batch engine and its sources".
 *-------------------------------------------------------------------------
 */
#ifndef ZB_BATCH_H
#define ZB_BATCH_H

#include "access/xlogdefs.h"
#include "storage/itemptr.h"
#include "utils/acl.h"
#include "utils/timestamp.h"

#include "buf.h"

struct ZbWorker;

/* The batch being filled, sent and settled (one per worker process). */
typedef struct ZbBatch ZbBatch;

/*
 * Where a row came from, as its source identifies it: to dead-letter it,
 * or to know what a settled batch covered.  The engine only copies it.
 */
typedef union ZbRowRef
{
	ItemPointerData tid;		/* a queue row */
	int64		seq;			/* a change-capture record: its _seq */
} ZbRowRef;

/* A row that will not be delivered, and why; settled with the batch. */
typedef struct ZbDeadRow
{
	ZbRowRef	ref;
	char	   *error;
} ZbDeadRow;

/*
 * A source of rows.  Each callback receives the worker (its settings in
 * w->row, the queue's or table's owner in w->owner); a source keeps its
 * own state in its file (one worker per process).  The source owns its
 * transactions: begin() starts what settle() or abandon() ends.
 */
typedef struct ZbSource
{
	const char *name;

	/*
	 * Privileges the stream's owner needs on the stream's table (checked
	 * with the server and user mapping by zb_stream_problem() when the
	 * worker loads).
	 */
	AclMode		privileges;

	/*
	 * In the worker's load transaction, with CurrentMemoryContext the
	 * worker's configuration context: build w->schema (the record schema
	 * that the ZeroBus stream is opened with) and whatever the source needs
	 * to claim rows; or set w->paused and w->paused_reason when the table
	 * has columns no record can carry (the worker loads again every poll
	 * interval until that changes).
	 */
	void		(*load) (struct ZbWorker *w);

	/* Forget what load() built (before a reload, after an ERROR). */
	void		(*unload) (struct ZbWorker *w);

	/*
	 * Start a batch: open its transaction and check that the source can
	 * still be worked on.  false, with nothing left open: the worker must
	 * load again first (a privilege lost, the table's columns changed).
	 */
	bool		(*begin) (struct ZbWorker *w);

	/*
	 * Claim rows into the batch, at most zb_batch_room() in all: encode each
	 * into zb_batch_buffer() and add it with zb_batch_add_record(), or
	 * zb_batch_add_dead() when it cannot be encoded.  Full requests go out
	 * as rows are added; call zb_batch_poll() between slow steps so that
	 * acknowledgements come in meanwhile.
	 */
	void		(*claim) (struct ZbWorker *w, ZbBatch *b);

	/*
	 * Every row of the batch is durably acknowledged or dead: write the dead
	 * letters (zb_batch_dead() lists them; zb_batch_write_dead_letter()
	 * writes one), make the batch permanent and end the transaction.
	 * Called for an empty batch too.
	 */
	void		(*settle) (struct ZbWorker *w, ZbBatch *b);

	/*
	 * The batch failed: give its rows back (they are claimed again by a
	 * later batch) and end the transaction.
	 */
	void		(*abandon) (struct ZbWorker *w, ZbBatch *b);

	/*
	 * The worker leaves for good (its stream stopped, altered or dropped):
	 * let go of what outlives the process (change capture: a slot whose
	 * stream is gone is dropped).  Outside a transaction.  May be NULL.
	 */
	void		(*leave) (struct ZbWorker *w);

	/*
	 * While the worker backs off, about once a second, in a transaction:
	 * keep what the source publishes current (the queue's depth grows while
	 * the service is away).  May be NULL.
	 */
	void		(*waiting) (struct ZbWorker *w);
} ZbSource;

/* The engine: one batch of the worker's source; rows settled, 0 if none. */
extern int	zb_batch_run(struct ZbWorker *w);
extern void zb_batch_forget(struct ZbWorker *w);
extern void zb_batch_release(struct ZbWorker *w);

/* For sources, while they claim */
extern uint64 zb_batch_room(ZbBatch *b);
extern ZbBuf *zb_batch_buffer(ZbBatch *b, MemoryContext *cxt);
extern void zb_batch_add_record(ZbBatch *b, size_t start, size_t len, ZbRowRef ref,
								TimestampTz committed_at);
extern void zb_batch_add_dead(ZbBatch *b, ZbRowRef ref, const char *error);
extern bool zb_batch_poll(ZbBatch *b);
extern bool zb_batch_flush(ZbBatch *b);

/* For sources, when they settle */
extern int	zb_batch_records(ZbBatch *b);
extern int	zb_batch_dead(ZbBatch *b, ZbDeadRow **dead);
extern void zb_batch_write_dead_letter(const char *stream, Oid owner, const char *error,
									   Datum record);

/* The sources */
extern const ZbSource zb_queue_source;
extern const ZbSource zb_cdc_source;	/* cdcsource.c */

#endif							/* ZB_BATCH_H */
