/*-------------------------------------------------------------------------
 * fdwinsert.c
 *	  INSERT (and COPY) into a history foreign table: rows go to the Delta
 *	  table through ZeroBus, synchronously.
 *
 * The rows of one statement are encoded with the ingestion encoder
 * (record.c: protobuf with a descriptor built from the foreign table's
 * columns, named by their column_name options) and sent in batches on one
 * EphemeralStream.  The statement returns only when ZeroBus has
 * acknowledged every batch as durable -- the seeds' wait_for_ack=true.
 *
 * This is not transactional: rows acknowledged before a failure, or before
 * the surrounding transaction rolls back, stay in the Delta table.  For
 * transactional, exactly-what-committed delivery use a queue table and a
 * stream (zerobus.create_stream).  A CloseStreamSignal during a long
 * INSERT is honoured: in-flight batches are drained and a new stream opened.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/tupdesc.h"
#include "commands/defrem.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "compat.h"
#include "deparse.h"
#include "fdwinsert.h"
#include "record.h"
#include "session.h"

/* A batch is sent at this many rows or bytes, whichever comes first. */
#define INSERT_BATCH_ROWS 5000
#define INSERT_BATCH_BYTES (4 * 1024 * 1024)
/* Requests sent and not yet acknowledged before we wait for acks. */
#define INSERT_MAX_INFLIGHT 16

typedef struct ZbInsert
{
	MemoryContext cxt;
	Relation	rel;
	char	   *target;			/* catalog.schema.table */
	ZbSession  *session;
	const ZbServerConfig *cfg;	/* the session's */
	ZbRecordSchema *schema;
	TupleDesc	remote_desc;	/* the table's columns under their remote names */
	ZbStream   *stream;
	MemoryContext batch_cxt;	/* the batch being filled */
	ZbBuf		recbuf;
	size_t	   *offs;
	size_t	   *lens;
	int			nrows;
	Datum	   *values;			/* non-dropped columns, in order */
	bool	   *isnull;
	int64		last_sent;		/* offset of the last request, -1 none */
	int64		rows_sent;
	int64		rows_acked;
	int64		batches;
	int64		rows_in_request[INSERT_MAX_INFLIGHT + 1];
	int64		streams;
} ZbInsert;

static const char *
insert_grpc_hint(const ZbError *err)
{
	if (err->kind == ZB_ERR_CONFIG && err->curl_code == CURLE_ABORTED_BY_CALLBACK)
		return "Use https://; plain http:// is only for an emulator on a loopback address.";
	if (err->kind != ZB_ERR_GRPC)
		return err->kind == ZB_ERR_TLS
			? "Check the server option ca_file, or the zerobus_endpoint host name." : NULL;
	switch (err->grpc_code)
	{
		case GRPC_NOT_FOUND:
			return "Create the Delta table first; ZeroBus does not create tables.";
		case GRPC_PERMISSION_DENIED:
			return "Grant the service principal USE CATALOG, USE SCHEMA, and SELECT and MODIFY on the table.";
		case GRPC_INVALID_ARGUMENT:
			return "The foreign table's columns must match the Delta table's (names through column_name, compatible types, NOT NULL columns present).";
		case GRPC_UNAUTHENTICATED:
			return "Check the user mapping's credentials and the server's workspace_id.";
		default:
			return NULL;
	}
}

static void
insert_fail(ZbInsert *ins, const char *what, const ZbError *err)
{
	const char *hint = insert_grpc_hint(err);

	ereport(ERROR,
			(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
			 errmsg("%s ZeroBus stream to %s failed: %s", what, ins->target, err->message),
			 ins->rows_acked > 0
			 ? errdetail("%lld rows of this statement were acknowledged before the failure and remain in the table.",
						 (long long) ins->rows_acked) : 0,
			 hint ? errhint("%s", hint) : 0));
}

/* Open a stream (session.c fetches a fresh token once if the first is refused). */
static void
insert_connect(ZbInsert *ins)
{
	ZbError		err;
	ProtobufCBinaryData descriptor;
	MemoryContext old = MemoryContextSwitchTo(ins->cxt);

	descriptor.data = (uint8 *) ins->schema->descriptor;
	descriptor.len = ins->schema->descriptor_len;
	ins->stream = zb_session_open_stream(ins->session, ins->target, ZB_RECORD_PROTO,
										 &descriptor, 0, &err);
	MemoryContextSwitchTo(old);
	if (ins->stream)
	{
		ins->last_sent = -1;
		ins->streams++;
		return;
	}
	if (err.at_token)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("could not get a ZeroBus token for %s", ins->target),
				 errdetail_internal("%s", err.message),
				 err.kind == ZB_ERR_AUTH
				 ? errhint("Check client_id and client_secret in the user mapping.") : 0));
	insert_fail(ins, "opening a", &err);
}

