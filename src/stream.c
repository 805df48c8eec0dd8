/*-------------------------------------------------------------------------
 * stream.c
 *	  The stream catalog and its SQL interface: create_stream, alter_stream,
 *	  drop_stream, start_stream, stop_stream, flush; the triggers that wake
 *	  workers at commit.
 *
 * A stream is one row of zerobus.stream_settings (shown with its owner by
 * the view zerobus.streams).  The functions here validate and write that
 * row; they never touch shared memory directly.  A statement trigger on
 * zerobus.stream_settings asks the launcher, when the transaction
 * commits, to re-read the database's streams (so a rolled-back change does
 * nothing, and a pg_restore of the catalog is picked up too).  A statement
 * trigger on each queue table wakes the stream's workers at commit.
 *
 * A stream belongs to the owner of its queue table (read from pg_class
 * whenever needed, never stored): that role's user mapping is used, and the
 * workers act on the queue as that role.  The functions run as the caller,
 * who must have the privileges of that role and USAGE on the server; the
 * owner needs USAGE and a user mapping.  The catalog is read and written as
 * the extension's owner under the rule of runas.c.  An event trigger drops
 * a stream with its queue table.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/catalog.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_trigger.h"
#include "common/hashfn.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "foreign/foreign.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "cdc.h"
#include "metrics.h"
#include "option.h"
#include "record.h"
#include "runas.h"
#include "session.h"
#include "shmem.h"
#include "stream.h"

#define QUEUE_TRIGGER "zerobus_wakeup"

/* ---------- commit-time work ---------- */

static List *wake_queues = NIL;		/* queue OIDs inserted into by this xact */
static bool rescan_at_commit = false;
static bool xact_callback_registered = false;

static void
stream_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (zb_shared != NULL)
			{
				if (rescan_at_commit)
					zb_request_rescan(MyDatabaseId);
				foreach(lc, wake_queues)
					zb_wake_queue(MyDatabaseId, lfirst_oid(lc));
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			break;
		default:
			return;
	}
	list_free(wake_queues);
	wake_queues = NIL;
	rescan_at_commit = false;
}

static void
stream_register_callback(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(stream_xact_callback, NULL);
		xact_callback_registered = true;
	}
}

/* Re-read this database's streams when the current transaction commits. */
void
zb_rescan_at_commit(void)
{
	stream_register_callback();
	rescan_at_commit = true;
}

/*
 * Is relid the queue of a stream of this database?  One probe of the unique
 * index on zerobus.stream_settings(queue), under a fresh snapshot: it sees
 * streams committed by others since this transaction's snapshot, and those
 * created earlier in this transaction.
 */
static bool
stream_is_queue(Oid relid)
{
	Oid			catalog = zb_catalog_relid("stream_settings", true);
	Oid			index = OidIsValid(catalog)
		? get_relname_relid("streams_queue_key", get_rel_namespace(catalog)) : InvalidOid;
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	Snapshot	snap;
	bool		found;

	if (!OidIsValid(index))
		return false;
	rel = table_open(catalog, AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	/* the key is on the table's column: systable_beginscan maps it to the index's */
	ScanKeyInit(&key, get_attnum(catalog, "queue"), BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, index, true, snap, 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	return found;
}

PG_FUNCTION_INFO_V1(zerobus_queue_wakeup);

/* AFTER INSERT FOR EACH STATEMENT on a queue table. */
Datum
zerobus_queue_wakeup(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Oid			relid;
	MemoryContext old;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "zerobus.queue_wakeup() must be called as a trigger");
	relid = RelationGetRelid(trigdata->tg_relation);
	if (!list_member_oid(wake_queues, relid) && !stream_is_queue(relid))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("zerobus.queue_wakeup() runs only on the queue table of a stream"),
				 errdetail("\"%s\" is not the queue of any stream.",
						   RelationGetRelationName(trigdata->tg_relation)),
				 errhint("DROP TRIGGER %s ON %s;", quote_identifier(trigdata->tg_trigger->tgname),
						 quote_identifier(RelationGetRelationName(trigdata->tg_relation)))));
	stream_register_callback();
	old = MemoryContextSwitchTo(TopMemoryContext);
	wake_queues = list_append_unique_oid(wake_queues, relid);
	MemoryContextSwitchTo(old);
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(zerobus_streams_changed);

/* AFTER any change FOR EACH STATEMENT on zerobus.stream_settings or zerobus.generators. */
Datum
zerobus_streams_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Oid			relid;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "zerobus.streams_changed() must be called as a trigger");
	relid = RelationGetRelid(trigdata->tg_relation);
	if (relid != zb_catalog_relid("stream_settings", true) &&
		relid != zb_catalog_relid("generators", true))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("zerobus.streams_changed() runs only on the extension's own tables"),
				 errdetail("It was fired by a trigger on \"%s\".",
						   RelationGetRelationName(trigdata->tg_relation))));
	zb_rescan_at_commit();
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(zerobus_queue_dropped);

/*
 * sql_drop event trigger: the streams whose queue tables the command
 * dropped go with them (their generators by the foreign key; dead letters
 * stay).  SECURITY DEFINER: the command's user may not write the catalog.
 */
