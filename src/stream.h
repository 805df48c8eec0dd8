/*-------------------------------------------------------------------------
 * stream.h
 *	  The stream catalog (zerobus.streams) as seen from C.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_STREAM_H
#define ZB_STREAM_H

#include "access/htup.h"
#include "access/tupdesc.h"
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

/* The columns zb_stream_row_decode() reads, in its order. */
#define ZB_STREAM_COLUMNS \
	"queue::pg_catalog.oid, server, target, record_format, batch_rows, batch_bytes," \
	" workers, max_inflight, ack_timeout, enabled, dedup_column," \
	" source::pg_catalog.oid, capture_role::pg_catalog.oid, snapshot, update_preimage," \
	" slot_name::pg_catalog.text, seq_base, cdc_started_at IS NOT NULL"
#define ZB_STREAM_NCOLUMNS 18

extern void zb_stream_row_decode(HeapTuple tup, TupleDesc td, int first, const char *name,
								 ZbStreamRow *row);
extern uint32 zb_stream_fingerprint(const ZbStreamRow *row);
extern bool zb_stream_lookup(const char *name, bool for_update, ZbStreamRow *row);
extern void zb_stream_require(const char *name, bool for_update, ZbStreamRow *row);
extern void zb_stream_snapshot(Oid dboid, const char *name, ZbStreamSnapshot *snap);
extern bool zb_role_has_server_usage(Oid role, Oid serverid);
extern char *zb_stream_problem(const ZbStreamRow *row, AclMode need, bool need_server, Oid *owner);
extern void zb_rescan_at_commit(void);

#endif							/* ZB_STREAM_H */
