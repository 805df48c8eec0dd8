/*-------------------------------------------------------------------------
 * cdcsource.c
 *	  The change-capture source of the batch engine: a stream worker claims
 *	  the records its replication slot decodes (after the initial copy), and
 *	  settles them by writing the progress record and confirming the slot
 *	  once ZeroBus has durably acknowledged them; it gives them back by
 *	  decoding again from the confirmed position.
 *
 * The driver (cdc.c) does the slot, the copy and the decoding; this file
 * fits them to the engine (batch.h):
 *
 *	- load() builds the record schema from the table's columns of now,
 *	  opens the driver and acquires the slot (or learns that the slot must
 *	  be created, is lost, or was invalidated);
 *	- begin() creates the slot when there is none, in a transaction of its
 *	  own that then holds the initial snapshot, and restarts the decoding
 *	  after a failed batch;
 *	- claim() copies the whole table (a first batch that may flush many
 *	  times: the snapshot lives in that one transaction) or decodes up to
 *	  max_inflight records.  The reorder buffer replays a transaction whole,
 *	  so a transaction larger than the batch is delivered in several: the
 *	  sink flushes (zb_batch_flush) from inside the replay, and the progress
 *	  record says how much of that transaction is acknowledged;
 *	- a change of the table's columns reaches the sink before the first
 *	  record that has them: what was claimed is flushed and the ZeroBus
 *	  stream re-opened with the new descriptor (PROTO records);
 *	- a change no record can carry pauses the stream at that change.
 *
 * See docs/DESIGN.md, "Change capture", and "The batch engine and its
 * sources".
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "replication/slot.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "cdc.h"
#include "metrics.h"
#include "record.h"
#include "runas.h"
#include "stream.h"
#include "worker.h"
#include "zerobus.h"

/* What the source does next with its slot. */
typedef enum CdcMode
{
	CDC_NONE,					/* nothing open: load() opens the driver */
	CDC_CREATE,					/* no slot: begin() creates it (and copies) */
	CDC_STREAM					/* the slot is ours: decode */
} CdcMode;

/* A record of the current batch, to dead-letter it if ZeroBus refuses it. */
typedef struct CdcRow
{
	size_t		off;			/* in the engine's buffer */
	size_t		len;
	ZbCdcChange change;
	XLogRecPtr	commit_lsn;
	TimestampTz commit_time;
} CdcRow;

/* A dead letter that must wait until the replay is over (no table writes there). */
typedef struct CdcDead
{
	int64		seq;
	char	   *error;
	char	   *json;
} CdcDead;

typedef struct CdcSource
{
	MemoryContext cxt;			/* the driver and what outlives a batch */
	MemoryContext batch_cxt;	/* reset with every batch */
	ZbCdc	   *cdc;
	CdcMode		mode;
	char		slot_name[NAMEDATALEN];
	bool		restart;		/* close and start the driver before decoding */
	int64		last_attempt_seq;	/* next _seq of an abandoned copy */

	/* the batch being claimed */
	ZbWorker   *w;
	ZbBatch    *batch;
	ZbCdcSink	sink;
	bool		copying;		/* the copy's transaction is open */
	bool		copy_done;		/* the copy sent its last row */
	bool		claiming;		/* inside claim(): a settle is a flush's */
	bool		in_decode;		/* inside zb_cdc_decode: a replay may be running */
	bool		stopped;		/* the sink takes no more records this batch */
	int64		first_seq;		/* of rows[0] */
	int64		next_seq;		/* after the last record claimed */
	int64		settled_seq;	/* every record below it is settled */
	CdcRow	   *rows;
	int			nrows;
	int			maxrows;
	List	   *dead_json;		/* (seq, error, json) of records that never got bytes */
	List	   *deferred;		/* CdcDead, in cxt: settled inside a replay */
	TimestampTz oldest;			/* commit time of the oldest unsettled change */

	/* paused at a change no record can carry (until the slot changes) */
	char	   *paused_reason;
	char		paused_slot[NAMEDATALEN];
} CdcSource;

