/*-------------------------------------------------------------------------
 * sqlresult.c
 *	  Reading a statement's result: chunk after chunk (inline, or fetched
 *	  from external links), one row at a time, and again from the start.
 *
 * One chunk's bytes are held at a time, in a memory context reset before
 * the next fetch; rows are pulled out of them with jscan, so a million-row
 * result costs one chunk of memory.  A pre-signed link is fetched without
 * our Authorization header and with the headers it lists, and is replaced
 * once when it has expired.  A result that ends elsewhere than its manifest
 * announced is an error.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "sqlapi_int.h"

/* Set up reading rows from body[start..end) (a data_array or a bare array). */
static void
sqlapi_start_rows(ZbSqlStatement *st, size_t start, size_t end)
{
	jscan_init(&st->rows, st->body, end);
	st->rows.pos = start;
	st->rows_start = start;
	if (!jscan_begin(&st->rows, '['))
		zb_sql_report_malformed(st->sql, "reading a result chunk", st->rows.err);
	st->rows_first = true;
	st->in_rows = true;
}

/*
 * Load a chunk's rows from a ResultData: inline data, or the external link
 * (fetched now).  The ResultData and the body live in chunk_cxt.
 */
static void sqlapi_fetch_chunk(ZbSqlStatement *st, int n, const char *link, bool refreshing);

static void
sqlapi_refetch_link(ZbSqlStatement *st, int n)
{
	sqlapi_fetch_chunk(st, n, NULL, true);
}

void
zb_sql_load_result(ZbSqlStatement *st, ResultData *rd, bool refreshing)
{
	st->chunk_index = rd->chunk_index;
	st->next_chunk = rd->next_chunk_index;
	st->next_link = rd->next_link;
	st->in_rows = false;

	if (st->external)
	{
		ZbHttpResponse resp;
		const char *perr;

		if (rd->ext_url == NULL)
		{
			if (st->total_chunks == 0)
				return;
			zb_sql_report_malformed(st->sql, "reading a result chunk",
									"an EXTERNAL_LINKS result without a link");
		}
		zb_sql_request(st->conn, REQ_EXTERNAL, st->sql, "GET", rd->ext_url, NULL,
					   rd->ext_headers, &resp, &st->stats);
		if ((resp.status == 403 || resp.status == 404 || resp.status == 410) && !refreshing)
		{
			/* an expired pre-signed link: ask for a fresh one, once */
			sqlapi_refetch_link(st, rd->chunk_index);
			return;
		}
		if (resp.status != 200)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
					 errmsg("could not fetch result chunk %d from cloud storage: HTTP %ld",
							rd->chunk_index, resp.status),
					 resp.status == 403 ? errhint("The pre-signed link may have expired (links live about 15 minutes); run the query again.") : 0,
					 errcontext("remote SQL: %s", st->sql)));
		if (!pg_verify_mbstr(PG_UTF8, resp.body, resp.body_len, true))
		{
			perr = "the chunk is not valid UTF-8";
			zb_sql_report_malformed(st->sql, "reading a result chunk", perr);
		}
		st->body = resp.body;
		st->body_len = resp.body_len;
		sqlapi_start_rows(st, 0, resp.body_len);
	}
	else
	{
		if (!rd->has_data)
			return;
		sqlapi_start_rows(st, rd->data_start, rd->data_end);
	}
	st->stats.chunks++;
}

/* Fetch chunk n (through its internal link if we have one). */
static void
sqlapi_fetch_chunk(ZbSqlStatement *st, int n, const char *link, bool refreshing)
{
	MemoryContext old;
	ZbHttpResponse resp;
	StatementResponse *r;
	const char *perr = NULL;
	char	   *url;

	MemoryContextReset(st->chunk_cxt);
	st->body = NULL;
	st->in_rows = false;
	old = MemoryContextSwitchTo(st->chunk_cxt);
	/* internal links are paths on the workspace: never another host */
	if (link && link[0] == '/' && strncmp(link, STATEMENTS_PATH "/", strlen(STATEMENTS_PATH) + 1) == 0)
		url = psprintf("%s%s", zb_session_config(st->conn)->workspace_url, link);
	else
		url = psprintf("%s%s/%s/result/chunks/%d", zb_session_config(st->conn)->workspace_url,
					   STATEMENTS_PATH, st->id, n);
	zb_sql_request(st->conn, REQ_CHUNK, st->sql, "GET", url, NULL, NIL, &resp, &st->stats);
	if (resp.status != 200)
		zb_sql_report_http(st->conn, REQ_CHUNK, st->sql, &resp);
	r = zb_sql_parse_response(resp.body, resp.body_len, true, &perr);
	if (r == NULL)
		zb_sql_report_malformed(st->sql, "reading a result chunk", perr);
	if (r->result.chunk_index != n)
		zb_sql_report_malformed(st->sql, "reading a result chunk",
								psprintf("asked for chunk %d, got chunk %d", n,
										 r->result.chunk_index));
	st->body = resp.body;
	st->body_len = resp.body_len;
	zb_sql_load_result(st, &r->result, refreshing);
	MemoryContextSwitchTo(old);
}

