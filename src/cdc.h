/*-------------------------------------------------------------------------
 * cdc.h
 *	  Change capture (docs/DESIGN.md, "Change capture"): the output plugin
 *	  that turns decoded changes into records (cdcdecode.c), the driver
 *	  that owns a stream's replication slot while it decodes (cdc.c), the
 *	  slot's name, progress record and drops (cdcslot.c), commit wake-ups
 *	  (cdcwake.c), the checks of who may capture what (cdccheck.c), the SQL
 *	  functions that read a slot (cdcsql.c) and the batch engine's source
 *	  (cdcsource.c).
 *
 * The driver is what a change-capture stream worker calls; the sequence of
 * calls is listed in docs/DESIGN.md ("The driver's interface").
 *-------------------------------------------------------------------------
 */
#ifndef ZB_CDC_H
#define ZB_CDC_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "utils/timestamp.h"
#include "replication/logical.h"

#include "record.h"

/* The prefix of every slot the extension creates: zerobus_<db oid>_<full xid>. */
#define ZB_CDC_SLOT_PREFIX "zerobus_"

/* The output plugin's name: this library. */
#define ZB_CDC_PLUGIN "zerobus_fdw"

typedef enum ZbCdcChange
{
	ZB_CDC_INSERT = 0,
	ZB_CDC_UPDATE_PREIMAGE,
	ZB_CDC_UPDATE_POSTIMAGE,
	ZB_CDC_DELETE,
	ZB_CDC_TRUNCATE
} ZbCdcChange;

extern const char *const zb_cdc_change_names[];

/* One record as the sink receives it (valid during the callback only). */
typedef struct ZbCdcRecord
{
	const uint8 *data;			/* the record in the stream's format; NULL if
								 * it cannot be encoded (error says why) */
	size_t		len;			/* JSON records are NUL-terminated, len without it */
	const char *json;			/* the record as JSON, when the sink asks */
	const char *error;			/* why no record can carry these values */
	const char *dead_json;		/* with error: the values as text, for a dead letter */
	int64		seq;
	ZbCdcChange change;
	XLogRecPtr	commit_lsn;		/* snapshot rows: the slot's consistent point */
	XLogRecPtr	end_lsn;		/* the end of the commit record (snapshot: as commit_lsn) */
	TimestampTz commit_time;
	uint64		txn_index;		/* its position among its transaction's records */
} ZbCdcRecord;

typedef struct ZbCdcSink ZbCdcSink;

/*
 * Where records go.  schema() comes before the first record and whenever the
 * table's columns change; record() once per record, in _seq order; commit()
 * (optional) after a transaction's last record.  Callbacks may block and may
 * call zb_cdc_ack(); an ERROR unwinds out of the decoding (zb_cdc_close()).
 */
struct ZbCdcSink
{
	void		(*schema) (ZbCdcSink *sink, const ZbRecordSchema *schema);
	void		(*record) (ZbCdcSink *sink, const ZbCdcRecord *rec);
	void		(*commit) (ZbCdcSink *sink, XLogRecPtr commit_lsn, XLogRecPtr end_lsn,
						   uint64 nrecords);
	bool		want_json;		/* also encode each record as JSON (peek) */
	void	   *arg;
};

/*
 * How far a stream's records are acknowledged: the progress record, kept in
 * the slot's directory and written before the slot's position is confirmed.
 */
#define ZB_CDC_ALL PG_UINT64_MAX
typedef struct ZbCdcProgress
{
	int64		next_seq;		/* _seq of the first record not acknowledged */
	XLogRecPtr	acked_end;		/* end LSN of the transaction of the last
								 * acknowledged record; 0: none */
	uint64		acked_in_txn;	/* how many of its records; ZB_CDC_ALL: all */
} ZbCdcProgress;

/* ---------- the output plugin (cdcdecode.c) ---------- */

typedef struct ZbCdcPluginOptions
{
	Oid			source;			/* the captured table (a partitioned table's root) */
	bool		json;			/* record_format 'json' (else 'proto') */
	bool		preimage;		/* update_preimage records */
} ZbCdcPluginOptions;

extern List *zb_cdc_plugin_options(const ZbCdcPluginOptions *opts);
extern void zb_cdc_plugin_bind(LogicalDecodingContext *ctx, ZbCdcSink *sink,
							   const ZbCdcProgress *from);
extern void zb_cdc_plugin_reset_schema(LogicalDecodingContext *ctx);
extern bool zb_cdc_plugin_refusing(LogicalDecodingContext *ctx);