static CdcSource S;

static void cdcsrc_write_deferred(ZbWorker *w);

/* ---------- the driver ---------- */

static void
cdcsrc_close(void)
{
	if (S.cdc)
		zb_cdc_close(S.cdc);
	S.cdc = NULL;
	S.mode = CDC_NONE;
	S.restart = false;
	if (S.cxt)
		MemoryContextReset(S.cxt);
	S.deferred = NIL;
	S.rows = NULL;
	S.nrows = S.maxrows = 0;
}

static void
cdcsrc_open(ZbWorker *w, int64 seq_base)
{
	ZbCdcConfig cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.slot_name = w->row.slot_name;
	cfg.source = w->row.source;
	cfg.role = w->owner;
	cfg.json = w->json;
	cfg.preimage = w->row.update_preimage;
	cfg.seq_base = seq_base;
	S.cdc = zb_cdc_open(&cfg, S.cxt);
	strlcpy(S.slot_name, w->row.slot_name, NAMEDATALEN);
}

/*
 * The first _seq of a new copy: above the stream's base, and above what an
 * earlier copy of this slot may have sent: in this process we know it;
 * after a crash the clock stands for it (docs/DESIGN.md, "_seq": a stream
 * sends fewer than a million records a second).
 */
static int64
cdcsrc_copy_seq_base(ZbWorker *w)
{
	int64		base = w->row.seq_base;
	/* microseconds since 1970 (timestamps count from 2000), as create_stream */
	int64		now_us = (int64) GetCurrentTimestamp() +
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;

	base = Max(base, now_us);
	return Max(base, S.last_attempt_seq);
}

/*
 * Acquire the slot, or learn what keeps us from it.  false with
 * w->problem (lost, invalidated: only resync_stream helps) or w->paused
 * (another process holds it: we look again every poll interval).
 */
static bool
cdcsrc_start(ZbWorker *w)
{
	char	   *detail;

	switch (zb_cdc_start(S.cdc, w->row.cdc_started, &detail))
	{
		case ZB_CDC_STREAM:
			S.mode = CDC_STREAM;
			return true;
		case ZB_CDC_CREATE:
			S.mode = CDC_CREATE;
			return true;
		case ZB_CDC_BUSY:
			w->paused = true;
			w->paused_reason = psprintf("%s; waiting for it to be released", detail);
			return false;
		case ZB_CDC_LOST:
		case ZB_CDC_INVALID:
			w->problem = psprintf("%s: SELECT zerobus.resync_stream('%s'); starts the stream over with a new snapshot",
								  detail, w->name);
			return false;
	}
	return false;
}

/* ---------- load ---------- */

static void
cdcsrc_load(ZbWorker *w)
{
	Relation	rel;
	char	   *problem;
	char	   *hint;
	int			sqlstate;

	if (S.cxt == NULL)
	{
		S.cxt = AllocSetContextCreate(TopMemoryContext, "zerobus change capture",
									  ALLOCSET_DEFAULT_SIZES);
		S.batch_cxt = AllocSetContextCreate(TopMemoryContext, "zerobus change capture batch",
											ALLOCSET_DEFAULT_SIZES);
	}

	/*
	 * The columns of now: the ZeroBus stream opens with them, and re-opens
	 * when the first record decoded has others.  Columns no record can
	 * carry may be newer than the changes still to deliver: those go out
	 * (the stream opens with the change-capture fields alone), and the
	 * plugin pauses the stream at the first change that has them.
	 */
	rel = table_open(w->row.source, AccessShareLock);
	problem = zb_record_cdc_problem(RelationGetDescr(rel), RelationGetRelationName(rel),
									&hint, &sqlstate);
	if (problem == NULL)
		w->schema = zb_record_schema_cdc(RelationGetDescr(rel), RelationGetRelationName(rel));
	else
		w->schema = zb_record_schema_cdc(CreateTemplateTupleDesc(0), RelationGetRelationName(rel));
	table_close(rel, AccessShareLock);

	/* paused at a change no record can carry: until resync_stream (a new slot) */
	if (S.paused_reason && strcmp(S.paused_slot, w->row.slot_name) == 0)
	{
		w->paused = true;
		w->paused_reason = pstrdup(S.paused_reason);
		return;
	}

	if (S.cdc == NULL || strcmp(S.slot_name, w->row.slot_name) != 0)
	{
		cdcsrc_close();
		cdcsrc_open(w, w->row.seq_base);
	}
	if (S.mode == CDC_NONE && !cdcsrc_start(w))
	{
		cdcsrc_close();
		return;
	}
	/* commits of this database wake us (cdcwake.c) */
	(void) zb_cdc_join_waiters();
}