int
zb_sql_ncolumns(ZbSqlStatement *st)
{
	return st->ncols;
}

const ZbSqlColumn *
zb_sql_column(ZbSqlStatement *st, int i)
{
	Assert(i >= 0 && i < st->ncols);
	return &st->cols[i];
}

int64
zb_sql_total_rows(ZbSqlStatement *st)
{
	return st->total_rows;
}

const char *
zb_sql_statement_id(ZbSqlStatement *st)
{
	return st->id;
}

const ZbSqlStats *
zb_sql_stats(ZbSqlStatement *st)
{
	return &st->stats;
}

/* Parse the next row of the current chunk into st->rowbuf. */
static bool
sqlapi_parse_row(ZbSqlStatement *st, char **values)
{
	JScan	   *js = &st->rows;
	bool		first = true;
	bool		more;
	int			n = 0;
	int			i;

	resetStringInfo(&st->rowbuf);
	if (!jscan_begin(js, '['))
		return false;
	while (jscan_next(js, ']', &first, &more) && more)
	{
		JScanKind	kind;
		int			start = st->rowbuf.len;

		if (n >= st->ncols)
		{
			js->err = "a row has more values than the result has columns";
			return false;
		}
		if (!jscan_scalar(js, &st->rowbuf, &kind))
			return false;
		if (kind == JS_NULL)
			st->offsets[n] = -1;
		else
		{
			appendStringInfoChar(&st->rowbuf, '\0');
			st->offsets[n] = start;
		}
		n++;
	}
	if (js->err)
		return false;
	if (n != st->ncols)
	{
		js->err = "a row has fewer values than the result has columns";
		return false;
	}
	for (i = 0; i < n; i++)
	{
		if (st->offsets[i] < 0)
			values[i] = NULL;
		else if (st->convert)
			values[i] = pg_any_to_server(st->rowbuf.data + st->offsets[i],
										 strlen(st->rowbuf.data + st->offsets[i]), PG_UTF8);
		else
			values[i] = st->rowbuf.data + st->offsets[i];
	}
	return true;
}

/*
 * The result ended: it must have ended where the manifest said it would.  A
 * chunk whose link to the next one was lost would otherwise end the scan
 * early and silently return part of the rows.
 */
static void
sqlapi_check_complete(ZbSqlStatement *st)
{
	if (st->total_chunks > 0 && st->chunk_index != st->total_chunks - 1)
		zb_sql_report_malformed(st->sql, "reading the result",
								psprintf("the result ended after chunk %d, but the manifest announced %d chunks",
										 st->chunk_index, st->total_chunks));
	if (st->total_rows >= 0 && st->rows_read != st->total_rows)
		zb_sql_report_malformed(st->sql, "reading the result",
								psprintf("the result ended after " INT64_FORMAT " rows, but the manifest announced " INT64_FORMAT,
										 st->rows_read, st->total_rows));
}

/*
 * The next row: values[i] points at column i's text (NULL for SQL NULL),
 * valid until the next call.  Returns false after the last row.
 */
bool
zb_sql_next_row(ZbSqlStatement *st, char **values)
{
	for (;;)
	{
		if (st->in_rows)
		{
			bool		more;

			if (!jscan_next(&st->rows, ']', &st->rows_first, &more))
				zb_sql_report_malformed(st->sql, "reading a result chunk", st->rows.err);
			if (more)
			{
				if (!sqlapi_parse_row(st, values))
					zb_sql_report_malformed(st->sql,
											psprintf("reading row %lld of the result",
													 (long long) st->stats.rows + 1),
											st->rows.err);
				st->stats.rows++;
				st->rows_read++;
				return true;
			}
			st->in_rows = false;
		}
		if (st->next_chunk < 0)
		{
			sqlapi_check_complete(st);
			return false;
		}
		if (st->next_chunk >= st->total_chunks)
			zb_sql_report_malformed(st->sql, "reading a result chunk",
									psprintf("chunk %d points to chunk %d, but the result has %d chunks",
											 st->chunk_index, st->next_chunk, st->total_chunks));
		CHECK_FOR_INTERRUPTS();
		sqlapi_fetch_chunk(st, st->next_chunk, st->next_link, false);
	}
}

/* Read the result again from its first row (a rescan with the same parameters). */
void
zb_sql_rewind(ZbSqlStatement *st)
{
	if (st->total_chunks == 0)
		return;
	st->rows_read = 0;
	if (st->chunk_index == 0 && st->body != NULL && !st->external)
	{
		/* still holding chunk 0: no need to fetch it again */
		JScan		js = st->rows;

		jscan_init(&st->rows, st->body, js.end);
		st->rows.pos = st->rows_start;
		if (!jscan_begin(&st->rows, '['))
			zb_sql_report_malformed(st->sql, "reading a result chunk", st->rows.err);
		st->rows_first = true;
		st->in_rows = true;
		st->next_chunk = st->total_chunks > 1 ? 1 : -1;
		st->next_link = NULL;
		return;
	}
	st->in_rows = false;
	st->next_chunk = 0;
	st->next_link = NULL;
}

void
zb_sql_release(ZbSqlStatement *st)
{
	MemoryContextDelete(st->cxt);
}
