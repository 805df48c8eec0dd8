/*
 * compat.h
 *		Differences between the PostgreSQL majors zerobus_fdw supports
 *		(15 to 18), in one place.
 *
 * Every PG_VERSION_NUM test of the extension lives here; the .c files use
 * one spelling.  Where a newer major renamed or extended an API, the newer
 * spelling is the one the code uses and older majors get a definition of it
 * (object_aclcheck on 15, GetNumberFromPGProc before 17); where an API had
 * to change shape (planner path constructors, JSON callbacks), the code uses
 * a zb_ macro defined here for every major.  Include it after postgres.h.
 * docs/DESIGN.md ("Supported majors") lists what each guard is for.
 */
#ifndef ZB_COMPAT_H
#define ZB_COMPAT_H

#if PG_VERSION_NUM < 150000
#error "zerobus_fdw needs PostgreSQL 15 or later"
#endif

/*
 * Object privileges (16 unified the per-catalog pg_*_aclcheck/ownercheck
 * functions into object_aclcheck/object_ownercheck).  15 gets the 16
 * spelling for the catalogs whose objects the extension checks.
 */
#if PG_VERSION_NUM < 160000
#include "catalog/pg_class.h"
#include "catalog/pg_database.h"
#include "catalog/pg_foreign_data_wrapper.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "utils/acl.h"

static inline AclResult
object_aclcheck(Oid classid, Oid objectid, Oid roleid, AclMode mode)
{
	switch (classid)
	{
		case ForeignServerRelationId:
			return pg_foreign_server_aclcheck(objectid, roleid, mode);
		case ForeignDataWrapperRelationId:
			return pg_foreign_data_wrapper_aclcheck(objectid, roleid, mode);
		case NamespaceRelationId:
			return pg_namespace_aclcheck(objectid, roleid, mode);
		case ProcedureRelationId:
			return pg_proc_aclcheck(objectid, roleid, mode);
		case DatabaseRelationId:
			return pg_database_aclcheck(objectid, roleid, mode);
	}
	elog(ERROR, "object_aclcheck: catalog %u is not handled on PostgreSQL 15", classid);
	return ACLCHECK_NO_PRIV;
}

static inline bool
object_ownercheck(Oid classid, Oid objectid, Oid roleid)
{
	switch (classid)
	{
		case RelationRelationId:
			return pg_class_ownercheck(objectid, roleid);
		case ForeignServerRelationId:
			return pg_foreign_server_ownercheck(objectid, roleid);
		case NamespaceRelationId:
			return pg_namespace_ownercheck(objectid, roleid);
		case ProcedureRelationId:
			return pg_proc_ownercheck(objectid, roleid);
		case DatabaseRelationId:
			return pg_database_ownercheck(objectid, roleid);
	}
	elog(ERROR, "object_ownercheck: catalog %u is not handled on PostgreSQL 15", classid);
	return false;
}
#endif

/*
 * JSON semantic-action callbacks return a JsonParseErrorType from 16 on
 * (void before).  Declare them ZB_JSON_CB and end them with ZB_JSON_CB_OK.
 */
#if PG_VERSION_NUM >= 160000
#define ZB_JSON_CB JsonParseErrorType
#define ZB_JSON_CB_OK return JSON_SUCCESS
#else
#define ZB_JSON_CB void
#define ZB_JSON_CB_OK return
#endif

/* 17: a JSON lexer can live in caller-provided storage (NULL: palloc'd). */
#if PG_VERSION_NUM >= 170000
#define zb_json_lex_cstring(json, len, encoding, need_escapes) \
	makeJsonLexContextCstringLen(NULL, (json), (len), (encoding), (need_escapes))
#else
#define zb_json_lex_cstring(json, len, encoding, need_escapes) \
	makeJsonLexContextCstringLen((json), (len), (encoding), (need_escapes))
#endif

