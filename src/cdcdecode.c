/*-------------------------------------------------------------------------
 * cdcdecode.c
 *	  The logical decoding output plugin of zerobus_fdw: each committed
 *	  change of a stream's source table becomes one record (or two) in the
 *	  stream's record format, through record.c.
 *
 * PostgreSQL loads it by the slot's plugin name, "zerobus_fdw": this very
 * library, which exports _PG_output_plugin_init.  Two ways to use it:
 *   - in-process, by the driver of cdc.c: records go to the driver's sink
 *     straight from the encoder's buffer (zb_cdc_plugin_bind), with the
 *     _seq numbering and the skip rule of the stream's progress record;
 *   - through PostgreSQL's SQL interface or a walsender
 *     (pg_logical_slot_get_binary_changes(slot, NULL, NULL, 'source',
 *     'public.orders')): one message per record, _seq counted from the
 *     option seq_start (default 1).
 * Options: source (a table name or OID), stream (take source, format and
 * update_preimage from a stream), format ('proto' binary, 'json' textual),
 * update_preimage, seq_start.
 *
 * docs/DESIGN.md ("Change capture") gives the record layout and the rules:
 * partitions as their root, key changes as delete + insert, unchanged
 * TOASTed values from the old row under REPLICA IDENTITY FULL, TRUNCATE of
 * the whole table as a record, anything no record can carry as an ERROR
 * (the worker pauses on it).  Changes of other tables cost one hash probe.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/attmap.h"
#include "access/detoast.h"
#include "access/htup_details.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "lib/stringinfo.h"
#include "nodes/makefuncs.h"
#include "replication/logical.h"
#include "replication/output_plugin.h"
#include "replication/reorderbuffer.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/regproc.h"

#include "compat.h"
#include "buf.h"
#include "cdc.h"
#include "record.h"
#include "stream.h"

/* what PostgreSQL looks up by the slot's plugin name (declared by 18's header) */
extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

const char *const zb_cdc_change_names[] = {
	"insert", "update_preimage", "update_postimage", "delete", "truncate"
};

/* ---------- encoding one row (shared with the snapshot copy of cdc.c) ---------- */

struct ZbCdcEncoder
{
	bool		json;
	MemoryContext cxt;			/* the buffers */
	ZbBuf		buf;			/* the record in the stream's format */
	ZbBuf		jbuf;			/* its JSON form, when a proto stream's sink asks */
};

ZbCdcEncoder *
zb_cdc_encoder_create(bool json, MemoryContext cxt)
{
	ZbCdcEncoder *enc = MemoryContextAllocZero(cxt, sizeof(ZbCdcEncoder));

	enc->json = json;
	enc->cxt = cxt;
	return enc;
}

/* The _change_type value of a change: text datums made once per process. */
Datum
zb_cdc_change_datum(ZbCdcChange change)
{
	static Datum datums[ZB_CDC_TRUNCATE + 1];

	if (datums[change] == (Datum) 0)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		datums[change] = PointerGetDatum(cstring_to_text(zb_cdc_change_names[change]));
		MemoryContextSwitchTo(old);
	}
	return datums[change];
}

/*
 * A row no record can carry (NaN for a DECIMAL, an infinite date, an array
 * with NULLs) still has to be shown to someone: its values as the types'
 * text output, in a JSON object, for a dead letter.
 */
static char *
cdc_dead_json(const ZbRecordSchema *schema, Datum *values, bool *isnull)
{
	StringInfoData s;
	int			i;

	initStringInfo(&s);
	appendStringInfoChar(&s, '{');
	for (i = 0; i < schema->ncols; i++)
	{
		const ZbRecordCol *col = &schema->cols[i];
		Oid			typid = col->is_array ? get_array_type(col->typid) : col->typid;
		Oid			outfn;
		bool		varlena;

		if (i > 0)
			appendStringInfoChar(&s, ',');
		escape_json(&s, col->name);
		appendStringInfoChar(&s, ':');
		if (isnull[col->index])
		{
			appendStringInfoString(&s, "null");
			continue;
		}
		getTypeOutputInfo(OidIsValid(typid) ? typid : col->typid, &outfn, &varlena);
		escape_json(&s, OidOutputFunctionCall(outfn, values[col->index]));
	}
	appendStringInfoChar(&s, '}');
	return s.data;
}

