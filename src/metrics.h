/*-------------------------------------------------------------------------
 * metrics.h
 *	  Stream metrics in shared memory: what workers publish, the launcher's
 *	  sampling, latency histograms.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_METRICS_H
#define ZB_METRICS_H

#include "shmem.h"

extern void zb_metrics_state(ZbStreamSlot *s, ZbState state);
extern void zb_metrics_error(ZbStreamSlot *s, const char *message);
extern void zb_hist_add(ZbHistogram *h, uint64 us);
extern double zb_hist_percentile(const ZbHistogram *h, double p);
extern void zb_hist_delta(const ZbHistogram *cur, const ZbHistogram *prev, ZbHistogram *out);
extern const char *zb_state_name(int state);
extern void zb_metrics_reset(ZbStreamSlot *s, ZbHistory *h);
extern int64 zb_queue_depth(ZbStreamSlot *s);
extern void zb_metrics_sample(void);

#endif							/* ZB_METRICS_H */