static void
cdcsrc_unload(ZbWorker *w)
{
	/*
	 * The driver and the slot go too: an unload comes before every load
	 * (a changed option, an ERROR, a paused stream's look every poll
	 * interval), and the next load acquires the slot again, resuming from
	 * the progress record.
	 */
	if (S.copying)
		S.last_attempt_seq = Max(S.last_attempt_seq, S.next_seq);
	S.copying = false;
	cdcsrc_close();
	/* (S.oldest stays: that change is still not acknowledged) */
}

/* ---------- the sink: records into the batch ---------- */

/*
 * The batch is full in the middle of a copy or of a transaction's replay:
 * deliver and settle what it holds, and go on with an empty one.  false:
 * the batch failed; take nothing more.
 */
static bool
cdcsrc_flush(void)
{
	/*
	 * Stopped, altered or dropped in the middle of a large transaction's
	 * replay: take no more (what the batch holds is delivered; the rest is
	 * decoded again by the next worker), so that the worker leaves now.
	 */
	if (!S.copying && !zb_worker_wanted())
	{
		S.stopped = true;
		zb_cdc_stop(S.cdc);
		return false;
	}
	if (!zb_batch_flush(S.batch))
	{
		S.stopped = true;
		if (S.in_decode)
			zb_cdc_stop(S.cdc);
		return false;
	}
	return true;
}

static void
cdcsrc_schema(ZbCdcSink *sink, const ZbRecordSchema *schema)
{
	ZbWorker   *w = S.w;
	MemoryContext old;
	ZbRecordSchema *copy;

	if (S.stopped || w->json)
		return;					/* JSON records carry their field names */
	if (w->schema && w->schema->descriptor_len == schema->descriptor_len &&
		memcmp(w->schema->descriptor, schema->descriptor, schema->descriptor_len) == 0)
		return;

	/*
	 * The table's columns changed at this point of the change stream:
	 * what is claimed goes out with the old descriptor, the rest on a new
	 * ZeroBus stream opened with the new one.
	 */
	if (!cdcsrc_flush())
		return;
	/* for as long as the configuration: w->schema's own context */
	old = MemoryContextSwitchTo(w->cfg_cxt);
	copy = palloc(sizeof(ZbRecordSchema));
	*copy = *schema;
	copy->cols = NULL;			/* opening a stream needs only the descriptor */
	copy->key_name = NULL;
	copy->descriptor = palloc(schema->descriptor_len);
	memcpy(copy->descriptor, schema->descriptor, schema->descriptor_len);
	MemoryContextSwitchTo(old);
	w->schema = copy;
	ereport(LOG,
			(errmsg("zerobus_fdw stream \"%s\": the columns of the captured table changed; re-opening the ZeroBus stream with the new descriptor",
					w->name)));
	if (!zb_worker_reconnect())
	{
		S.stopped = true;
		if (S.in_decode)
			zb_cdc_stop(S.cdc);
	}
}