Datum
zerobus_queue_dropped(PG_FUNCTION_ARGS)
{
	uint64		i;
	Oid			catalog;
	bool		has_source;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "zerobus.queue_dropped() must be called as an event trigger");
	/* DROP EXTENSION: the catalog itself is gone */
	if (!OidIsValid(zb_catalog_relid("stream_settings", true)))
		PG_RETURN_VOID();

	/*
	 * An update script that drops something runs this before it has added
	 * the change-capture columns: the catalog is then one without them.
	 */
	catalog = zb_catalog_relid("stream_settings", false);
	has_source = get_attnum(catalog, "source") != InvalidAttrNumber;

	SPI_connect();
	(void) zb_spi_as(zb_catalog_owner(),
					 has_source
					 ? "DELETE FROM zerobus.stream_settings s"
					 " USING pg_catalog.pg_event_trigger_dropped_objects() d"
					 " WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass"
					 "   AND d.objsubid OPERATOR(pg_catalog.=) 0"
					 "   AND d.objid OPERATOR(pg_catalog.=) ANY (ARRAY[s.queue::pg_catalog.oid,"
					 "                                              s.source::pg_catalog.oid])"
					 " RETURNING s.name, s.slot_name::pg_catalog.text, s.source IS NOT NULL"
					 : "DELETE FROM zerobus.stream_settings s"
					 " USING pg_catalog.pg_event_trigger_dropped_objects() d"
					 " WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass"
					 "   AND d.objsubid OPERATOR(pg_catalog.=) 0"
					 "   AND d.objid OPERATOR(pg_catalog.=) s.queue::pg_catalog.oid"
					 " RETURNING s.name, NULL::pg_catalog.text, false",
					 0, NULL, NULL, NULL, false, 0);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *slot = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		bool		isnull;
		bool		cdc = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3,
												   &isnull));

		ereport(NOTICE,
				(errmsg("drop cascades to stream \"%s\"",
						SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1)),
				 cdc ? errdetail("A change-capture stream is dropped with its table, and its replication slot when the transaction commits.")
				 : errdetail("A stream is dropped with its queue table; rows not yet delivered are gone with the table.")));
		if (slot)
			zb_cdc_drop_at_commit(slot);
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/* ---------- helpers ---------- */

/* Does role have USAGE on a foreign server? */
bool
zb_role_has_server_usage(Oid role, Oid serverid)
{
	return object_aclcheck(ForeignServerRelationId, serverid, role, ACL_USAGE) == ACLCHECK_OK;
}

static void
stream_check_name(const char *name)
{
	if (!zb_valid_name(name) || strlen(name) >= ZB_NAMELEN || (name[0] >= '0' && name[0] <= '9'))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid stream name \"%s\"", name),
				 errhint("A stream name is 1 to %d ASCII letters, digits and underscores, not starting with a digit.",
						 ZB_NAMELEN - 1)));
}

/* The queue table must be an ordinary, logged heap table the caller owns. */
static void
stream_check_queue(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	const char *relname = RelationGetRelationName(rel);

	if (rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" cannot be a queue: it is not an ordinary table", relname),
				 errhint("Use a plain table; partitioned tables, views and foreign tables cannot be queues.")));
	if (rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("queue table \"%s\" must be logged", relname),
				 errdetail("A crash empties unlogged and temporary tables, losing the rows not yet delivered."),
				 rel->rd_rel->relpersistence == RELPERSISTENCE_UNLOGGED
				 ? errhint("ALTER TABLE %s SET LOGGED;", quote_identifier(relname)) : 0));
	if (rel->rd_rel->relam != HEAP_TABLE_AM_OID)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("queue table \"%s\" must use the heap access method", relname)));
	if (IsCatalogRelation(rel))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("a system catalog cannot be a queue")));
	if (!object_ownercheck(RelationRelationId, relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, relname);
	zb_record_check_columns(RelationGetDescr(rel), relname);
	table_close(rel, AccessShareLock);
}

/*
 * The server must be ours and usable by the caller; the stream's owner (who
 * connects) needs USAGE on it too, and a user mapping.
 */
static void
stream_check_server(const char *server, Oid owner)
{
	Oid			serverid = zb_server_oid(server);

	zb_check_server_usage(serverid, server);
	if (owner != GetUserId() && !zb_role_has_server_usage(owner, serverid))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\", the owner of the queue, has no USAGE on server \"%s\"",
						GetUserNameFromId(owner, false), server),
				 errdetail("A stream's workers connect as the owner of its queue table."),
				 errhint("GRANT USAGE ON FOREIGN SERVER %s TO %s;", quote_identifier(server),
						 quote_identifier(GetUserNameFromId(owner, false)))));
	/* the owner's session: its mapping and the options a stream needs */
	zb_session_require(zb_session_get(serverid, owner), ZB_NEED_ZEROBUS);
}

static void
stream_check_range(const char *what, int64 value, int64 min, int64 max)
{
	if (value < min || value > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between " INT64_FORMAT " and " INT64_FORMAT ", not " INT64_FORMAT,
						what, min, max, value)));
}

static void
stream_check_format(const char *format)
{
	if (strcmp(format, "proto") != 0 && strcmp(format, "json") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid record_format \"%s\"", format),
				 errhint("Use 'proto' (the default) or 'json'.")));
}