/* Count the rows of requests acknowledged so far. */
static void
insert_note_acks(ZbInsert *ins)
{
	int64		acked = zb_stream_acked(ins->stream);
	int64		first_unacked = ins->last_sent - ins->batches + 1;
	int64		o;

	/* rows_in_request is a ring of the in-flight requests' row counts */
	for (o = first_unacked; o <= acked && ins->batches > 0; o++)
	{
		ins->rows_acked += ins->rows_in_request[o % (INSERT_MAX_INFLIGHT + 1)];
		ins->batches--;
	}
}

/* Wait until at most 'max_inflight' requests are unacknowledged. */
static void
insert_wait_acks(ZbInsert *ins, int64 max_inflight)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   ins->cfg->request_timeout_ms);
	ZbError		err;

	insert_note_acks(ins);
	while (ins->last_sent - zb_stream_acked(ins->stream) > max_inflight)
	{
		long		left = zb_ms_until(deadline);

		if (left == 0)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
					 errmsg("no acknowledgement from ZeroBus for %s within %ld ms",
							ins->target, ins->cfg->request_timeout_ms),
					 ins->rows_acked > 0
					 ? errdetail("%lld rows of this statement were acknowledged and remain in the table.",
								 (long long) ins->rows_acked) : 0,
					 errhint("Raise the server option request_timeout, or check the service.")));
		if (!zb_stream_poll(ins->stream, left, NULL, &err))
			insert_fail(ins, "the", &err);
		insert_note_acks(ins);
	}
}

/* The server asked us to move to a new stream: drain this one, open another. */
static void
insert_rotate(ZbInsert *ins)
{
	insert_wait_acks(ins, 0);
	zb_stream_close(ins->stream, 1000);
	ins->stream = NULL;
	insert_connect(ins);
}

static void
insert_send_batch(ZbInsert *ins)
{
	ProtobufCBinaryData *recs;
	ZbError		err;
	int			i;

	if (ins->nrows == 0)
		return;
	if (!zb_stream_poll(ins->stream, 0, NULL, &err))
		insert_fail(ins, "the", &err);
	if (zb_stream_closing(ins->stream, NULL))
		insert_rotate(ins);
	insert_wait_acks(ins, INSERT_MAX_INFLIGHT - 1);

	recs = palloc(sizeof(ProtobufCBinaryData) * ins->nrows);
	for (i = 0; i < ins->nrows; i++)
	{
		recs[i].data = ins->recbuf.data + ins->offs[i];
		recs[i].len = ins->lens[i];
	}
	ins->last_sent = zb_stream_send_proto_batch(ins->stream, recs, ins->nrows);
	ins->rows_in_request[ins->last_sent % (INSERT_MAX_INFLIGHT + 1)] = ins->nrows;
	ins->batches++;
	ins->rows_sent += ins->nrows;
	pfree(recs);
	/* the stream copied the bytes: start the next batch */
	ins->nrows = 0;
	ins->recbuf.len = ins->recbuf.off = 0;
}

static ZbInsert *
insert_begin(EState *estate, ResultRelInfo *rinfo)
{
	Relation	rel = rinfo->ri_RelationDesc;
	Oid			relid = RelationGetRelid(rel);
	ForeignTable *ft = GetForeignTable(relid);
	MemoryContext cxt = AllocSetContextCreate(estate->es_query_cxt, "zerobus insert",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	ZbInsert   *ins = palloc0(sizeof(ZbInsert));
	TupleDesc	desc = RelationGetDescr(rel);
	ListCell   *lc;
	int			i;

	ins->cxt = cxt;
	ins->rel = rel;
	foreach(lc, ft->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "table") == 0)
			ins->target = pstrdup(defGetString(def));
	}
	if (ins->target == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("cannot insert into foreign table \"%s\"", RelationGetRelationName(rel)),
				 errdetail("Rows go through ZeroBus to a Delta table named by the option \"table\", which this foreign table lacks."),
				 errhint("ALTER FOREIGN TABLE %s OPTIONS (ADD table 'catalog.schema.table');",
						 RelationGetRelationName(rel))));
	ins->session = zb_session_get(ft->serverid, GetUserId());
	zb_session_require(ins->session, ZB_NEED_ZEROBUS);
	ins->cfg = zb_session_config(ins->session);

	/* the record's fields are the remote column names */
	ins->remote_desc = CreateTupleDescCopy(desc);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(ins->remote_desc, i);

		char	   *remote;

		if (att->attisdropped)
			continue;
		remote = zb_column_remote_name(relid, i + 1);
		if (!zb_valid_name(remote) || (remote[0] >= '0' && remote[0] <= '9'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("column \"%s\" of foreign table \"%s\" has a remote name ZeroBus cannot use: \"%s\"",
							NameStr(TupleDescAttr(desc, i)->attname),
							RelationGetRelationName(rel), remote),
					 errdetail("ZeroBus record fields are ASCII letters, digits and underscores, not starting with a digit."),
					 errhint("Map the column to its Delta name: ALTER FOREIGN TABLE %s ALTER COLUMN %s OPTIONS (ADD column_name '<Delta column>');",
							 quote_identifier(RelationGetRelationName(rel)),
							 quote_identifier(NameStr(TupleDescAttr(desc, i)->attname)))));
		namestrcpy(&att->attname, remote);
	}
	zb_record_check_columns(ins->remote_desc, RelationGetRelationName(rel));
	ins->schema = zb_record_schema(ins->remote_desc, "row", 0, NULL);
	ins->values = palloc(sizeof(Datum) * desc->natts);
	ins->isnull = palloc(sizeof(bool) * desc->natts);
	ins->offs = palloc(sizeof(size_t) * INSERT_BATCH_ROWS);
	ins->lens = palloc(sizeof(size_t) * INSERT_BATCH_ROWS);
	ins->batch_cxt = AllocSetContextCreate(cxt, "zerobus insert batch", ALLOCSET_DEFAULT_SIZES);
	insert_connect(ins);
	MemoryContextSwitchTo(old);
	return ins;
}

