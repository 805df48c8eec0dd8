/*-------------------------------------------------------------------------
 * cdccheck.c
 *	  Change capture: what may be captured, and by whom.  The capture
 *	  role's privileges (owner, or REPLICATION and SELECT; no row-level
 *	  security) and the server's and table's prerequisites (wal_level, the
 *	  output plugin allowed, a free slot, a logged table with a replica
 *	  identity and columns records can carry).  Checked by create_stream,
 *	  at every start of the worker, and by peek_changes; each problem comes
 *	  with the statement that fixes it.  See docs/DESIGN.md, "Who may
 *	  capture a table" and "Validation (create_stream)".
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xlog.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "replication/slot.h"
#include "storage/lwlock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/rls.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "compat.h"
#include "cdc.h"
#include "foreign/foreign.h"
#include "record.h"
#include "stream.h"

/*
 * The capture role must own the table, or have REPLICATION (or be
 * superuser) and SELECT on it; USAGE on its schema; and no row-level
 * security may apply to it on the table or its partitions (the copy and the
 * decoding read every row below the executor).  NULL, or the problem with
 * the statement that fixes it.
 */
char *
zb_cdc_capture_problem(Oid source, Oid role, int *sqlstate, char **hint)
{
	HeapTuple	tup;
	Form_pg_authid auth;
	bool		replication;
	bool		super;
	char	   *rolename;
	char	   *relname;
	Oid			nsp;
	List	   *rels;
	ListCell   *lc;

	*sqlstate = ERRCODE_INSUFFICIENT_PRIVILEGE;
	*hint = NULL;
	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(role));
	if (!HeapTupleIsValid(tup))
		return psprintf("the capture role (OID %u) no longer exists", role);
	auth = (Form_pg_authid) GETSTRUCT(tup);
	replication = auth->rolreplication;
	super = auth->rolsuper;
	rolename = pstrdup(NameStr(auth->rolname));
	ReleaseSysCache(tup);
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(source)))
	{
		*sqlstate = ERRCODE_UNDEFINED_TABLE;
		return psprintf("the source table (OID %u) no longer exists", source);
	}
	nsp = get_rel_namespace(source);
	relname = quote_qualified_identifier(get_namespace_name(nsp), get_rel_name(source));
	if (object_aclcheck(NamespaceRelationId, nsp, role, ACL_USAGE) != ACLCHECK_OK)
	{
		*hint = psprintf("GRANT USAGE ON SCHEMA %s TO %s;",
						 quote_identifier(get_namespace_name(nsp)), quote_identifier(rolename));
		return psprintf("role \"%s\" has no USAGE on the schema of table %s", rolename, relname);
	}
	if (!object_ownercheck(RelationRelationId, source, role))
	{
		if (!replication && !super)
		{
			*hint = psprintf("Capture as the table's owner, or ALTER ROLE %s REPLICATION;",
							 quote_identifier(rolename));
			return psprintf("role \"%s\" neither owns table %s nor has the REPLICATION attribute",
							rolename, relname);
		}
		if (pg_class_aclcheck(source, role, ACL_SELECT) != ACLCHECK_OK)
		{
			*hint = psprintf("GRANT SELECT ON %s TO %s;", relname, quote_identifier(rolename));
			return psprintf("role \"%s\" has no SELECT privilege on table %s", rolename, relname);
		}
	}
	rels = get_rel_relkind(source) == RELKIND_PARTITIONED_TABLE
		? find_all_inheritors(source, NoLock, NULL) : list_make1_oid(source);
	foreach(lc, rels)
	{
		Oid			relid = lfirst_oid(lc);

		if (check_enable_rls(relid, role, true) == RLS_ENABLED)
		{
			*hint = psprintf("ALTER TABLE %s NO FORCE ROW LEVEL SECURITY; or capture as a role row-level security does not apply to (the owner, or a role with BYPASSRLS).",
							 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
														get_rel_name(relid)));
			return psprintf("row-level security applies to role \"%s\" on table %s, so it may not read every row",
							rolename, get_rel_name(relid));
		}
	}
	return NULL;
}

/* Does output_plugin_libraries (a GUC list) name our plugin? */
static bool
cdc_plugin_trusted(const char *allowed)
{
	char	   *copy = pstrdup(allowed);
	List	   *names = NIL;
	ListCell   *lc;

	if (!SplitGUCList(copy, ',', &names))
		return false;
	foreach(lc, names)
		if (strcmp(lfirst(lc), ZB_CDC_PLUGIN) == 0)
			return true;
	return false;
}

/*
 * Can this table's changes be captured at all?  wal_level, a free slot
 * (need_slot: the stream has none yet), the kind of table, its replica
 * identity, and (columns) whether records can carry its columns of now:
 * create_stream asks; a running stream does not, since the plugin judges
 * each change by the columns of its moment and pauses the stream exactly
 * there.  NULL, or the problem (*sqlstate, *hint).  *warning: something that works but may stop the
 * stream later (an UPDATE keeping a TOASTed value without REPLICA IDENTITY
 * FULL): the message, a newline, and its hint.
 */