static void
stream_check_timeout(Interval *iv)
{
	/* in double: no day count or time can overflow it */
	double		us = (double) iv->day * USECS_PER_DAY + (double) iv->time;

	if (iv->month != 0 || us < USECS_PER_SEC || us > USECS_PER_DAY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ack_timeout must be between 1 second and 1 day")));
}

static void
stream_check_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", argname)));
}

/*
 * A stream's settings as one row of SQL: ZB_STREAM_COLUMNS (unqualified
 * columns of zerobus.stream_settings), decoded by zb_stream_row_decode().
 * zb_stream_lookup() and the scan worker read rows the same way, so that
 * zb_stream_fingerprint() gives the same value for the same catalog row.
 */
void
zb_stream_row_decode(HeapTuple tup, TupleDesc td, int first, const char *name, ZbStreamRow *row)
{
	bool		isnull;

	memset(row, 0, sizeof(*row));
	row->name = pstrdup(name);
	row->queue = DatumGetObjectId(SPI_getbinval(tup, td, first, &isnull));
	if (isnull)
		row->queue = InvalidOid;
	row->server = pstrdup(SPI_getvalue(tup, td, first + 1));
	row->target = pstrdup(SPI_getvalue(tup, td, first + 2));
	row->record_format = pstrdup(SPI_getvalue(tup, td, first + 3));
	row->batch_rows = DatumGetInt32(SPI_getbinval(tup, td, first + 4, &isnull));
	row->batch_bytes = DatumGetInt32(SPI_getbinval(tup, td, first + 5, &isnull));
	row->workers = DatumGetInt32(SPI_getbinval(tup, td, first + 6, &isnull));
	row->max_inflight = DatumGetInt32(SPI_getbinval(tup, td, first + 7, &isnull));
	row->ack_timeout_ms = zb_interval_ms(DatumGetIntervalP(SPI_getbinval(tup, td, first + 8, &isnull)));
	row->enabled = DatumGetBool(SPI_getbinval(tup, td, first + 9, &isnull));
	row->dedup_column = SPI_getvalue(tup, td, first + 10);	/* NULL if none */
	row->source = DatumGetObjectId(SPI_getbinval(tup, td, first + 11, &isnull));
	if (isnull)
		row->source = InvalidOid;
	if (OidIsValid(row->source))
	{
		/* a change-capture stream belongs to its capture role while it exists */
		row->capture_role = DatumGetObjectId(SPI_getbinval(tup, td, first + 12, &isnull));
		row->owner = SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(row->capture_role))
			? row->capture_role : InvalidOid;
		row->snapshot = DatumGetBool(SPI_getbinval(tup, td, first + 13, &isnull));
		row->update_preimage = DatumGetBool(SPI_getbinval(tup, td, first + 14, &isnull));
		row->slot_name = SPI_getvalue(tup, td, first + 15);
		row->seq_base = DatumGetInt64(SPI_getbinval(tup, td, first + 16, &isnull));
		row->cdc_started = DatumGetBool(SPI_getbinval(tup, td, first + 17, &isnull));
	}
	else
		row->owner = zb_queue_owner(row->queue);
}

/*
 * Every setting a stream's workers run with, as one number: the scan
 * worker publishes it with the stream (a change restarts the workers), and
 * a worker checks that the row it loaded is the one it was started for.
 * 'enabled' is not in it (it decides whether workers run at all), nor the
 * owner (read from pg_class, never stored), nor whether a change-capture
 * stream is established (its worker marks it so, and goes on); its slot is
 * (resync_stream gives it a new one, and new workers).
 */
uint32
zb_stream_fingerprint(const ZbStreamRow *row)
{
	char	   *text = psprintf("%u|%s|%s|%s|%d|%d|%d|%d|" INT64_FORMAT "|%s%s|%u|%u|%d|%d|%s|" INT64_FORMAT,
								row->queue, row->server, row->target, row->record_format,
								row->batch_rows, row->batch_bytes, row->workers,
								row->max_inflight, row->ack_timeout_ms,
								row->dedup_column ? "=" : "-",
								row->dedup_column ? row->dedup_column : "",
								row->source, row->capture_role, row->snapshot,
								row->update_preimage, row->slot_name ? row->slot_name : "",
								row->seq_base);
	uint32		h = hash_bytes((const unsigned char *) text, strlen(text));

	pfree(text);
	return h;
}

/*
 * Read a stream's row (with for_update, locked for a change); the owner is
 * its queue table's current owner (InvalidOid if the table is gone).
 * Returns false if there is no such stream.  Privileges are the callers'
 * business.
 */
bool
zb_stream_lookup(const char *name, bool for_update, ZbStreamRow *row)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	MemoryContext caller = CurrentMemoryContext;
	bool		found = false;

	SPI_connect();
	/* the row lock needs the catalog owner's rights */
	(void) zb_spi_as(zb_catalog_owner(),
					 psprintf("SELECT " ZB_STREAM_COLUMNS
							  " FROM zerobus.stream_settings WHERE name OPERATOR(pg_catalog.=) $1%s",
							  for_update ? " FOR UPDATE" : ""),
					 1, types, values, NULL, !for_update, 1);
	if (SPI_processed == 1)
	{
		MemoryContext old = MemoryContextSwitchTo(caller);

		zb_stream_row_decode(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, name, row);
		MemoryContextSwitchTo(old);
		found = true;
	}
	SPI_finish();
	return found;
}