static void
insert_row(ZbInsert *ins, TupleTableSlot *slot)
{
	TupleDesc	desc = RelationGetDescr(ins->rel);
	const char *error = NULL;
	ssize_t		len;
	size_t		start;
	int			n = 0;
	int			i;

	slot_getallattrs(slot);
	for (i = 0; i < desc->natts; i++)
	{
		if (TupleDescAttr(desc, i)->attisdropped)
			continue;
		ins->values[n] = slot->tts_values[i];
		ins->isnull[n] = slot->tts_isnull[i];
		n++;
	}
	start = ins->recbuf.len;
	len = zb_record_encode_proto(ins->schema, ins->values, ins->isnull, NULL, ins->batch_cxt,
								 &ins->recbuf, &error);
	if (len < 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("cannot send a row to %s through ZeroBus: %s", ins->target, error)));
	if ((size_t) len > ZB_MAX_REQUEST_BYTES - 1024)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a row of %zd bytes exceeds the ZeroBus request limit of %d bytes",
						len, ZB_MAX_REQUEST_BYTES)));
	ins->offs[ins->nrows] = start;
	ins->lens[ins->nrows] = len;
	ins->nrows++;
	if (ins->nrows == INSERT_BATCH_ROWS || ins->recbuf.len >= INSERT_BATCH_BYTES)
		insert_send_batch(ins);
}

/* Send what is left and wait until every request is durable. */
static void
insert_finish(ZbInsert *ins)
{
	insert_send_batch(ins);
	insert_wait_acks(ins, 0);
	zb_stream_close(ins->stream, 1000);
	ins->stream = NULL;
}

/* ---------------------------------------------------------------- callbacks */

static void
zb_begin_modify(ModifyTableState *mtstate, ResultRelInfo *rinfo, List *fdw_private,
				int subplan_index, int eflags)
{
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	rinfo->ri_FdwState = insert_begin(mtstate->ps.state, rinfo);
}

static TupleTableSlot *
zb_exec_insert(EState *estate, ResultRelInfo *rinfo, TupleTableSlot *slot,
			   TupleTableSlot *planSlot)
{
	insert_row((ZbInsert *) rinfo->ri_FdwState, slot);
	return slot;
}

static void
zb_end_modify(EState *estate, ResultRelInfo *rinfo)
{
	ZbInsert   *ins = (ZbInsert *) rinfo->ri_FdwState;

	if (ins == NULL)
		return;
	insert_finish(ins);
	MemoryContextDelete(ins->cxt);
	rinfo->ri_FdwState = NULL;
}

static void
zb_begin_insert(ModifyTableState *mtstate, ResultRelInfo *rinfo)
{
	rinfo->ri_FdwState = insert_begin(mtstate->ps.state, rinfo);
}

static void
zb_explain_modify(ModifyTableState *mtstate, ResultRelInfo *rinfo, List *fdw_private,
				  int subplan_index, ExplainState *es)
{
	ForeignTable *ft = GetForeignTable(RelationGetRelid(rinfo->ri_RelationDesc));
	ListCell   *lc;

	if (!es->verbose)
		return;
	foreach(lc, ft->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "table") == 0)
			ExplainPropertyText("ZeroBus Table", defGetString(def), es);
	}
}

void
zb_fdw_insert_routines(FdwRoutine *routine)
{
	routine->BeginForeignModify = zb_begin_modify;
	routine->ExecForeignInsert = zb_exec_insert;
	routine->EndForeignModify = zb_end_modify;
	routine->BeginForeignInsert = zb_begin_insert;
	routine->EndForeignInsert = zb_end_modify;
	routine->ExplainForeignModify = zb_explain_modify;
}