/*
 * Fill the change-capture fields of values[] from rec, encode the record
 * and hand it to the sink.  values/isnull have schema->nvalues entries.
 */
void
zb_cdc_encoder_emit(ZbCdcEncoder *enc, const ZbRecordSchema *schema, Datum *values,
					bool *isnull, ZbCdcRecord *rec, ZbCdcSink *sink)
{
	int			natts = schema->nvalues - ZB_CDC_NFIELDS;
	const char *error = NULL;
	ssize_t		n;

	values[natts + ZB_CDC_CHANGE_TYPE] = zb_cdc_change_datum(rec->change);
	values[natts + ZB_CDC_COMMIT_LSN] = Int64GetDatum((int64) rec->commit_lsn);
	values[natts + ZB_CDC_COMMIT_TIME] = TimestampTzGetDatum(rec->commit_time);
	values[natts + ZB_CDC_SEQ] = Int64GetDatum(rec->seq);
	memset(isnull + natts, false, sizeof(bool) * ZB_CDC_NFIELDS);

	enc->buf.len = enc->buf.off = 0;
	n = enc->json
		? zb_record_encode_json(schema, values, isnull, NULL, enc->cxt, &enc->buf, &error)
		: zb_record_encode_proto(schema, values, isnull, NULL, enc->cxt, &enc->buf, &error);
	rec->json = NULL;
	rec->error = NULL;
	rec->dead_json = NULL;
	if (n < 0)
	{
		rec->data = NULL;
		rec->len = 0;
		rec->error = error;
		rec->dead_json = cdc_dead_json(schema, values, isnull);
	}
	else
	{
		rec->data = enc->buf.data;
		rec->len = n;
		if (sink->want_json)
		{
			if (enc->json)
				rec->json = (const char *) enc->buf.data;
			else
			{
				enc->jbuf.len = enc->jbuf.off = 0;
				if (zb_record_encode_json(schema, values, isnull, NULL, enc->cxt, &enc->jbuf,
										  &error) >= 0)
					rec->json = (const char *) enc->jbuf.data;
			}
		}
	}
	sink->record(sink, rec);
}

/* ---------- the plugin's state ---------- */

/* What the plugin knows about one relation it saw a change of. */
typedef struct CdcRel
{
	Oid			relid;			/* hash key */
	bool		valid;			/* false after a relcache invalidation */
	bool		captured;		/* the source, or one of its partitions */
	char		replident;
	AttrMap    *map;			/* its columns -> the root's; NULL if the same */
	int			nkeys;			/* the key: the replica identity's columns,
								 * or the primary key's under FULL */
	AttrNumber *keys;
} CdcRel;

typedef struct CdcPlugin
{
	MemoryContext cxt;			/* lives as long as the decoding context */
	MemoryContext schema_cxt;	/* the current record schema */
	MemoryContext change_cxt;	/* reset after every change */
	LogicalDecodingContext *ctx;
	ZbCdcPluginOptions opts;
	ZbCdcEncoder *enc;
	HTAB	   *rels;

	ZbCdcSink  *sink;			/* the driver's, or sql_sink */
	ZbCdcSink	sql_sink;
	ZbCdcProgress from;			/* what is already acknowledged: skipped */
	int64		next_seq;

	/* the root's record schema */
	ZbRecordSchema *schema;
	uint32		schema_fp;
	int			natts;			/* the root's attributes, dropped included */
	bool		check_schema;	/* a relation changed: compare before the next record */
	Datum	   *values;			/* [natts + ZB_CDC_NFIELDS], the root's layout */
	bool	   *isnull;
	Datum	   *old_values;
	bool	   *old_isnull;
	int			maxvalues;

	/* the transaction being replayed */
	XLogRecPtr	txn_commit;
	XLogRecPtr	txn_end;
	TimestampTz txn_time;
	uint64		txn_index;		/* records made from it so far */
	bool		txn_skip_all;
	uint64		txn_skip_first;

	/*
	 * The ERROR being raised says that no record can carry a change: the
	 * stream worker's driver catches it (zb_cdc_plugin_refusing) and pauses
	 * the stream at that change; other callers see the ERROR.
	 */
	bool		refusing;
} CdcPlugin;