char *
zb_cdc_source_problem(Oid source, bool preimage, bool need_slot, bool columns, int *sqlstate,
					  char **hint, char **warning)
{
	Relation	rel;
	char	   *relname;
	char	   *problem = NULL;
	List	   *leaves = NIL;
	ListCell   *lc;
	int			free_slots = 0;
	int			i;
	const char *allowed;

	*hint = NULL;
	*warning = NULL;
	*sqlstate = ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
	if (wal_level < WAL_LEVEL_LOGICAL)
	{
		*hint = pstrdup("ALTER SYSTEM SET wal_level = logical; then restart the server (wal_level takes effect only at a restart).");
		return pstrdup("change capture needs wal_level = logical");
	}
	/*
	 * Minor releases from 2026 on (15.20, 18.6) load as an output plugin only
	 * a library output_plugin_libraries names, for every user.
	 */
	allowed = GetConfigOption("output_plugin_libraries", true, false);
	if (allowed != NULL && !cdc_plugin_trusted(allowed))
	{
		/* a list: each name its own literal, or ALTER SYSTEM keeps one long name */
		StringInfoData list;
		char	   *copy = pstrdup(allowed);
		List	   *names = NIL;
		ListCell   *name;

		initStringInfo(&list);
		if (SplitGUCList(copy, ',', &names))
			foreach(name, names)
				appendStringInfo(&list, "%s, ", quote_literal_cstr(lfirst(name)));
		*hint = psprintf("ALTER SYSTEM SET output_plugin_libraries = %s'" ZB_CDC_PLUGIN "'; SELECT pg_reload_conf();",
						 list.data);
		return pstrdup("output_plugin_libraries does not name zerobus_fdw, so PostgreSQL refuses it as the output plugin of change capture");
	}
	if (need_slot && max_replication_slots > 0)
	{
		LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
		for (i = 0; i < max_replication_slots; i++)
			if (!ReplicationSlotCtl->replication_slots[i].in_use)
				free_slots++;
		LWLockRelease(ReplicationSlotControlLock);
	}
	if (need_slot && free_slots == 0)
	{
		*sqlstate = ERRCODE_CONFIGURATION_LIMIT_EXCEEDED;
		*hint = psprintf("Each change capture stream uses a replication slot: ALTER SYSTEM SET max_replication_slots = %d; then restart the server, or drop unused slots (pg_replication_slots).",
						 max_replication_slots + 10);
		return psprintf("all %d replication slots are in use (max_replication_slots)",
						max_replication_slots);
	}

	rel = table_open(source, AccessShareLock);
	relname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
										 RelationGetRelationName(rel));
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
	{
		*sqlstate = ERRCODE_WRONG_OBJECT_TYPE;
		*hint = pstrdup("Capture an ordinary or a partitioned table.");
		problem = psprintf("\"%s\" is not a table whose changes can be captured", relname);
	}
	else if (rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT)
	{
		*hint = rel->rd_rel->relpersistence == RELPERSISTENCE_UNLOGGED
			? psprintf("ALTER TABLE %s SET LOGGED;", relname) : NULL;
		problem = psprintf("table %s is not logged, so its changes are not in the WAL", relname);
	}
	else if (IsCatalogRelation(rel))
	{
		*sqlstate = ERRCODE_INSUFFICIENT_PRIVILEGE;
		problem = pstrdup("the changes of a system catalog cannot be captured");
	}
	else if (columns)
	{
		char	   *cols_hint;
		int			cols_state;

		problem = zb_record_cdc_problem(RelationGetDescr(rel), RelationGetRelationName(rel),
										&cols_hint, &cols_state);
		if (problem)
		{
			*sqlstate = cols_state;
			*hint = cols_hint;
		}
	}
	if (problem == NULL)
	{
		if (rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
			leaves = find_all_inheritors(source, AccessShareLock, NULL);
		else
			leaves = list_make1_oid(source);
	}
	foreach(lc, leaves)
	{
		Oid			relid = lfirst_oid(lc);
		char		kind = get_rel_relkind(relid);
		Relation	leaf;
		char	   *leafname;

		if (kind == RELKIND_PARTITIONED_TABLE)
			continue;
		leaf = relid == source ? rel : table_open(relid, AccessShareLock);
		leafname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(leaf)),
											  RelationGetRelationName(leaf));
		if (kind != RELKIND_RELATION)
		{
			*sqlstate = ERRCODE_WRONG_OBJECT_TYPE;
			problem = psprintf("partition %s of table %s is not an ordinary table (a foreign table's rows are not in this server's WAL)",
							   leafname, relname);
		}
		else if (leaf->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT)
		{
			*hint = psprintf("ALTER TABLE %s SET LOGGED;", leafname);
			problem = psprintf("partition %s is not logged, so its changes are not in the WAL",
							   leafname);
		}
		else
		{
			char		ident = leaf->rd_rel->relreplident;
			bool		has_key;

			list_free(RelationGetIndexList(leaf));
			has_key = ident == REPLICA_IDENTITY_FULL ||
				(ident == REPLICA_IDENTITY_INDEX && OidIsValid(RelationGetReplicaIndex(leaf))) ||
				(ident == REPLICA_IDENTITY_DEFAULT && OidIsValid(leaf->rd_pkindex));
			if (!has_key)
			{
				*hint = psprintf("Add a primary key, or ALTER TABLE %s REPLICA IDENTITY FULL; (or REPLICA IDENTITY USING INDEX).",
								 leafname);
				problem = psprintf("table %s has no replica identity, so the WAL would not say which row an UPDATE or DELETE changed",
								   leafname);
			}
			else if (preimage && ident != REPLICA_IDENTITY_FULL)
			{
				*hint = psprintf("ALTER TABLE %s REPLICA IDENTITY FULL;", leafname);
				problem = psprintf("update_preimage needs the old rows in the WAL: table %s has no REPLICA IDENTITY FULL",
								   leafname);
			}
			else if (ident != REPLICA_IDENTITY_FULL && *warning == NULL)
			{
				TupleDesc	td = RelationGetDescr(leaf);
				int			a;

				for (a = 0; a < td->natts; a++)
				{
					Form_pg_attribute att = TupleDescAttr(td, a);

					if (!att->attisdropped && att->attlen == -1 && att->attstorage != TYPSTORAGE_PLAIN)
					{
						*warning = psprintf("an UPDATE of %s that leaves column \"%s\" unchanged while its value is stored out of line (TOAST, values over about 2 kB) cannot be captured without REPLICA IDENTITY FULL, and would pause the stream\n"
											"ALTER TABLE %s REPLICA IDENTITY FULL; makes every UPDATE of it capturable (it logs whole old rows).",
											leafname, NameStr(att->attname), leafname);
						break;
					}
				}
			}
		}
		if (leaf != rel)
			table_close(leaf, AccessShareLock);
		if (problem)
			break;
	}
	table_close(rel, AccessShareLock);
	return problem;
}