/* A record whose bytes ZeroBus will never see, as a dead letter's JSON. */
static char *
cdcsrc_bytes_json(ZbWorker *w, const uint8 *data, size_t len, int64 seq, ZbCdcChange change,
				  XLogRecPtr commit_lsn, TimestampTz commit_time)
{
	StringInfoData s;
	bytea	   *b;
	char	   *b64;

	if (w->json)
		return pnstrdup((const char *) data, len);
	/* PROTO: what identifies the record, and its bytes */
	b = palloc(VARHDRSZ + len);
	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), data, len);
	b64 = TextDatumGetCString(DirectFunctionCall2(binary_encode, PointerGetDatum(b),
												  CStringGetTextDatum("base64")));
	initStringInfo(&s);
	appendStringInfo(&s, "{\"_seq\": " INT64_FORMAT ", \"_change_type\": \"%s\", \"_commit_lsn\": " UINT64_FORMAT
					 ", \"_commit_timestamp\": ",
					 seq, zb_cdc_change_names[change], (uint64) commit_lsn);
	escape_json(&s, timestamptz_to_str(commit_time));
	appendStringInfoString(&s, ", \"record_proto_base64\": ");
	escape_json(&s, b64);
	appendStringInfoChar(&s, '}');
	return s.data;
}

static void
cdcsrc_remember_dead(int64 seq, const char *error, char *json)
{
	MemoryContext old = MemoryContextSwitchTo(S.batch_cxt);
	CdcDead    *d = palloc(sizeof(CdcDead));

	d->seq = seq;
	d->error = pstrdup(error);
	d->json = pstrdup(json);
	S.dead_json = lappend(S.dead_json, d);
	MemoryContextSwitchTo(old);
}

static void
cdcsrc_record(ZbCdcSink *sink, const ZbCdcRecord *rec)
{
	ZbWorker   *w = S.w;
	ZbRowRef	ref;
	CdcRow	   *row;

	if (S.stopped)
		return;
	if (zb_batch_room(S.batch) == 0 && !cdcsrc_flush())
		return;

	if (S.nrows == S.maxrows)
	{
		S.maxrows = Max(1024, S.maxrows * 2);
		S.rows = S.rows ? repalloc_huge(S.rows, sizeof(CdcRow) * S.maxrows)
			: MemoryContextAllocHuge(S.cxt, sizeof(CdcRow) * S.maxrows);
	}
	if (S.nrows == 0)
		S.first_seq = rec->seq;
	Assert(rec->seq == S.first_seq + S.nrows);
	row = &S.rows[S.nrows++];
	memset(row, 0, sizeof(*row));
	row->change = rec->change;
	row->commit_lsn = rec->commit_lsn;
	row->commit_time = rec->commit_time;
	S.next_seq = rec->seq + 1;
	memset(&ref, 0, sizeof(ref));
	ref.seq = rec->seq;

	if (!S.copying && S.oldest == 0)
	{
		S.oldest = rec->commit_time;
		zb_metrics_worker_oldest(w->s, w->widx, S.oldest);
	}

	if (rec->data == NULL)
	{
		/* values no record can hold (NaN, an infinite date): a dead letter */
		cdcsrc_remember_dead(rec->seq, rec->error, (char *) rec->dead_json);
		zb_batch_add_dead(S.batch, ref, rec->error);
	}
	else if (rec->len > ZB_MAX_REQUEST_BYTES - 1024)
	{
		char	   *error = psprintf("the change's record is %zu bytes, above the %d-byte ZeroBus request limit",
									 rec->len, ZB_MAX_REQUEST_BYTES);

		cdcsrc_remember_dead(rec->seq, error,
							 cdcsrc_bytes_json(w, rec->data, rec->len, rec->seq, rec->change,
											   rec->commit_lsn, rec->commit_time));
		zb_batch_add_dead(S.batch, ref, error);
	}
	else
	{
		MemoryContext cxt;
		ZbBuf	   *buf = zb_batch_buffer(S.batch, &cxt);
		size_t		start = buf->len;
		size_t		n = rec->len + (w->json ? 1 : 0);	/* JSON records are sent as C strings */
		uint8	   *p = zb_buf_ensure(cxt, buf, n);

		memcpy(p, rec->data, rec->len);
		if (w->json)
			p[rec->len] = '\0';
		buf->len += n;
		row->off = start;
		row->len = rec->len;
		zb_batch_add_record(S.batch, start, rec->len, ref,
							S.copying ? 0 : rec->commit_time);
	}
	/* let full requests go out and acknowledgements come in */
	if ((S.nrows & 63) == 0)
		(void) zb_batch_poll(S.batch);
}