/* The plugin of this process's decoding context (one at a time). */
static CdcPlugin *cdc_active = NULL;
static bool cdc_callback_registered = false;

static void
cdc_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS it;
	CdcRel	   *e;

	if (cdc_active == NULL || cdc_active->rels == NULL)
		return;
	cdc_active->check_schema = true;
	if (OidIsValid(relid))
	{
		e = hash_search(cdc_active->rels, &relid, HASH_FIND, NULL);
		if (e)
			e->valid = false;
		return;
	}
	hash_seq_init(&it, cdc_active->rels);
	while ((e = hash_seq_search(&it)) != NULL)
		e->valid = false;
}

/* ---------- options ---------- */

/* The options the driver passes for a stream. */
List *
zb_cdc_plugin_options(const ZbCdcPluginOptions *opts)
{
	return list_make3(makeDefElem("source", (Node *) makeString(psprintf("%u", opts->source)), -1),
					  makeDefElem("format", (Node *) makeString(opts->json ? "json" : "proto"), -1),
					  makeDefElem("update_preimage",
								  (Node *) makeString(opts->preimage ? "true" : "false"), -1));
}

static Oid
cdc_parse_source(const char *value)
{
	const char *p;

	for (p = value; *p >= '0' && *p <= '9'; p++)
		;
	if (*p == '\0' && p != value)
		return (Oid) strtoul(value, NULL, 10);
	/* a name, resolved as the caller would (it runs with the caller's rights) */
	return DatumGetObjectId(DirectFunctionCall1(regclassin, CStringGetDatum(value)));
}

static void
cdc_parse_options(CdcPlugin *p, List *options, bool is_init)
{
	ListCell   *lc;
	bool		have_source = false;

	p->next_seq = 1;
	foreach(lc, options)
	{
		DefElem    *d = lfirst(lc);
		char	   *value = d->arg ? strVal(d->arg) : NULL;

		if (value == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"%s\" of output plugin zerobus_fdw needs a value", d->defname)));
		if (strcmp(d->defname, "source") == 0)
		{
			p->opts.source = cdc_parse_source(value);
			have_source = true;
		}
		else if (strcmp(d->defname, "stream") == 0)
		{
			ZbStreamRow row;

			if (!zb_stream_lookup(value, false, &row))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_OBJECT),
						 errmsg("stream \"%s\" does not exist", value)));
			if (!OidIsValid(row.source))
				ereport(ERROR,
						(errcode(ERRCODE_WRONG_OBJECT_TYPE),
						 errmsg("stream \"%s\" consumes a queue: it has no change capture", value)));
			p->opts.source = row.source;
			p->opts.json = strcmp(row.record_format, "json") == 0;
			p->opts.preimage = row.update_preimage;
			p->next_seq = row.seq_base;
			have_source = true;
		}
		else if (strcmp(d->defname, "format") == 0)
		{
			if (strcmp(value, "json") != 0 && strcmp(value, "proto") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid format \"%s\"", value),
						 errhint("Use 'proto' (binary records) or 'json'.")));
			p->opts.json = strcmp(value, "json") == 0;
		}
		else if (strcmp(d->defname, "update_preimage") == 0)
		{
			if (!parse_bool(value, &p->opts.preimage))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("update_preimage must be a boolean, not \"%s\"", value)));
		}
		else if (strcmp(d->defname, "seq_start") == 0)
			p->next_seq = DatumGetInt64(DirectFunctionCall1(int8in, CStringGetDatum(value)));
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("output plugin zerobus_fdw has no option \"%s\"", d->defname),
					 errhint("Options: source, stream, format, update_preimage, seq_start.")));
	}
	/* creating a slot passes no options; decoding needs a table */
	if (!have_source && !is_init)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("output plugin zerobus_fdw needs the option \"source\" (a table) or \"stream\""),
				 errhint("For example: pg_logical_slot_peek_binary_changes('slot', NULL, NULL, 'source', 'public.orders').")));
}

/* ---------- callbacks ---------- */

