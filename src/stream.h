/*-------------------------------------------------------------------------
 * stream.h
 *	  The stream catalog (zerobus.streams) as seen from C.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_STREAM_H
#define ZB_STREAM_H

#include "nodes/parsenodes.h"

typedef struct ZbStreamRow
{
	char	   *name;
	Oid			queue;			/* InvalidOid for a change-capture stream */
	char	   *server;
	char	   *target;
	Oid			owner;			/* the queue table's owner; InvalidOid if it is gone */
	char	   *record_format;
	int			batch_rows;
	int			batch_bytes;
	int			workers;
	int			max_inflight;
	int64		ack_timeout_ms;
	bool		enabled;
	char	   *dedup_column;	/* NULL: records carry no dedup key */

	/* change capture (docs/DESIGN.md): all unset for a queue stream */
	Oid			source;			/* the captured table, or InvalidOid */
	Oid			capture_role;	/* stored; the owner while it exists */
	bool		snapshot;		/* the initial copy is wanted */
	bool		update_preimage;
	char	   *slot_name;
	int64		seq_base;
	bool		cdc_started;	/* established: the initial copy committed */
} ZbStreamRow;

typedef struct ZbStreamSnapshot
{
	char		state[32];
	char		last_error[256];
} ZbStreamSnapshot;

extern bool zb_stream_lookup(const char *name, bool for_update, ZbStreamRow *row);
extern void zb_stream_require(const char *name, bool for_update, ZbStreamRow *row);
extern void zb_stream_snapshot(Oid dboid, const char *name, ZbStreamSnapshot *snap);
extern bool zb_role_has_server_usage(Oid role, Oid serverid);
extern char *zb_stream_problem(const ZbStreamRow *row, AclMode need, bool need_server, Oid *owner);
extern void zb_rescan_at_commit(void);

#endif							/* ZB_STREAM_H */