/*
 * What keeps a stream's workers from acting on its queue as its owner, as
 * a message naming the problem and its fix; NULL if nothing does.  'need'
 * is the privileges needed on the queue (one bit at a time is checked);
 * with need_server, also the server, the owner's USAGE on it and a user
 * mapping.  *owner gets the queue's owner (InvalidOid if the queue is
 * gone).  Syscache lookups only: cheap enough for every batch.
 */
char *
zb_stream_problem(const ZbStreamRow *row, AclMode need, bool need_server, Oid *owner)
{
	char	   *rolename;
	char	   *relname;
	Oid			nsp;
	ForeignServer *server;
	int			bit;

	if (OidIsValid(row->source))
		return zb_cdc_stream_problem(row, owner);
	*owner = zb_queue_owner(row->queue);
	if (!OidIsValid(*owner))
		return psprintf("the queue table (OID %u) no longer exists: SELECT zerobus.drop_stream('%s');",
						row->queue, row->name);
	rolename = GetUserNameFromId(*owner, true);
	if (rolename == NULL)
		return psprintf("the owner (OID %u) of the queue table no longer exists", *owner);
	nsp = get_rel_namespace(row->queue);
	relname = quote_qualified_identifier(get_namespace_name(nsp), get_rel_name(row->queue));
	if (object_aclcheck(NamespaceRelationId, nsp, *owner, ACL_USAGE) != ACLCHECK_OK)
		return psprintf("role %s, the owner of %s, has no USAGE on its schema: GRANT USAGE ON SCHEMA %s TO %s;",
						quote_identifier(rolename), relname,
						quote_identifier(get_namespace_name(nsp)), quote_identifier(rolename));
	for (bit = 0; bit < N_ACL_RIGHTS; bit++)
	{
		AclMode		one = need & ((AclMode) 1 << bit);

		if (one != 0 && pg_class_aclcheck(row->queue, *owner, one) != ACLCHECK_OK)
			return psprintf("role %s has no %s privilege on its queue table %s: GRANT %s ON %s TO %s;",
							quote_identifier(rolename),
							one == ACL_SELECT ? "SELECT" : one == ACL_DELETE ? "DELETE" : "INSERT",
							relname,
							one == ACL_SELECT ? "SELECT" : one == ACL_DELETE ? "DELETE" : "INSERT",
							relname, quote_identifier(rolename));
	}
	if (!need_server)
		return NULL;
	server = GetForeignServerByName(row->server, true);
	if (server == NULL)
		return psprintf("server %s does not exist: SELECT zerobus.alter_stream('%s', server => '<server>');",
						quote_identifier(row->server), row->name);
	if (!zb_role_has_server_usage(*owner, server->serverid))
		return psprintf("role %s, the owner of the queue, has no USAGE on server %s: GRANT USAGE ON FOREIGN SERVER %s TO %s;",
						quote_identifier(rolename), quote_identifier(row->server),
						quote_identifier(row->server), quote_identifier(rolename));
	if (!SearchSysCacheExists2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(*owner),
							   ObjectIdGetDatum(server->serverid)) &&
		!SearchSysCacheExists2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(InvalidOid),
							   ObjectIdGetDatum(server->serverid)))
		return psprintf("role %s, the owner of the queue, has no user mapping for server %s: CREATE USER MAPPING FOR %s SERVER %s OPTIONS (client_id '<client id>', client_secret '<secret>');",
						quote_identifier(rolename), quote_identifier(row->server),
						quote_identifier(rolename), quote_identifier(row->server));
	return NULL;
}

/* Look up a stream the caller is about to change: it must have its owner's privileges. */
void
zb_stream_require(const char *name, bool for_update, ZbStreamRow *row)
{
	if (!zb_stream_lookup(name, for_update, row))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" does not exist", name),
				 errhint("SELECT name FROM zerobus.streams; lists the streams of this database.")));
	if (!OidIsValid(row->owner) && !superuser())
	{
		if (OidIsValid(row->source))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("the capture role of stream \"%s\" no longer exists", name),
					 errdetail("A change-capture stream belongs to its capture role; without the role only a superuser can change or drop it.")));
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the queue table of stream \"%s\" no longer exists", name),
				 errdetail("A stream belongs to its queue table's owner; without the table only a superuser can change or drop it.")));
	}
	if (OidIsValid(row->owner) && !has_privs_of_role(GetUserId(), row->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be a member of role \"%s\" to change stream \"%s\"",
						GetUserNameFromId(row->owner, false), name),
				 OidIsValid(row->source)
				 ? errdetail("A change-capture stream belongs to the role that created it.")
				 : errdetail("A stream belongs to the owner of its queue table.")));
}

/* Add (or re-add) the wake-up trigger, dropped with the extension. */
static void
stream_attach_queue(Oid queue)
{
	char	   *qname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(queue)),
												   get_rel_name(queue));
	ObjectAddress trigger;
	ObjectAddress extension;

	/* as the extension's owner: EXECUTE on queue_wakeup() is granted to no one else */
	zb_catalog_write(psprintf("CREATE OR REPLACE TRIGGER " QUEUE_TRIGGER
							  " AFTER INSERT ON %s FOR EACH STATEMENT"
							  " EXECUTE FUNCTION zerobus.queue_wakeup()", qname),
					 0, NULL, NULL, NULL);
	CommandCounterIncrement();
	ObjectAddressSet(trigger, TriggerRelationId, get_trigger_oid(queue, QUEUE_TRIGGER, false));
	ObjectAddressSet(extension, ExtensionRelationId, get_extension_oid("zerobus_fdw", false));
	recordDependencyOn(&trigger, &extension, DEPENDENCY_AUTO);
}