/* ---------- a batch ---------- */

/* Mark the stream established: its copy (or its start) is durable. */
static void
cdcsrc_established(ZbWorker *w)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	values[0] = CStringGetTextDatum(w->name);
	values[1] = CStringGetTextDatum(S.slot_name);
	(void) zb_spi_as(zb_catalog_owner(),
					 "UPDATE zerobus.stream_settings SET cdc_started_at = pg_catalog.now()"
					 " WHERE name OPERATOR(pg_catalog.=) $1"
					 " AND slot_name OPERATOR(pg_catalog.=) $2::pg_catalog.name",
					 2, types, values, NULL, false, 0);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	w->row.cdc_started = true;
}

/*
 * The copy ended without all of it delivered (a failed batch, the stream
 * stopped): its transaction goes, and with it the snapshot; the next start
 * drops the slot and copies again, above every _seq this one used.
 */
static void
cdcsrc_drop_copy(void)
{
	S.last_attempt_seq = Max(S.last_attempt_seq, S.next_seq);
	S.copying = false;
	if (IsTransactionState())
		AbortCurrentTransaction();
	cdcsrc_close();
}

/*
 * Before every batch: the capture role may still capture the table
 * (syscache lookups, in a short transaction; a REVOKE stops delivery
 * here), then the slot: created (with the snapshot's transaction left open
 * for the copy) or decoding restarted after a failed batch.
 */
static bool
cdcsrc_begin(ZbWorker *w)
{
	Oid			owner;
	char	   *problem;

	S.w = w;
	S.batch = NULL;
	MemoryContextReset(S.batch_cxt);
	S.nrows = 0;
	S.dead_json = NIL;
	S.stopped = false;
	S.copy_done = false;

	StartTransactionCommand();
	problem = zb_stream_problem(&w->row, zb_cdc_source.privileges, true, &owner);
	CommitTransactionCommand();
	if (problem != NULL || owner != w->owner || S.cdc == NULL)
		return false;			/* the worker loads again, and reports it */

	if (S.restart)
	{
		/* after a failed batch: decode again from the slot's confirmed position */
		zb_cdc_close(S.cdc);
		S.mode = CDC_NONE;
		S.restart = false;
		if (!cdcsrc_start(w))
		{
			cdcsrc_close();
			return false;
		}
	}

	if (S.mode == CDC_CREATE)
	{
		int64		base = cdcsrc_copy_seq_base(w);

		/* a new driver for the new first _seq (the slot's name is the same) */
		cdcsrc_close();
		cdcsrc_open(w, base);

		/* the first thing of its transaction: it takes the slot's snapshot */
		StartTransactionCommand();
		zb_cdc_create(S.cdc, false, w->row.snapshot);
		S.mode = CDC_STREAM;
		S.next_seq = S.settled_seq = base;
		if (w->row.snapshot)
			S.copying = true;	/* until the copy's last batch settles */
		else
		{
			zb_cdc_copy_done(S.cdc);
			CommitTransactionCommand();
			cdcsrc_established(w);
		}
	}
	return true;
}

