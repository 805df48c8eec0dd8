/*-------------------------------------------------------------------------
 * sqlapi.h
 *	  Client of the Databricks SQL Statement Execution API (docs/DESIGN.md,
 *	  "The SQL Statement Execution API"): submit, poll, stream result chunks,
 *	  cancel.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_SQLAPI_H
#define ZB_SQLAPI_H

#include "session.h"

/* A named statement parameter, referenced as :name in the SQL text. */
typedef struct ZbSqlParam
{
	const char *name;
	const char *value;			/* in the server encoding; NULL for SQL NULL */
	const char *type;			/* Databricks type: BIGINT, DECIMAL(3,1), ... */
} ZbSqlParam;

/* A result column, from the statement's manifest. */
typedef struct ZbSqlColumn
{
	char	   *name;
	char	   *type_name;		/* STRING, LONG, DECIMAL, TIMESTAMP, ... */
	char	   *type_text;		/* DECIMAL(12,2), TIMESTAMP_NTZ, ARRAY<INT>, ... */
} ZbSqlColumn;

/* What one statement cost, for EXPLAIN ANALYZE and tests. */
typedef struct ZbSqlStats
{
	int64		rows;			/* rows handed out */
	int64		chunks;			/* result chunks fetched */
	int64		bytes;			/* response bytes received */
	int64		requests;		/* HTTP requests made */
} ZbSqlStats;

typedef struct ZbSqlStatement ZbSqlStatement;

extern ZbSession *zb_sql_connect(Oid serverid, Oid userid);
extern ZbSqlStatement *zb_sql_execute(ZbSession *conn, const char *sql,
									  int nparams, const ZbSqlParam *params,
									  bool external_links);
extern int	zb_sql_ncolumns(ZbSqlStatement *st);
extern const ZbSqlColumn *zb_sql_column(ZbSqlStatement *st, int i);
extern int64 zb_sql_total_rows(ZbSqlStatement *st);
extern const char *zb_sql_statement_id(ZbSqlStatement *st);
extern bool zb_sql_next_row(ZbSqlStatement *st, char **values);
extern void zb_sql_rewind(ZbSqlStatement *st);
extern const ZbSqlStats *zb_sql_stats(ZbSqlStatement *st);
extern void zb_sql_release(ZbSqlStatement *st);

#endif							/* ZB_SQLAPI_H */