static void
stream_detach_queue(Oid queue)
{
	char	   *relname = get_rel_name(queue);

	if (relname == NULL)
		return;					/* the queue table is gone */
	zb_catalog_write(psprintf("DROP TRIGGER IF EXISTS " QUEUE_TRIGGER " ON %s",
							  quote_qualified_identifier(get_namespace_name(get_rel_namespace(queue)),
														 relname)),
					 0, NULL, NULL, NULL);
}

/* ---------- SQL-callable functions ---------- */

PG_FUNCTION_INFO_V1(zerobus_create_stream);

/* Arguments of create_stream that must not be NULL (queue and source are checked apart). */
static const struct
{
	int			argno;
	const char *name;
}			create_args[] =
{
	{0, "name"}, {2, "server"}, {3, "target"}, {4, "record_format"}, {5, "batch_rows"},
	{6, "batch_bytes"}, {7, "workers"}, {8, "max_inflight"}, {9, "ack_timeout"}, {10, "start"},
	{13, "snapshot"}, {14, "update_preimage"}
};

/*
 * The dedup_column argument of create_stream/alter_stream: NULL or '' for
 * none, else a field name records of the queue can carry besides its columns.
 */
static char *
stream_check_dedup_column(FunctionCallInfo fcinfo, int argno, Oid queue)
{
	char	   *key;
	Relation	rel;

	if (PG_ARGISNULL(argno))
		return NULL;
	key = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (key[0] == '\0')
		return NULL;
	if (!OidIsValid(queue))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a change-capture stream takes no dedup_column"),
				 errdetail("Its records carry _seq, the same in every copy of a change and different for every other.")));
	rel = table_open(queue, AccessShareLock);
	zb_record_check_key(RelationGetDescr(rel), RelationGetRelationName(rel), key);
	table_close(rel, AccessShareLock);
	return key;
}

/*
 * The source table of a change-capture stream (docs/DESIGN.md, "Change
 * capture"): capturable, and the caller (who becomes the capture role) may
 * capture it.
 */
static void
stream_check_source(Oid source, bool preimage)
{
	char	   *problem;
	char	   *hint;
	char	   *warning;
	int			sqlstate;

	/* does it exist (a dropped table's OID in a regclass argument)? */
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(source)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", source)));
	problem = zb_cdc_source_problem(source, preimage, true, true, &sqlstate, &hint, &warning);
	if (problem)
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg_internal("%s", problem),
				 hint ? errhint("%s", hint) : 0));
	problem = zb_cdc_capture_problem(source, GetUserId(), &sqlstate, &hint);
	if (problem)
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg_internal("%s", problem),
				 errdetail("A change-capture stream reads every row of its table as the role that creates it: the table's owner, or a role with REPLICATION and SELECT, to which no row-level security applies."),
				 hint ? errhint("%s", hint) : 0));
	if (warning)
	{
		char	   *nl = strchr(warning, '\n');

		if (nl)
			*nl++ = '\0';
		ereport(WARNING,
				(errmsg_internal("%s", warning),
				 nl ? errhint("%s", nl) : 0));
	}
}

