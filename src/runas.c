/*-------------------------------------------------------------------------
 * runas.c
 *	  The one rule for SQL that zerobus_fdw runs with rights other than its
 *	  caller's, or in a background worker (docs/DESIGN.md, "Security
 *	  model"), and the small helper every such statement goes through.
 *
 * Three identities run SQL here:
 *   - the extension's owner (a superuser), for the extension's own catalog
 *     tables: fixed statements over precomputed values, never user code;
 *   - a stream's owner (the owner of its queue table), for everything that
 *     touches the queue, so that user code (the queue's triggers, column
 *     defaults, policies) runs with that role's rights and no more;
 *   - a background worker's own identity (the bootstrap superuser, like
 *     autovacuum's), for reading the extension's catalog.
 * Whichever it is, for the duration of the statement:
 *   - search_path is "pg_catalog, pg_temp" (a GUC nest level, undone at the
 *     end of the section, or by the abort of its transaction), so neither
 *     the caller's, the role's nor the database's search_path can put a
 *     user's operator, function or type in front of PostgreSQL's;
 *   - the security context has SECURITY_RESTRICTED_OPERATION, so code that
 *     runs inside cannot change the role, create temporary objects or
 *     leave a cursor behind;
 * and the SQL text schema-qualifies its tables, functions, operators
 * (OPERATOR(pg_catalog.=)) and types.  pg_temp stays last: it is never
 * searched for functions or operators, and last for tables and types.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "runas.h"

/*
 * Enter a section that runs as 'role' (InvalidOid: the current user, for a
 * worker's own catalog reads) with the search_path pinned and
 * SECURITY_RESTRICTED_OPERATION.  Pair with zb_runas_end(); an ERROR in
 * between is undone by the transaction's abort.
 */
void
zb_runas_begin(ZbRunAs *ra, Oid role)
{
	GetUserIdAndSecContext(&ra->save_userid, &ra->save_sec);
	SetUserIdAndSecContext(OidIsValid(role) ? role : ra->save_userid,
						   ra->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	ra->nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", ZB_SAFE_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

void
zb_runas_end(ZbRunAs *ra)
{
	AtEOXact_GUC(false, ra->nestlevel);
	SetUserIdAndSecContext(ra->save_userid, ra->save_sec);
}

/* OID of the extension's table zerobus.<relname>. */
Oid
zb_catalog_relid(const char *relname, bool missing_ok)
{
	Oid			nsp = get_namespace_oid("zerobus", missing_ok);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;

	if (!OidIsValid(relid) && !missing_ok)
	{
		if (OidIsValid(get_extension_oid("zerobus_fdw", true)))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the zerobus_fdw objects of this database are older than its library"),
					 errhint("ALTER EXTENSION zerobus_fdw UPDATE;")));
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("zerobus_fdw is not installed in this database"),
				 errhint("CREATE EXTENSION zerobus_fdw;")));
	}
	return relid;
}

/* The owner of the extension's catalog tables (who created the extension). */
Oid
zb_catalog_owner(void)
{
	Oid			relid = zb_catalog_relid("stream_settings", false);
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * A stream's owner: its queue table's current owner, or InvalidOid when the
 * table is gone.  Read from pg_class every time (never a stored copy), so
 * ALTER TABLE … OWNER TO and REASSIGN OWNED move the stream with the table.
 */
Oid
zb_queue_owner(Oid queue)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(queue));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		return InvalidOid;
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Run one statement through SPI (already connected) as 'role', under the
 * rule above.  Returns the SPI result code; a failure is an ERROR.
 */
int
zb_spi_as(Oid role, const char *sql, int nargs, Oid *types, Datum *values,
		  const char *nulls, bool read_only, long count)
{
	ZbRunAs		ra;
	int			rc;

	zb_runas_begin(&ra, role);
	rc = SPI_execute_with_args(sql, nargs, types, values, nulls, read_only, count);
	zb_runas_end(&ra);
	if (rc < 0)
		elog(ERROR, "zerobus_fdw internal statement failed (%s): %s",
			 SPI_result_code_string(rc), sql);
	return rc;
}

/*
 * Write the extension's catalog as its owner (the caller has checked that
 * the user may make the change); returns the rows affected.
 */
uint64
zb_catalog_write(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls)
{
	uint64		n;

	SPI_connect();
	(void) zb_spi_as(zb_catalog_owner(), sql, nargs, types, values, nulls, false, 0);
	n = SPI_processed;
	SPI_finish();
	return n;
}