/* SQL interface and walsender: one message per record. */
static void
cdc_sql_record(ZbCdcSink *sink, const ZbCdcRecord *rec)
{
	LogicalDecodingContext *ctx = sink->arg;

	if (rec->data == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("a change of the captured table cannot be encoded: %s", rec->error),
				 errdetail("Values: %s", rec->dead_json)));
	OutputPluginPrepareWrite(ctx, true);
	appendBinaryStringInfo(ctx->out, (const char *) rec->data, rec->len);
	OutputPluginWrite(ctx, true);
}

static void
cdc_sql_schema(ZbCdcSink *sink, const ZbRecordSchema *schema)
{
}

static void
cdc_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init)
{
	CdcPlugin  *p = MemoryContextAllocZero(ctx->context, sizeof(CdcPlugin));
	HASHCTL		hctl;

	p->ctx = ctx;
	p->cxt = AllocSetContextCreate(ctx->context, "zerobus_fdw decoding", ALLOCSET_DEFAULT_SIZES);
	p->schema_cxt = AllocSetContextCreate(p->cxt, "zerobus_fdw record schema",
										  ALLOCSET_SMALL_SIZES);
	p->change_cxt = AllocSetContextCreate(p->cxt, "zerobus_fdw change", ALLOCSET_DEFAULT_SIZES);
	cdc_parse_options(p, ctx->output_plugin_options, is_init);
	p->enc = zb_cdc_encoder_create(p->opts.json, p->cxt);

	memset(&hctl, 0, sizeof(hctl));
	hctl.keysize = sizeof(Oid);
	hctl.entrysize = sizeof(CdcRel);
	hctl.hcxt = p->cxt;
	p->rels = hash_create("zerobus_fdw decoded relations", 64, &hctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	p->sql_sink.schema = cdc_sql_schema;
	p->sql_sink.record = cdc_sql_record;
	p->sql_sink.arg = ctx;
	p->sink = &p->sql_sink;
	p->check_schema = true;

	opt->output_type = p->opts.json ? OUTPUT_PLUGIN_TEXTUAL_OUTPUT : OUTPUT_PLUGIN_BINARY_OUTPUT;
	opt->receive_rewrites = false;
	ctx->output_plugin_private = p;

	if (!cdc_callback_registered)
	{
		CacheRegisterRelcacheCallback(cdc_relcache_callback, (Datum) 0);
		cdc_callback_registered = true;
	}
	cdc_active = p;
}

static void
cdc_shutdown(LogicalDecodingContext *ctx)
{
	CdcPlugin  *p = ctx->output_plugin_private;

	if (cdc_active == p)
		cdc_active = NULL;
}

/*
 * In-process use: records go to 'sink', numbered from from->next_seq, and
 * the records 'from' says are acknowledged are skipped.
 */
void
zb_cdc_plugin_bind(LogicalDecodingContext *ctx, ZbCdcSink *sink, const ZbCdcProgress *from)
{
	CdcPlugin  *p = ctx->output_plugin_private;

	p->sink = sink;
	p->from = *from;
	p->next_seq = from->next_seq;
	/* a new sink has not seen the schema yet */
	p->schema = NULL;
	p->check_schema = true;
	if (p->enc->json != p->opts.json)
		p->enc = zb_cdc_encoder_create(p->opts.json, p->cxt);
}

/*
 * Is the ERROR being handled the plugin's refusal of a change no record can
 * carry (rather than a failure of the decoding itself)?
 */
bool
zb_cdc_plugin_refusing(LogicalDecodingContext *ctx)
{
	CdcPlugin  *p = ctx->output_plugin_private;

	return p != NULL && p->refusing;
}

/* The next record goes out with a schema() first, even if unchanged. */
void
zb_cdc_plugin_reset_schema(LogicalDecodingContext *ctx)
{
	CdcPlugin  *p = ctx->output_plugin_private;

	p->schema = NULL;
	p->check_schema = true;
}

static void
cdc_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	CdcPlugin  *p = ctx->output_plugin_private;

	p->txn_commit = txn->final_lsn;
	p->txn_end = txn->end_lsn;
	p->txn_time = txn->xact_time.commit_time;
	p->txn_index = 0;
	/* acknowledged before a restart: the progress record says how much */
	p->txn_skip_all = false;
	p->txn_skip_first = 0;
	if (p->from.acked_end != InvalidXLogRecPtr)
	{
		if (txn->end_lsn < p->from.acked_end)
			p->txn_skip_all = true;
		else if (txn->end_lsn == p->from.acked_end)
		{
			if (p->from.acked_in_txn == ZB_CDC_ALL)
				p->txn_skip_all = true;
			else
				p->txn_skip_first = p->from.acked_in_txn;
		}
	}
}