Datum
zerobus_create_stream(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			queue = InvalidOid;
	Oid			source = InvalidOid;
	char	   *server;
	char	   *target;
	char	   *format;
	Interval   *ack_timeout;
	char	   *dedup_column;
	bool		snapshot;
	bool		preimage;
	ZbStreamRow existing;
	Oid			types[18] = {TEXTOID, OIDOID, NAMEOID, TEXTOID, TEXTOID,
		INT4OID, INT4OID, INT4OID, INT4OID, INTERVALOID, BOOLOID, TEXTOID,
	OIDOID, OIDOID, BOOLOID, BOOLOID, TEXTOID, INT8OID};
	Datum		values[18];
	char		nulls[18];
	int			i;

	(void) zb_shmem();
	for (i = 0; i < lengthof(create_args); i++)
		stream_check_arg(fcinfo, create_args[i].argno, create_args[i].name);
	if (PG_ARGISNULL(1) == PG_ARGISNULL(12))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg(PG_ARGISNULL(1) ? "a stream needs a queue or a source"
						: "queue and source are mutually exclusive"),
				 errhint("queue => a queue table: its rows are delivered and deleted; source => any table: its committed changes are delivered, nothing is deleted.")));

	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	server = NameStr(*PG_GETARG_NAME(2));
	target = text_to_cstring(PG_GETARG_TEXT_PP(3));
	format = text_to_cstring(PG_GETARG_TEXT_PP(4));
	ack_timeout = PG_GETARG_INTERVAL_P(9);
	snapshot = PG_GETARG_BOOL(13);
	preimage = PG_GETARG_BOOL(14);

	stream_check_name(name);
	if (!PG_ARGISNULL(1))
	{
		queue = PG_GETARG_OID(1);
		if (!snapshot || preimage)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s applies only to change-capture streams (source => <table>)",
							preimage ? "update_preimage" : "snapshot")));
		stream_check_queue(queue);
		stream_check_server(server, zb_queue_owner(queue));
	}
	else
	{
		source = PG_GETARG_OID(12);
		stream_check_source(source, preimage);
		stream_check_server(server, GetUserId());
		if (PG_GETARG_INT32(7) != 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a change-capture stream has one worker"),
					 errdetail("Its changes are decoded from one replication slot, in commit order.")));
	}
	zb_check_table_name(target, "target table");
	stream_check_format(format);
	stream_check_range("batch_rows", PG_GETARG_INT32(5), 1, 100000);
	stream_check_range("batch_bytes", PG_GETARG_INT32(6), 1024, 10000000);
	stream_check_range("workers", PG_GETARG_INT32(7), 1, ZB_MAX_STREAM_WORKERS);
	stream_check_range("max_inflight", PG_GETARG_INT32(8), 1, 1000000);
	stream_check_timeout(ack_timeout);
	dedup_column = stream_check_dedup_column(fcinfo, 11, queue);

	if (zb_stream_lookup(name, false, &existing))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("stream \"%s\" already exists", name)));
	if (OidIsValid(queue))
	{
		Oid			qtypes[1] = {OIDOID};
		Datum		qvalues[1] = {ObjectIdGetDatum(queue)};

		if (zb_catalog_write("SELECT 1 FROM zerobus.stream_settings"
							 " WHERE queue::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
							 1, qtypes, qvalues, NULL) > 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("table \"%s\" is already the queue of another stream",
							get_rel_name(queue)),
					 errhint("A queue table feeds one stream; see zerobus.streams.")));
	}
	else if (!TransactionIdIsValid(GetTopTransactionIdIfAny()))
	{
		/* slots whose streams are gone (this transaction has dropped none) */
		(void) zb_cdc_sweep();
	}

	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(name);
	values[1] = ObjectIdGetDatum(queue);
	nulls[1] = OidIsValid(queue) ? ' ' : 'n';
	values[2] = PG_GETARG_DATUM(2);
	values[3] = CStringGetTextDatum(target);
	values[4] = CStringGetTextDatum(format);
	for (i = 5; i <= 8; i++)
		values[i] = PG_GETARG_DATUM(i);
	values[9] = IntervalPGetDatum(ack_timeout);
	values[10] = PG_GETARG_DATUM(10);
	values[11] = dedup_column ? CStringGetTextDatum(dedup_column) : (Datum) 0;
	nulls[11] = dedup_column ? ' ' : 'n';
	values[12] = ObjectIdGetDatum(source);
	values[13] = ObjectIdGetDatum(GetUserId());
	values[14] = BoolGetDatum(snapshot);
	values[15] = BoolGetDatum(preimage);
	if (OidIsValid(source))
	{
		/* named after this transaction's 64-bit id: never used again */
		values[16] = CStringGetTextDatum(zb_cdc_slot_name(MyDatabaseId, GetTopFullTransactionId()));
		values[17] = Int64GetDatum(zb_cdc_seq_base(NULL));
	}
	else
	{
		for (i = 12; i <= 17; i++)
			if (i != 14 && i != 15)
				nulls[i] = 'n';
	}
	zb_catalog_write("INSERT INTO zerobus.stream_settings (name, queue, server, target,"
					 " record_format, batch_rows, batch_bytes, workers, max_inflight,"
					 " ack_timeout, enabled, dedup_column, source, capture_role, snapshot,"
					 " update_preimage, slot_name, seq_base)"
					 " VALUES ($1, $2::pg_catalog.regclass, $3, $4, $5, $6,"
					 " $7, $8, $9, $10, $11, $12, $13::pg_catalog.regclass,"
					 " $14::pg_catalog.regrole, $15, $16, $17::pg_catalog.name, $18)",
					 18, types, values, nulls);
	if (OidIsValid(queue))
		stream_attach_queue(queue);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(zerobus_alter_stream);