/* The whole table, under the snapshot of this transaction. */
static void
cdcsrc_claim_copy(ZbWorker *w, ZbBatch *b)
{
	for (;;)
	{
		uint64		room = zb_batch_room(b);
		bool		more;

		if (room == 0)
		{
			if (!cdcsrc_flush())
				return;
			continue;
		}
		more = zb_cdc_copy(S.cdc, &S.sink, (int64) room);
		if (S.stopped)
			return;
		if (!more)
		{
			S.copy_done = true;
			return;
		}
		if (!zb_worker_wanted())
		{
			/* stopped or altered in the middle of the copy: start over later */
			S.stopped = true;
			return;
		}
	}
}

static void
cdcsrc_claim(ZbWorker *w, ZbBatch *b)
{
	ZbCdcDecoded r = ZB_CDC_CAUGHT_UP;

	S.batch = b;
	S.sink.schema = cdcsrc_schema;
	S.sink.record = cdcsrc_record;
	S.sink.commit = NULL;
	S.sink.want_json = false;
	S.claiming = true;
	if (S.copying)
	{
		cdcsrc_claim_copy(w, b);
		S.claiming = false;
		return;
	}

	S.in_decode = true;
	for (;;)
	{
		uint64		room = zb_batch_room(b);

		if (room == 0)
			break;
		r = zb_cdc_decode(S.cdc, &S.sink, (int64) room, 0);
		if (r != ZB_CDC_BOUND || S.stopped || !zb_batch_poll(b))
			break;
	}
	S.in_decode = false;
	S.claiming = false;

	/* dead letters settled inside a replay, and the acknowledgement they held back */
	cdcsrc_write_deferred(w);

	if (r == ZB_CDC_STOPPED)
		S.restart = true;
	else if (r == ZB_CDC_REFUSED)
	{
		ErrorData  *e = zb_cdc_refusal(S.cdc);
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		/*
		 * A change no record can carry: what came before it is delivered
		 * and settled by this batch; the stream stays paused at it until
		 * resync_stream gives it a new slot.
		 */
		if (S.paused_reason)
			pfree(S.paused_reason);
		S.paused_reason = e->hint ? psprintf("%s: %s", e->message, e->hint) : pstrdup(e->message);
		strlcpy(S.paused_slot, S.slot_name, NAMEDATALEN);
		MemoryContextSwitchTo(old);
		ereport(LOG,
				(errmsg("zerobus_fdw stream \"%s\" is paused: %s", w->name, S.paused_reason)));
		w->paused = true;
		w->paused_reason = S.paused_reason;
		S.restart = true;
	}
}

/* Write dead letters: in the caller's transaction, or in one of their own. */
static void
cdcsrc_bury(ZbWorker *w, List *dead)
{
	bool		own = !IsTransactionState();
	ListCell   *lc;

	if (dead == NIL)
		return;
	if (own)
		StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	foreach(lc, dead)
	{
		CdcDead    *d = lfirst(lc);

		zb_batch_write_dead_letter(w->name, w->owner, d->error,
								   DirectFunctionCall1(jsonb_in, CStringGetDatum(d->json)));
	}
	PopActiveSnapshot();
	SPI_finish();
	if (own)
		CommitTransactionCommand();
}

static void
cdcsrc_write_deferred(ZbWorker *w)
{
	if (S.deferred == NIL)
		return;
	cdcsrc_bury(w, S.deferred);
	list_free_deep(S.deferred);
	S.deferred = NIL;
	/* what they held back can be acknowledged now */
	if (S.settled_seq > zb_cdc_progress(S.cdc)->next_seq)
		zb_cdc_ack(S.cdc, S.settled_seq - 1);
}

/*
 * Every record claimed so far is acknowledged or dead: write the dead
 * letters, then the progress record and the slot's position (zb_cdc_ack).
 * From zb_batch_flush() in the middle of a claim, or at the batch's end,
 * which also ends the copy.
 */