static void
cdc_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr commit_lsn)
{
	CdcPlugin  *p = ctx->output_plugin_private;

	if (p->txn_index > 0 && p->sink->commit)
		p->sink->commit(p->sink, p->txn_commit, p->txn_end, p->txn_index);
}

/* The leaf's (or table's) key columns, read from the historic catalog. */
static void
cdc_rel_keys(CdcPlugin *p, CdcRel *e, Relation rel)
{
	Oid			index;
	Relation	irel;
	int			i;

	/* fills rd_pkindex and rd_replidindex */
	list_free(RelationGetIndexList(rel));
	index = e->replident == REPLICA_IDENTITY_FULL ? rel->rd_pkindex : RelationGetReplicaIndex(rel);
	if (!OidIsValid(index))
		return;
	irel = RelationIdGetRelation(index);
	if (!RelationIsValid(irel))
		return;
	e->keys = MemoryContextAlloc(p->cxt, sizeof(AttrNumber) * irel->rd_index->indnkeyatts);
	for (i = 0; i < irel->rd_index->indnkeyatts; i++)
		if (irel->rd_index->indkey.values[i] != 0)
			e->keys[e->nkeys++] = irel->rd_index->indkey.values[i];
	RelationClose(irel);
}

static CdcRel *
cdc_rel(CdcPlugin *p, Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	bool		found;
	CdcRel	   *e = hash_search(p->rels, &relid, HASH_ENTER, &found);

	if (found && e->valid)
		return e;
	if (found)
	{
		if (e->map)
			free_attrmap(e->map);
		if (e->keys)
			pfree(e->keys);
	}
	e->valid = false;
	e->captured = false;
	e->map = NULL;
	e->keys = NULL;
	e->nkeys = 0;
	if (relid == p->opts.source)
		e->captured = true;
	else if (rel->rd_rel->relispartition)
		e->captured = list_member_oid(get_partition_ancestors(relid), p->opts.source);
	if (e->captured)
	{
		e->replident = rel->rd_rel->relreplident;
		cdc_rel_keys(p, e, rel);
		if (relid != p->opts.source)
		{
			Relation	root = RelationIdGetRelation(p->opts.source);
			MemoryContext old = MemoryContextSwitchTo(p->cxt);

			if (!RelationIsValid(root))
				elog(ERROR, "could not open relation with OID %u", p->opts.source);
			e->map = zb_attrmap_by_name_if_req(RelationGetDescr(rel), RelationGetDescr(root));
			MemoryContextSwitchTo(old);
			RelationClose(root);
		}
		p->check_schema = true;
	}
	e->valid = true;
	return e;
}

/*
 * The root's columns as of this change: a new record schema when they
 * differ from the last record's (the sink hears of it before the record).
 */