Datum
zerobus_alter_stream(PG_FUNCTION_ARGS)
{
	char	   *name;
	ZbStreamRow row;
	StringInfoData sql;
	Oid			types[11];
	Datum		values[11];
	int			n = 0;

	(void) zb_shmem();
	stream_check_arg(fcinfo, 0, "name");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	zb_stream_require(name, true, &row);

	initStringInfo(&sql);
	appendStringInfoString(&sql, "UPDATE zerobus.stream_settings SET name = name");
#define SET_COL(col, type, datum) \
	do { \
		types[n] = (type); values[n] = (datum); n++; \
		appendStringInfo(&sql, ", " col " = $%d", n); \
	} while (0)

	if (!PG_ARGISNULL(1))
	{
		stream_check_server(NameStr(*PG_GETARG_NAME(1)), row.owner);
		SET_COL("server", NAMEOID, PG_GETARG_DATUM(1));
	}
	if (!PG_ARGISNULL(2))
	{
		zb_check_table_name(text_to_cstring(PG_GETARG_TEXT_PP(2)), "target table");
		SET_COL("target", TEXTOID, PG_GETARG_DATUM(2));
	}
	if (!PG_ARGISNULL(3))
	{
		stream_check_format(text_to_cstring(PG_GETARG_TEXT_PP(3)));
		SET_COL("record_format", TEXTOID, PG_GETARG_DATUM(3));
	}
	if (!PG_ARGISNULL(4))
	{
		stream_check_range("batch_rows", PG_GETARG_INT32(4), 1, 100000);
		SET_COL("batch_rows", INT4OID, PG_GETARG_DATUM(4));
	}
	if (!PG_ARGISNULL(5))
	{
		stream_check_range("batch_bytes", PG_GETARG_INT32(5), 1024, 10000000);
		SET_COL("batch_bytes", INT4OID, PG_GETARG_DATUM(5));
	}
	if (!PG_ARGISNULL(6))
	{
		stream_check_range("workers", PG_GETARG_INT32(6), 1, ZB_MAX_STREAM_WORKERS);
		if (OidIsValid(row.source) && PG_GETARG_INT32(6) != 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a change-capture stream has one worker"),
					 errdetail("Its changes are decoded from one replication slot, in commit order.")));
		SET_COL("workers", INT4OID, PG_GETARG_DATUM(6));
	}
	if (!PG_ARGISNULL(7))
	{
		stream_check_range("max_inflight", PG_GETARG_INT32(7), 1, 1000000);
		SET_COL("max_inflight", INT4OID, PG_GETARG_DATUM(7));
	}
	if (!PG_ARGISNULL(8))
	{
		stream_check_timeout(PG_GETARG_INTERVAL_P(8));
		SET_COL("ack_timeout", INTERVALOID, PG_GETARG_DATUM(8));
	}
	if (!PG_ARGISNULL(9))
	{
		char	   *key = stream_check_dedup_column(fcinfo, 9, row.queue);

		if (key)
			SET_COL("dedup_column", TEXTOID, CStringGetTextDatum(key));
		else
			appendStringInfoString(&sql, ", dedup_column = NULL");
	}
#undef SET_COL
	types[n] = TEXTOID;
	values[n] = CStringGetTextDatum(name);
	n++;
	appendStringInfo(&sql, " WHERE name OPERATOR(pg_catalog.=) $%d", n);
	zb_catalog_write(sql.data, n, types, values, NULL);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(zerobus_drop_stream);

Datum
zerobus_drop_stream(PG_FUNCTION_ARGS)
{
	char	   *name;
	bool		if_exists = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	ZbStreamRow row;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	(void) zb_shmem();
	stream_check_arg(fcinfo, 0, "name");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));

	/*
	 * Lock the row first: a concurrent drop either finished before (no row
	 * now) or waits for ours, so if_exists never sees a stream vanish
	 * between looking and deleting.
	 */
	if (if_exists && !zb_stream_lookup(name, true, &row))
	{
		ereport(NOTICE,
				(errmsg("stream \"%s\" does not exist, skipping", name)));
		PG_RETURN_VOID();
	}
	zb_stream_require(name, true, &row);
	values[0] = CStringGetTextDatum(name);
	zb_catalog_write("DELETE FROM zerobus.stream_settings WHERE name OPERATOR(pg_catalog.=) $1",
					 1, types, values, NULL);
	if (OidIsValid(row.queue))
		stream_detach_queue(row.queue);
	if (row.slot_name)
		zb_cdc_drop_at_commit(row.slot_name);
	PG_RETURN_VOID();
}

static void
stream_set_enabled(const char *name, bool enabled)
{
	ZbStreamRow row;
	Oid			types[2] = {BOOLOID, TEXTOID};
	Datum		values[2] = {BoolGetDatum(enabled), CStringGetTextDatum(name)};

	(void) zb_shmem();
	zb_stream_require(name, true, &row);
	zb_catalog_write("UPDATE zerobus.stream_settings SET enabled = $1"
					 " WHERE name OPERATOR(pg_catalog.=) $2",
					 2, types, values, NULL);
}

PG_FUNCTION_INFO_V1(zerobus_start_stream);

Datum
zerobus_start_stream(PG_FUNCTION_ARGS)
{
	stream_set_enabled(text_to_cstring(PG_GETARG_TEXT_PP(0)), true);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(zerobus_stop_stream);

Datum
zerobus_stop_stream(PG_FUNCTION_ARGS)
{
	stream_set_enabled(text_to_cstring(PG_GETARG_TEXT_PP(0)), false);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(zerobus_record_descriptor);

/*
 * The DescriptorProto a stream's records are encoded with (PROTO records;
 * JSON ones have the same fields), as its workers would send it now: to
 * decode records, or to compare with a Delta table.  For the stream's owner.
 */
Datum
zerobus_record_descriptor(PG_FUNCTION_ARGS)
{
	char	   *name;
	ZbStreamRow row;
	Oid			relid;
	Relation	rel;
	ZbRecordSchema *schema;
	bytea	   *result;
	char	   *hint;
	int			sqlstate;
	char	   *problem;

	stream_check_arg(fcinfo, 0, "name");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!zb_stream_lookup(name, false, &row))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" does not exist", name)));
	if (!OidIsValid(row.owner) || !has_privs_of_role(GetUserId(), row.owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for the record descriptor of stream \"%s\"", name)));
	relid = OidIsValid(row.source) ? row.source : row.queue;
	rel = table_open(relid, AccessShareLock);
	problem = OidIsValid(row.source)
		? zb_record_cdc_problem(RelationGetDescr(rel), RelationGetRelationName(rel), &hint, &sqlstate)
		: zb_record_columns_problem(RelationGetDescr(rel), RelationGetRelationName(rel), &hint,
									&sqlstate);
	if (problem)
		ereport(ERROR,
				(errcode(sqlstate), errmsg_internal("%s", problem),
				 hint ? errhint("%s", hint) : 0));
	schema = OidIsValid(row.source)
		? zb_record_schema_cdc(RelationGetDescr(rel), RelationGetRelationName(rel))
		: zb_record_schema(RelationGetDescr(rel), RelationGetRelationName(rel), 0,
						   row.dedup_column);
	table_close(rel, AccessShareLock);
	result = palloc(VARHDRSZ + schema->descriptor_len);
	SET_VARSIZE(result, VARHDRSZ + schema->descriptor_len);
	memcpy(VARDATA(result), schema->descriptor, schema->descriptor_len);
	PG_RETURN_BYTEA_P(result);
}