static void
cdcsrc_settle(ZbWorker *w, ZbBatch *b)
{
	ZbDeadRow  *dead;
	int			ndead = zb_batch_dead(b, &dead);
	List	   *letters = NIL;
	int64		ack;
	int			i;

	for (i = 0; i < ndead; i++)
	{
		int64		seq = dead[i].ref.seq;
		CdcDead    *d = NULL;
		ListCell   *lc;

		foreach(lc, S.dead_json)
			if (((CdcDead *) lfirst(lc))->seq == seq)
				d = lfirst(lc);
		if (d == NULL)
		{
			/* ZeroBus refused it: its bytes are in the batch's buffer */
			MemoryContext cxt;
			ZbBuf	   *buf = zb_batch_buffer(b, &cxt);
			CdcRow	   *row = &S.rows[seq - S.first_seq];

			d = palloc(sizeof(CdcDead));
			d->seq = seq;
			d->json = cdcsrc_bytes_json(w, buf->data + row->off, row->len, seq, row->change,
										row->commit_lsn, row->commit_time);
		}
		d->error = dead[i].error;
		letters = lappend(letters, d);
	}

	if (letters != NIL && S.in_decode)
	{
		/*
		 * Inside a transaction's replay, whose (sub)transaction is rolled
		 * back afterwards: the dead letters are written when the decoding
		 * returns, and until then no acknowledgement passes them.
		 */
		MemoryContext old = MemoryContextSwitchTo(S.cxt);
		ListCell   *lc;

		foreach(lc, letters)
		{
			CdcDead    *d = lfirst(lc);
			CdcDead    *k = palloc(sizeof(CdcDead));

			k->seq = d->seq;
			k->error = pstrdup(d->error);
			k->json = pstrdup(d->json);
			S.deferred = lappend(S.deferred, k);
		}
		MemoryContextSwitchTo(old);
	}
	else
		cdcsrc_bury(w, letters);

	if (S.nrows > 0)
	{
		ack = S.next_seq - 1;
		if (S.deferred != NIL)
			ack = Min(ack, ((CdcDead *) linitial(S.deferred))->seq - 1);
		S.settled_seq = S.next_seq;
		if (ack >= zb_cdc_progress(S.cdc)->next_seq)
			zb_cdc_ack(S.cdc, ack);
	}
	S.nrows = 0;
	S.dead_json = NIL;
	S.oldest = 0;
	zb_metrics_worker_oldest(w->s, w->widx, 0);

	if (S.copying && !S.claiming)
	{
		if (S.copy_done)
		{
			/* every row is durable: the first progress record, then established */
			zb_cdc_copy_done(S.cdc);
			S.copying = false;
			CommitTransactionCommand();
			cdcsrc_established(w);
		}
		else
			cdcsrc_drop_copy();
	}
}

/*
 * The worker leaves for good: release the slot, and drop it (and any other
 * of this database's slots no stream names) if its stream is gone or was
 * given a new slot (zb_cdc_sweep).
 */
static void
cdcsrc_leave(ZbWorker *w)
{
	if (S.copying)
		cdcsrc_drop_copy();
	cdcsrc_close();
	StartTransactionCommand();
	(void) zb_cdc_sweep();
	CommitTransactionCommand();
}

/* The batch failed: its records are decoded (or copied) again. */
static void
cdcsrc_abandon(ZbWorker *w, ZbBatch *b)
{
	/* (S.oldest stays: that change is still not acknowledged) */
	S.nrows = 0;
	S.dead_json = NIL;
	if (S.copying)
		cdcsrc_drop_copy();
	else
		S.restart = true;
}

const ZbSource zb_cdc_source = {
	.name = "change capture",
	.privileges = ACL_SELECT,
	.load = cdcsrc_load,
	.unload = cdcsrc_unload,
	.begin = cdcsrc_begin,
	.claim = cdcsrc_claim,
	.settle = cdcsrc_settle,
	.abandon = cdcsrc_abandon,
	.leave = cdcsrc_leave,
	.waiting = NULL,
};
