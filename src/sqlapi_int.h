/*-------------------------------------------------------------------------
 * sqlapi_int.h
 *	  What the SQL Statement Execution API client's files share: a parsed
 *	  response, a statement's state, and the functions one file calls in
 *	  another.  Not for use outside sqlapi.c, sqlparse.c and sqlresult.c.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_SQLAPI_INT_H
#define ZB_SQLAPI_INT_H

#include "http.h"
#include "jscan.h"
#include "sqlapi.h"

#define STATEMENTS_PATH "/api/2.0/sql/statements"

typedef enum SqlReq
{
	REQ_SUBMIT,
	REQ_POLL,
	REQ_CHUNK,
	REQ_CANCEL,
	REQ_EXTERNAL
} SqlReq;

/* One ResultData object: a chunk's position and where its rows are. */
typedef struct ResultData
{
	bool		present;
	int			chunk_index;
	int			next_chunk_index;	/* -1: none */
	char	   *next_link;		/* next_chunk_internal_link, or NULL */
	bool		has_data;
	size_t		data_start;		/* data_array span in the body */
	size_t		data_end;
	char	   *ext_url;		/* EXTERNAL_LINKS: the first link */
	List	   *ext_headers;	/* "Name: value" strings */
} ResultData;

/* What we read of a StatementResponse (or an error body). */
typedef struct StatementResponse
{
	char	   *statement_id;
	char	   *state;
	char	   *error_code;
	char	   *error_message;
	char	   *message;		/* top-level message of a refused request */
	bool		has_manifest;
	int			column_count;
	List	   *columns;		/* ZbSqlColumn * */
	int64		total_row_count;
	int			total_chunk_count;
	bool		truncated;
	char	   *format;
	ResultData	result;
} StatementResponse;

struct ZbSqlStatement
{
	MemoryContext cxt;
	MemoryContext chunk_cxt;	/* reset for each chunk: holds its bytes */
	ZbSession  *conn;
	const char *sql;
	char	   *id;
	bool		external;
	int			ncols;
	ZbSqlColumn *cols;
	int64		total_rows;		/* -1 if the manifest did not say */
	int			total_chunks;
	int64		rows_read;		/* since the first chunk (a rewind restarts it) */

	/* the chunk being read */
	int			chunk_index;	/* -1 before the first */
	char	   *body;
	size_t		body_len;
	JScan		rows;
	size_t		rows_start;		/* where the data_array starts in body */
	bool		rows_first;
	bool		in_rows;
	int			next_chunk;		/* -1: no more */
	char	   *next_link;

	/* the row being handed out */
	StringInfoData rowbuf;
	int		   *offsets;
	bool		convert;		/* server encoding is not UTF-8 */

	ZbSqlStats	stats;
};

/* sqlparse.c */
extern StatementResponse *zb_sql_parse_response(const char *body, size_t len,
												bool top_is_result, const char **err);

/* sqlapi.c */
extern void zb_sql_request(ZbSession *conn, SqlReq kind, const char *sql, const char *method,
						   const char *url, const char *body, List *extra_headers,
						   ZbHttpResponse *resp, ZbSqlStats *stats);
extern void zb_sql_report_http(ZbSession *conn, SqlReq kind, const char *sql,
							   ZbHttpResponse *resp);
extern void zb_sql_report_malformed(const char *sql, const char *what,
									const char *perr);

/* sqlresult.c */
extern void zb_sql_load_result(ZbSqlStatement *st, ResultData *rd, bool refreshing);

#endif							/* ZB_SQLAPI_INT_H */