/* ---------- flush ---------- */

/*
 * Rows of the queue, as of now, that were committed before 'before' was
 * taken, from block *from on.  With stop_at_first, 0 or 1, and *from is set
 * to the block of the one found: such rows never move, so blocks before it
 * need no second look.
 */
static int64
flush_count_pending(Oid queue, Snapshot before, bool stop_at_first, BlockNumber *from)
{
	Snapshot	now = RegisterSnapshot(GetLatestSnapshot());
	Relation	rel = table_open(queue, AccessShareLock);
	BlockNumber nblocks = RelationGetNumberOfBlocks(rel);
	TableScanDesc scan;
	HeapTuple	tup;
	int64		pending = 0;

	if (*from >= nblocks)
	{
		table_close(rel, AccessShareLock);
		UnregisterSnapshot(now);
		return 0;
	}
	/* no synchronized scan: it must start at *from */
	scan = table_beginscan_strat(rel, now, 0, NULL, true, false);
	heap_setscanlimits(scan, *from, nblocks - *from);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		TransactionId xmin = HeapTupleHeaderGetXmin(tup->t_data);

		/* our own uncommitted rows were not committed before the call */
		if (TransactionIdIsCurrentTransactionId(xmin))
			continue;
		if (HeapTupleHeaderXminFrozen(tup->t_data) ||
			(!XidInMVCCSnapshot(xmin, before) && TransactionIdDidCommit(xmin)))
		{
			pending++;
			if (stop_at_first)
			{
				*from = ItemPointerGetBlockNumber(&tup->t_self);
				break;
			}
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	UnregisterSnapshot(now);
	return pending;
}

PG_FUNCTION_INFO_V1(zerobus_flush);

Datum
zerobus_flush(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Interval   *iv = PG_GETARG_INTERVAL_P(1);
	int64		timeout_ms = zb_interval_ms(iv);
	ZbStreamRow row;
	Snapshot	before;
	int64		initial;
	TimestampTz deadline;
	BlockNumber from = 0;

	(void) zb_shmem();
	if (!zb_stream_lookup(name, false, &row))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" does not exist", name)));
	if (OidIsValid(row.source))
		PG_RETURN_INT64(zb_cdc_flush(name, &row, iv));
	if (pg_class_aclcheck(row.queue, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(row.queue));
	if (!row.enabled)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream \"%s\" is stopped, so its queue cannot drain", name),
				 errhint("SELECT zerobus.start_stream('%s');", name)));

	before = RegisterSnapshot(GetTransactionSnapshot());
	initial = flush_count_pending(row.queue, before, false, &from);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	while (initial > 0 && flush_count_pending(row.queue, before, true, &from) > 0)
	{
		long		left = (long) ((deadline - GetCurrentTimestamp()) / 1000);

		if (left <= 0)
		{
			ZbStreamSnapshot snap;

			zb_stream_snapshot(MyDatabaseId, name, &snap);
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("stream \"%s\" did not deliver its queue within %s", name,
							DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(iv)))),
					 errdetail("Stream state: %s%s%s.", snap.state,
							   snap.last_error[0] ? "; last error: " : "", snap.last_error),
					 errhint("SELECT * FROM zb_metrics; shows the stream's progress.")));
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(left, 10), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	UnregisterSnapshot(before);
	PG_RETURN_INT64(initial);
}

/* The state and last error of a stream, for messages. */
void
zb_stream_snapshot(Oid dboid, const char *name, ZbStreamSnapshot *snap)
{
	ZbShared   *sh = zb_shmem();
	ZbStreamReport *r = palloc(sizeof(ZbStreamReport));
	int			slot;

	strlcpy(snap->state, "not running", sizeof(snap->state));
	snap->last_error[0] = '\0';
	LWLockAcquire(sh->lock, LW_SHARED);
	slot = zb_slot_find(dboid, name);
	LWLockRelease(sh->lock);
	/* the slot may have changed hands since: the report says whose it is */
	if (slot >= 0 && zb_stream_report(slot, r, true) &&
		r->dboid == dboid && strcmp(r->name, name) == 0)
	{
		strlcpy(snap->state, zb_state_name(r->state), sizeof(snap->state));
		strlcpy(snap->last_error, r->last_error, sizeof(snap->last_error));
	}
	pfree(r);
}