/*
 * Planner: a foreign scan path without a parameterization target (17 added
 * fdw_restrictinfo, 18 the count of disabled nodes; ours are never disabled).
 */
#if PG_VERSION_NUM >= 180000
#define zb_foreignscan_path(root, rel, rows, startup, total, pathkeys, outer) \
	create_foreignscan_path((root), (rel), NULL, (rows), 0, (startup), (total), \
							(pathkeys), (outer), NULL, NIL, NIL)
#define zb_upper_path(root, rel, target, rows, startup, total, pathkeys, priv) \
	create_foreign_upper_path((root), (rel), (target), (rows), 0, (startup), \
							  (total), (pathkeys), NULL, NIL, (priv))
#elif PG_VERSION_NUM >= 170000
#define zb_foreignscan_path(root, rel, rows, startup, total, pathkeys, outer) \
	create_foreignscan_path((root), (rel), NULL, (rows), (startup), (total), \
							(pathkeys), (outer), NULL, NIL, NIL)
#define zb_upper_path(root, rel, target, rows, startup, total, pathkeys, priv) \
	create_foreign_upper_path((root), (rel), (target), (rows), (startup), \
							  (total), (pathkeys), NULL, NIL, (priv))
#else
#define zb_foreignscan_path(root, rel, rows, startup, total, pathkeys, outer) \
	create_foreignscan_path((root), (rel), NULL, (rows), (startup), (total), \
							(pathkeys), (outer), NULL, NIL)
#define zb_upper_path(root, rel, target, rows, startup, total, pathkeys, priv) \
	create_foreign_upper_path((root), (rel), (target), (rows), (startup), \
							  (total), (pathkeys), NULL, (priv))
#endif

/*
 * A pushed-down, non-pseudoconstant qual of an upper relation (16 replaced
 * outerjoin_delayed/nullable_relids by has_clone/is_clone/incompatible_relids).
 */
#if PG_VERSION_NUM >= 160000
#define zb_make_restrictinfo(root, clause, security_level, relids) \
	make_restrictinfo((root), (clause), true, false, false, false, \
					  (security_level), (relids), NULL, NULL)
#else
#define zb_make_restrictinfo(root, clause, security_level, relids) \
	make_restrictinfo((root), (clause), true, false, false, \
					  (security_level), (relids), NULL, NULL)
#endif

/* 18: a PathKey's direction is a CompareType, no longer a btree strategy. */
#if PG_VERSION_NUM >= 180000
#define zb_pathkey_is_asc(pk) ((pk)->pk_cmptype == COMPARE_LT)
#else
#define zb_pathkey_is_asc(pk) ((pk)->pk_strategy == BTLessStrategyNumber)
#endif

/*
 * 18: whether a collation compares/maps as "C" is a property of its
 * pg_locale_t (lc_collate_is_c/lc_ctype_is_c are gone).
 */
#if PG_VERSION_NUM >= 180000
#define zb_lc_collate_is_c(coll) (pg_newlocale_from_collation(coll)->collate_is_c)
#define zb_lc_ctype_is_c(coll) (pg_newlocale_from_collation(coll)->ctype_is_c)
#else
#define zb_lc_collate_is_c(coll) lc_collate_is_c(coll)
#define zb_lc_ctype_is_c(coll) lc_ctype_is_c(coll)
#endif

/* 18: base64 works on uint8 bytes; our buffers are char. */
#if PG_VERSION_NUM >= 180000
#define zb_b64_encode(src, len, dst, dstlen) \
	pg_b64_encode((const uint8 *) (src), (len), (dst), (dstlen))
#define zb_b64_decode(src, len, dst, dstlen) \
	pg_b64_decode((src), (len), (uint8 *) (dst), (dstlen))
#else
#define zb_b64_encode(src, len, dst, dstlen) \
	pg_b64_encode((src), (len), (dst), (dstlen))
#define zb_b64_decode(src, len, dst, dstlen) \
	pg_b64_decode((src), (len), (dst), (dstlen))