static void
cdc_check_schema(CdcPlugin *p)
{
	Relation	root = RelationIdGetRelation(p->opts.source);
	TupleDesc	td;
	uint32		fp;

	if (!RelationIsValid(root))
		elog(ERROR, "could not open relation with OID %u", p->opts.source);
	td = RelationGetDescr(root);
	fp = zb_record_fingerprint(td);
	if (p->schema == NULL || fp != p->schema_fp || td->natts != p->natts)
	{
		char	   *hint;
		int			sqlstate;
		char	   *problem = zb_record_cdc_problem(td, RelationGetRelationName(root), &hint,
													&sqlstate);
		MemoryContext old;

		if (problem)
		{
			p->refusing = true;
			ereport(ERROR,
					(errcode(sqlstate),
					 errmsg("change capture of table \"%s\" cannot go on: %s",
							RelationGetRelationName(root), problem),
					 errdetail("A change committed after the table was altered cannot be carried by a record."),
					 hint ? errhint("%s", hint) : 0));
		}
		MemoryContextReset(p->schema_cxt);
		old = MemoryContextSwitchTo(p->schema_cxt);
		p->schema = zb_record_schema_cdc(td, RelationGetRelationName(root));
		MemoryContextSwitchTo(old);
		p->schema_fp = fp;
		p->natts = td->natts;
		if (p->schema->nvalues > p->maxvalues)
		{
			int			n = p->schema->nvalues;

			p->values = MemoryContextAlloc(p->cxt, sizeof(Datum) * n);
			p->isnull = MemoryContextAlloc(p->cxt, sizeof(bool) * n);
			p->old_values = MemoryContextAlloc(p->cxt, sizeof(Datum) * n);
			p->old_isnull = MemoryContextAlloc(p->cxt, sizeof(bool) * n);
			p->maxvalues = n;
		}
		RelationClose(root);
		p->sink->schema(p->sink, p->schema);
	}
	else
		RelationClose(root);
	p->check_schema = false;
}

/*
 * A leaf's values in the root's layout (values of length natts).  With no
 * map the leaf is laid out as the root, and lv may already be values.
 */
static void
cdc_to_root(CdcPlugin *p, CdcRel *e, Datum *lv, bool *ln, Datum *values, bool *isnull)
{
	int			i;

	if (e->map == NULL)
	{
		if (lv != values)
		{
			memcpy(values, lv, sizeof(Datum) * p->natts);
			memcpy(isnull, ln, sizeof(bool) * p->natts);
		}
		return;
	}
	for (i = 0; i < p->natts; i++)
	{
		AttrNumber	a = i < e->map->maplen ? e->map->attnums[i] : 0;

		values[i] = a > 0 ? lv[a - 1] : (Datum) 0;
		isnull[i] = a > 0 ? ln[a - 1] : true;
	}
}

/* Deform a tuple of rel: into the root's arrays directly, or a leaf's. */
static void
cdc_deform(CdcPlugin *p, CdcRel *e, Relation rel, HeapTuple tuple, Datum *root_values,
		   bool *root_isnull, Datum **lv, bool **ln)
{
	TupleDesc	td = RelationGetDescr(rel);

	if (e->map == NULL)
	{
		*lv = root_values;
		*ln = root_isnull;
	}
	else
	{
		*lv = palloc(sizeof(Datum) * td->natts);
		*ln = palloc(sizeof(bool) * td->natts);
	}
	heap_deform_tuple(tuple, td, *lv, *ln);
}

/* The next record of the transaction, unless the progress record says it was acknowledged. */
static void
cdc_emit(CdcPlugin *p, ZbCdcChange change, Datum *values, bool *isnull)
{
	ZbCdcRecord rec;
	uint64		index = p->txn_index++;

	if (p->txn_skip_all || index < p->txn_skip_first)
		return;
	memset(&rec, 0, sizeof(rec));
	rec.seq = p->next_seq++;
	rec.change = change;
	rec.commit_lsn = p->txn_commit;
	rec.end_lsn = p->txn_end;
	rec.commit_time = p->txn_time;
	rec.txn_index = index;
	zb_cdc_encoder_emit(p->enc, p->schema, values, isnull, &rec, p->sink);
}

/* Does an UPDATE change the key (the leaf's key columns)? */
static bool
cdc_key_changed(Relation rel, CdcRel *e, Datum *ov, bool *on, Datum *nv, bool *nn)
{
	TupleDesc	td = RelationGetDescr(rel);
	int			i;

	for (i = 0; i < e->nkeys; i++)
	{
		int			k = e->keys[i] - 1;
		Form_pg_attribute att = TupleDescAttr(td, k);

		if (on[k] != nn[k])
			return true;
		if (on[k])
			continue;
		if (att->attlen == -1)
		{
			/* compressed or not, compare the bytes */
			struct varlena *o = PG_DETOAST_DATUM_PACKED(ov[k]);
			struct varlena *n = PG_DETOAST_DATUM_PACKED(nv[k]);

			if (VARSIZE_ANY_EXHDR(o) != VARSIZE_ANY_EXHDR(n) ||
				memcmp(VARDATA_ANY(o), VARDATA_ANY(n), VARSIZE_ANY_EXHDR(o)) != 0)
				return true;
		}
		else if (!datumIsEqual(ov[k], nv[k], att->attbyval, att->attlen))
			return true;
	}
	return false;
}

