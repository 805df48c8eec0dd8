/*-------------------------------------------------------------------------
 * metrics.h
 *	  Stream metrics in shared memory: what workers publish, how a stream's
 *	  metrics are read, the launcher's sampling, latency histograms.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_METRICS_H
#define ZB_METRICS_H

#include "shmem.h"

extern bool zb_collect_metrics;

/* A consistent copy of what zb_metrics shows of one stream (zb_stream_report). */
typedef struct ZbStreamReport
{
	/* registration, and the workers running now */
	Oid			dboid;
	char		name[ZB_NAMELEN];
	Oid			queue_relid;
	bool		enabled;
	int			nworkers;
	int			max_inflight;
	int			running;

	/* counters and the workers' reports */
	ZbState		state;			/* derived: see zb_stream_report() */
	ZbCounters	c;
	double		rate_ema;
	double		gen_rate_ema;
	TimestampTz started_at;
	TimestampTz last_ack_at;
	int64		queue_depth;
	char		slot_name[NAMEDATALEN]; /* change capture; "" for a queue */
	TimestampTz oldest_unacked; /* change capture: 0 if nothing is unacknowledged */

	/* detail (when asked for) */
	ZbHistogram ack_latency;
	ZbHistogram e2e_latency;
	TimestampTz last_error_at;
	char		last_error[ZB_ERRLEN];
	char		gen_last_error[ZB_ERRLEN];
} ZbStreamReport;

/* what workers publish */
extern void zb_metrics_worker_state(ZbStreamSlot *s, int widx, ZbState state);
extern void zb_metrics_worker_in_batch(ZbStreamSlot *s, int widx, bool in_batch);
extern void zb_metrics_worker_depth(ZbStreamSlot *s, int widx, int64 depth);
extern void zb_metrics_worker_oldest(ZbStreamSlot *s, int widx, TimestampTz oldest);
extern void zb_metrics_worker_gone(ZbStreamSlot *s, int widx);
extern void zb_metrics_error(ZbStreamSlot *s, const char *message);
extern bool zb_metrics_error_once(ZbStreamSlot *s, const char *message, bool only_new);
extern bool zb_metrics_generator_error(ZbStreamSlot *s, const char *message);
extern void zb_metrics_sent(ZbStreamSlot *s, uint64 rows, uint64 bytes);
extern void zb_metrics_unsent(ZbStreamSlot *s, uint64 rows, uint64 bytes, uint64 requests);
extern void zb_metrics_acked(ZbStreamSlot *s, uint64 rows, uint64 bytes, TimestampTz now,
							 uint64 ack_us, const ZbHistogram *rows_e2e);
extern void zb_metrics_reset(ZbStreamSlot *s, ZbHistory *h);
extern void zb_metrics_init(ZbStreamSlot *s);

/* reading */
extern bool zb_stream_report(int slot, ZbStreamReport *r, bool detail);
extern const char *zb_state_name(int state);
extern void zb_metrics_sample(void);

/* histograms */
extern void zb_hist_add(ZbHistogram *h, uint64 us);
extern void zb_hist_merge(ZbHistogram *h, const ZbHistogram *add);
extern double zb_hist_percentile(const ZbHistogram *h, double p);
extern void zb_hist_delta(const ZbHistogram *cur, const ZbHistogram *prev, ZbHistogram *out);

#endif							/* ZB_METRICS_H */