#endif

/*
 * 17: a WaitEventSet belongs to a resource owner (or, with NULL, to nobody:
 * the caller frees it), no longer to a memory context.  Ours are freed by
 * the memory context reset callback of their owner on every major.
 */
#if PG_VERSION_NUM >= 170000
#define zb_create_wait_event_set(cxt, nevents) CreateWaitEventSet(NULL, (nevents))
#else
#define zb_create_wait_event_set(cxt, nevents) CreateWaitEventSet((cxt), (nevents))
#endif

/* 16: a relation's storage is named by a RelFileLocator, not a RelFileNode. */
#if PG_VERSION_NUM >= 160000
#define zb_rel_filenumber(rel) ((rel)->rd_locator.relNumber)
#else
#define zb_rel_filenumber(rel) ((rel)->rd_node.relNode)
#endif

/* 17: a PGPROC's number is computed, not stored. */
#if PG_VERSION_NUM < 170000
#define GetNumberFromPGProc(proc) ((proc)->pgprocno)
#endif

/*
 * 18: ExplainState and the ExplainProperty* printers moved out of
 * commands/explain.h into headers of their own.
 */
#if PG_VERSION_NUM >= 180000
#include "commands/explain_format.h"
#include "commands/explain_state.h"
#endif

/*
 * Logical decoding (change capture, src/cdc*.c).
 *
 * 17: a decoded change's tuples are HeapTuples, no longer wrapped in a
 * ReorderBufferTupleBuf.
 */
#if PG_VERSION_NUM >= 170000
#define zb_change_tuple(tb) (tb)
#else
#define zb_change_tuple(tb) (&(tb)->tuple)
#endif

/* 16: attribute maps by name take missing_ok. */
#if PG_VERSION_NUM >= 160000
#define zb_attrmap_by_name_if_req(in, out) build_attrmap_by_name_if_req((in), (out), false)
#else
#define zb_attrmap_by_name_if_req(in, out) build_attrmap_by_name_if_req((in), (out))
#endif

/*
 * Slots: 17 added failover and synced to ReplicationSlotCreate, 18
 * error_if_invalid to ReplicationSlotAcquire (we look at invalidation
 * ourselves, to report it as a state).
 */
#if PG_VERSION_NUM >= 170000
#define zb_slot_create(name, persistency) \
	ReplicationSlotCreate((name), true, (persistency), false, false, false)
#else
#define zb_slot_create(name, persistency) \
	ReplicationSlotCreate((name), true, (persistency), false)
#endif
#if PG_VERSION_NUM >= 180000
#define zb_slot_acquire(name, nowait) ReplicationSlotAcquire((name), (nowait), false)
#else
#define zb_slot_acquire(name, nowait) ReplicationSlotAcquire((name), (nowait))
#endif

/*
 * 16: an invalidated slot records why (data.invalidated); 15 only the
 * restart LSN it had (data.invalidated_at), and invalidation there is
 * always WAL removal.
 */
#if PG_VERSION_NUM >= 160000
#define zb_slot_invalidated(s) ((s)->data.invalidated != RS_INVAL_NONE)
#else
#define zb_slot_invalidated(s) \
	(!XLogRecPtrIsInvalid((s)->data.invalidated_at) && XLogRecPtrIsInvalid((s)->data.restart_lsn))
#endif

/*
 * 18: the module magic block can carry the module's name and version, shown
 * by pg_get_loaded_modules().  Use as "ZB_MODULE_MAGIC;".
 */
#if PG_VERSION_NUM >= 180000
#define ZB_MODULE_MAGIC PG_MODULE_MAGIC_EXT(.name = "zerobus_fdw", .version = ZEROBUS_FDW_VERSION)
#else
#define ZB_MODULE_MAGIC PG_MODULE_MAGIC
#endif

#endif							/* ZB_COMPAT_H */