/*
 * Values an UPDATE did not log (TOASTed values it left unchanged) are taken
 * from the old row when the WAL has them there: the whole old row under
 * REPLICA IDENTITY FULL, the key's columns when the key is logged.
 * Otherwise no record can carry the change.
 */
static void
cdc_fill_unchanged(CdcPlugin *p, Relation rel, Datum *nv, bool *nn, Datum *ov, bool *on)
{
	TupleDesc	td = RelationGetDescr(rel);
	int			i;

	for (i = 0; i < td->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(td, i);

		if (att->attisdropped || att->attlen != -1 || nn[i] ||
			!VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(nv[i])))
			continue;
		if (ov != NULL && !on[i] && !VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(ov[i])))
		{
			nv[i] = ov[i];
			continue;
		}
		p->refusing = true;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("an UPDATE of table \"%s\" cannot be captured: column \"%s\" kept a value stored out of line, which the WAL does not repeat",
						RelationGetRelationName(rel), NameStr(att->attname)),
				 errdetail("PostgreSQL logs an unchanged TOASTed value only when the table's replica identity is FULL."),
				 errhint("ALTER TABLE %s REPLICA IDENTITY FULL; then SELECT zerobus.resync_stream('<stream>'); for the stream.",
						 quote_identifier(RelationGetRelationName(rel)))));
	}
}

static void
cdc_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, Relation relation,
		   ReorderBufferChange *change)
{
	CdcPlugin  *p = ctx->output_plugin_private;
	CdcRel	   *e = cdc_rel(p, relation);
	MemoryContext old;
	HeapTuple	newtup;
	HeapTuple	oldtup;
	Datum	   *nv;
	bool	   *nn;
	Datum	   *ov = NULL;
	bool	   *on = NULL;

	if (!e->captured)
		return;
	if (p->check_schema || p->schema == NULL)
		cdc_check_schema(p);
	old = MemoryContextSwitchTo(p->change_cxt);
	newtup = change->data.tp.newtuple ? zb_change_tuple(change->data.tp.newtuple) : NULL;
	oldtup = change->data.tp.oldtuple ? zb_change_tuple(change->data.tp.oldtuple) : NULL;

	switch (change->action)
	{
		case REORDER_BUFFER_CHANGE_INSERT:
			if (newtup == NULL)
				elog(ERROR, "an INSERT without a new row");
			cdc_deform(p, e, relation, newtup, p->values, p->isnull, &nv, &nn);
			cdc_to_root(p, e, nv, nn, p->values, p->isnull);
			cdc_emit(p, ZB_CDC_INSERT, p->values, p->isnull);
			break;

		case REORDER_BUFFER_CHANGE_UPDATE:
			if (newtup == NULL)
				elog(ERROR, "an UPDATE without a new row");
			cdc_deform(p, e, relation, newtup, p->values, p->isnull, &nv, &nn);
			if (oldtup)
				cdc_deform(p, e, relation, oldtup, p->old_values, p->old_isnull, &ov, &on);
			cdc_fill_unchanged(p, relation, nv, nn, ov, on);

			if (oldtup && cdc_key_changed(relation, e, ov, on, nv, nn))
			{
				/* the row has a new key: the old key's row is gone */
				cdc_to_root(p, e, ov, on, p->old_values, p->old_isnull);
				cdc_emit(p, ZB_CDC_DELETE, p->old_values, p->old_isnull);
				cdc_to_root(p, e, nv, nn, p->values, p->isnull);
				cdc_emit(p, ZB_CDC_INSERT, p->values, p->isnull);
				break;
			}
			if (p->opts.preimage)
			{
				if (oldtup == NULL || e->replident != REPLICA_IDENTITY_FULL)
				{
					p->refusing = true;
					ereport(ERROR,
							(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
							 errmsg("the old row of an UPDATE of table \"%s\" is not in the WAL, so no update_preimage record can be made",
									RelationGetRelationName(relation)),
							 errhint("ALTER TABLE %s REPLICA IDENTITY FULL; or create the stream without update_preimage.",
									 quote_identifier(RelationGetRelationName(relation)))));
				}
				cdc_to_root(p, e, ov, on, p->old_values, p->old_isnull);
				cdc_emit(p, ZB_CDC_UPDATE_PREIMAGE, p->old_values, p->old_isnull);
			}
			cdc_to_root(p, e, nv, nn, p->values, p->isnull);
			cdc_emit(p, ZB_CDC_UPDATE_POSTIMAGE, p->values, p->isnull);
			break;

		case REORDER_BUFFER_CHANGE_DELETE:
			if (oldtup == NULL)
			{
				p->refusing = true;
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("a DELETE from table \"%s\" cannot be captured: the WAL has no key of the deleted row",
								RelationGetRelationName(relation)),
						 errdetail("The table has no replica identity (no primary key, REPLICA IDENTITY NOTHING)."),
						 errhint("Add a primary key, or ALTER TABLE %s REPLICA IDENTITY FULL; then SELECT zerobus.resync_stream('<stream>'); for the stream.",
								 quote_identifier(RelationGetRelationName(relation)))));
			}
			cdc_deform(p, e, relation, oldtup, p->values, p->isnull, &ov, &on);
			cdc_to_root(p, e, ov, on, p->values, p->isnull);
			cdc_emit(p, ZB_CDC_DELETE, p->values, p->isnull);
			break;

		default:
			/* PostgreSQL passes only the three kinds above to change_cb */
			elog(ERROR, "unexpected change %d", (int) change->action);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(p->change_cxt);
}