/*
 * What keeps a change-capture stream's worker from capturing its table
 * (zb_stream_problem() for a stream with a source): the capture role, the
 * table and the server, as a message with its fix, or NULL.
 */
char *
zb_cdc_stream_problem(const ZbStreamRow *row, Oid *owner)
{
	char	   *problem;
	char	   *hint;
	char	   *warning;
	int			sqlstate;
	char	   *rolename;
	ForeignServer *server;

	*owner = row->owner;
	if (!OidIsValid(*owner))
		return psprintf("the capture role (OID %u) of the stream no longer exists: SELECT zerobus.drop_stream('%s');",
						row->capture_role, row->name);
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(row->source)))
		return psprintf("the source table (OID %u) no longer exists: SELECT zerobus.drop_stream('%s');",
						row->source, row->name);
	problem = zb_cdc_capture_problem(row->source, *owner, &sqlstate, &hint);
	if (problem == NULL)
		problem = zb_cdc_source_problem(row->source, row->update_preimage,
										!zb_cdc_slot_exists(row->slot_name), false, &sqlstate,
										&hint, &warning);
	if (problem)
		return hint ? psprintf("%s: %s", problem, hint) : problem;
	rolename = GetUserNameFromId(*owner, false);
	server = GetForeignServerByName(row->server, true);
	if (server == NULL)
		return psprintf("server %s does not exist: SELECT zerobus.alter_stream('%s', server => '<server>');",
						quote_identifier(row->server), row->name);
	if (!zb_role_has_server_usage(*owner, server->serverid))
		return psprintf("role %s, the capture role, has no USAGE on server %s: GRANT USAGE ON FOREIGN SERVER %s TO %s;",
						quote_identifier(rolename), quote_identifier(row->server),
						quote_identifier(row->server), quote_identifier(rolename));
	if (!SearchSysCacheExists2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(*owner),
							   ObjectIdGetDatum(server->serverid)) &&
		!SearchSysCacheExists2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(InvalidOid),
							   ObjectIdGetDatum(server->serverid)))
		return psprintf("role %s, the capture role, has no user mapping for server %s: CREATE USER MAPPING FOR %s SERVER %s OPTIONS (client_id '<client id>', client_secret '<secret>');",
						quote_identifier(rolename), quote_identifier(row->server),
						quote_identifier(rolename), quote_identifier(row->server));
	return NULL;
}