/* Shared by the plugin and the snapshot copy: one row into a record. */
typedef struct ZbCdcEncoder ZbCdcEncoder;
extern ZbCdcEncoder *zb_cdc_encoder_create(bool json, MemoryContext cxt);
extern void zb_cdc_encoder_emit(ZbCdcEncoder *enc, const ZbRecordSchema *schema,
								Datum *values, bool *isnull, ZbCdcRecord *rec,
								ZbCdcSink *sink);
extern Datum zb_cdc_change_datum(ZbCdcChange change);

/* ---------- the driver (cdc.c) ---------- */

typedef struct ZbCdcConfig
{
	const char *slot_name;
	Oid			source;
	Oid			role;			/* decode and copy as this role */
	bool		json;
	bool		preimage;
	int64		seq_base;		/* the stream's first _seq */
	bool		no_confirm;		/* look only: never confirm nor write progress */
} ZbCdcConfig;

typedef enum ZbCdcStart
{
	ZB_CDC_STREAM,				/* slot acquired: decode */
	ZB_CDC_CREATE,				/* no slot (or an unfinished copy's, now dropped) */
	ZB_CDC_LOST,				/* an established stream's slot is gone */
	ZB_CDC_INVALID,				/* the slot was invalidated (WAL removed) */
	ZB_CDC_BUSY					/* another process uses the slot */
} ZbCdcStart;

typedef enum ZbCdcDecoded
{
	ZB_CDC_CAUGHT_UP,			/* read everything flushed when the call began */
	ZB_CDC_BOUND,				/* emitted the records or bytes asked for */
	ZB_CDC_STOPPED,				/* the sink called zb_cdc_stop(): close, start again */
	ZB_CDC_REFUSED				/* no record can carry a change: zb_cdc_refusal()
								 * says why; nothing past it was emitted */
} ZbCdcDecoded;

typedef struct ZbCdc ZbCdc;

extern ZbCdc *zb_cdc_open(const ZbCdcConfig *cfg, MemoryContext cxt);
extern ZbCdcStart zb_cdc_start(ZbCdc *cdc, bool established, char **detail);
extern void zb_cdc_create(ZbCdc *cdc, bool ephemeral, bool snapshot);
extern bool zb_cdc_copy(ZbCdc *cdc, ZbCdcSink *sink, int64 max_records);
extern void zb_cdc_copy_done(ZbCdc *cdc);
extern ZbCdcDecoded zb_cdc_decode(ZbCdc *cdc, ZbCdcSink *sink, int64 max_records,
								  int64 max_bytes);
extern void zb_cdc_stop(ZbCdc *cdc);
extern ErrorData *zb_cdc_refusal(ZbCdc *cdc);
extern void zb_cdc_ack(ZbCdc *cdc, int64 seq);
extern void zb_cdc_wait(ZbCdc *cdc, long timeout_ms);
extern void zb_cdc_close(ZbCdc *cdc);
extern const ZbCdcProgress *zb_cdc_progress(ZbCdc *cdc);
extern XLogRecPtr zb_cdc_confirmed(ZbCdc *cdc);

extern char *zb_cdc_slot_name(Oid dboid, FullTransactionId fxid);
extern bool zb_cdc_read_progress(const char *slot_name, ZbCdcProgress *p);
extern int64 zb_cdc_seq_base(const char *old_slot);
extern bool zb_cdc_slot_exists(const char *slot_name);
extern void zb_cdc_drop_slot(const char *slot_name);
extern void zb_cdc_drop_at_commit(const char *slot_name);
extern void zb_cdc_drop_database_slots_at_commit(void);
extern int	zb_cdc_sweep(void);

/* zerobus.flush() of a change-capture stream (cdcsql.c). */
struct ZbStreamRow;
extern int64 zb_cdc_flush(const char *name, const struct ZbStreamRow *row, Interval *iv);

/* Who may capture a table (cdccheck.c: NULL, or the problem with the fix). */
extern char *zb_cdc_stream_problem(const struct ZbStreamRow *row, Oid *owner);
extern char *zb_cdc_capture_problem(Oid source, Oid role, int *sqlstate, char **hint);
extern char *zb_cdc_source_problem(Oid source, bool preimage, bool need_slot, bool columns,
								   int *sqlstate, char **hint,
								   char **warning);

/* Slots' progress records (cdcslot.c), for the driver. */
extern void zb_cdc_write_progress(const char *slot_name, const ZbCdcProgress *p);
extern void zb_cdc_slot_init(void);

/* Commit-time wake-ups (cdcwake.c). */
extern void zb_cdc_shmem_request(void);
extern void zb_cdc_shmem_startup(void);
extern bool zb_cdc_join_waiters(void);
extern void zb_cdc_wake_init(void);

/* From _PG_init: the transaction callbacks of change capture. */
extern void zb_cdc_init(void);

#endif							/* ZB_CDC_H */