/*
 * TRUNCATE: one record with no column values when it empties the whole
 * captured table; a TRUNCATE of only some of its partitions cannot be
 * shown on a mirror of the root.
 */
static void
cdc_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, int nrelations,
			 Relation relations[], ReorderBufferChange *change)
{
	CdcPlugin  *p = ctx->output_plugin_private;
	List	   *truncated = NIL;
	bool		whole = false;
	MemoryContext old;
	int			i;

	for (i = 0; i < nrelations; i++)
	{
		CdcRel	   *e = cdc_rel(p, relations[i]);

		if (!e->captured)
			continue;
		if (RelationGetRelid(relations[i]) == p->opts.source)
			whole = true;
		truncated = lappend_oid(truncated, RelationGetRelid(relations[i]));
	}
	if (truncated == NIL)
		return;
	if (p->check_schema || p->schema == NULL)
		cdc_check_schema(p);
	old = MemoryContextSwitchTo(p->change_cxt);
	if (!whole)
	{
		/* a partitioned root: are all its leaves (now) among them? */
		ListCell   *lc;
		List	   *missing = NIL;

		foreach(lc, find_all_inheritors(p->opts.source, NoLock, NULL))
		{
			Oid			relid = lfirst_oid(lc);

			if (get_rel_relkind(relid) == RELKIND_RELATION &&
				!list_member_oid(truncated, relid))
				missing = lappend_oid(missing, relid);
		}
		if (missing != NIL)
		{
			p->refusing = true;
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("a TRUNCATE of partition \"%s\" of table \"%s\" cannot be captured",
							get_rel_name(linitial_oid(truncated)), get_rel_name(p->opts.source)),
					 errdetail("A record can say that the whole table was emptied, not which of its rows were in one partition."),
					 errhint("SELECT zerobus.resync_stream('<stream>'); sends the table again; DELETE instead of TRUNCATE is captured row by row.")));
		}
	}
	memset(p->isnull, true, sizeof(bool) * p->natts);
	cdc_emit(p, ZB_CDC_TRUNCATE, p->values, p->isnull);
	MemoryContextSwitchTo(old);
	MemoryContextReset(p->change_cxt);
}

void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	cb->startup_cb = cdc_startup;
	cb->begin_cb = cdc_begin;
	cb->change_cb = cdc_change;
	cb->truncate_cb = cdc_truncate;
	cb->commit_cb = cdc_commit;
	cb->shutdown_cb = cdc_shutdown;
}
