/*-------------------------------------------------------------------------
 * deparse.c
 *	  Databricks SQL for the history foreign-data wrapper: the statements
 *	  that run what shippable.c found can run remotely.
 *
 * What is written:
 *
 *	- columns of the foreign table, backtick-quoted by one function
 *	  (zb_quote_identifier: backticks inside are doubled);
 *	- every value -- constants, parameters, and any other subexpression
 *	  that references no column and calls nothing volatile, such as
 *	  now() - interval '1 day' -- as a named parameter :pN, evaluated
 *	  locally when the scan starts.  No value is ever spliced into SQL text;
 *	  only LIMIT and OFFSET are written as integer literals;
 *	- comparisons, arithmetic, boolean logic, IN (= ANY, <> ALL), LIKE and
 *	  ILIKE, IS [NOT] NULL, CASE, coalesce, widening numeric casts and a few
 *	  functions;
 *	- count, sum, avg (as sum and count), min and max, with GROUP BY,
 *	  HAVING, ORDER BY, LIMIT;
 *	- DELETE with its conditions, and TRUNCATE TABLE.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "commands/defrem.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "parser/parsetree.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "compat.h"
#include "deparse.h"

/* ---------------------------------------------------------------- identifiers */

/*
 * A Databricks identifier: in backticks, a backtick inside doubled.  Every
 * identifier in the SQL we send goes through here.
 */
char *
zb_quote_identifier(const char *ident)
{
	StringInfoData b;

	initStringInfo(&b);
	zb_append_identifier(&b, ident);
	return b.data;
}

void
zb_append_identifier(StringInfo buf, const char *ident)
{
	const char *p;

	appendStringInfoChar(buf, '`');
	for (p = ident; *p; p++)
	{
		if (*p == '`')
			appendStringInfoChar(buf, '`');
		appendStringInfoChar(buf, *p);
	}
	appendStringInfoChar(buf, '`');
}

/* The remote name of a column: its column_name option, or its own name. */
char *
zb_column_remote_name(Oid relid, AttrNumber attnum)
{
	List	   *options = GetForeignColumnOptions(relid, attnum);
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "column_name") == 0)
			return defGetString(def);
	}
	return get_attname(relid, attnum, false);
}

static const char *
zb_table_option(Oid relid, const char *name)
{
	ForeignTable *ft = GetForeignTable(relid);
	ListCell   *lc;

	foreach(lc, ft->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, name) == 0)
			return defGetString(def);
	}
	return NULL;
}

bool
zb_rel_is_query(Oid relid)
{
	return zb_table_option(relid, "query") != NULL;
}

/*
 * The FROM item of a foreign table: its three-part "table", its "query" as
 * a subquery, or else its own name (resolved remotely in the server's
 * catalog and schema, which the request carries).
 */
void
zb_deparse_relation(StringInfo buf, Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	const char *table = zb_table_option(relid, "table");
	const char *query = zb_table_option(relid, "query");

	if (table)
	{
		char	   *copy = pstrdup(table);
		char	   *part = copy;
		char	   *dot;

		while ((dot = strchr(part, '.')) != NULL)
		{
			*dot = '\0';
			zb_append_identifier(buf, part);
			appendStringInfoChar(buf, '.');
			part = dot + 1;
		}
		zb_append_identifier(buf, part);
	}
	else if (query)
		appendStringInfo(buf, "(%s\n) `q`", query);	/* a trailing -- comment ends at the newline */
	else
		zb_append_identifier(buf, RelationGetRelationName(rel));
}

/* ---------------------------------------------------------------- deparse */

typedef struct DpCtx
{
	PlannerInfo *root;
	Oid			relid;			/* the foreign table */
	StringInfo	buf;
	List	  **params_list;
} DpCtx;

static void dp_expr(Node *node, DpCtx *ctx);

/* A value: the next :pN (or the number of an equal one already sent). */
static void
dp_param(Node *node, DpCtx *ctx)
{
	ListCell   *lc;
	int			i = 0;

	foreach(lc, *ctx->params_list)
	{
		i++;
		if (equal(node, lfirst(lc)))
		{
			appendStringInfo(ctx->buf, ":p%d", i);
			return;
		}
	}
	*ctx->params_list = lappend(*ctx->params_list, node);
	appendStringInfo(ctx->buf, ":p%d", list_length(*ctx->params_list));
}

static void
dp_list(List *list, const char *sep, DpCtx *ctx)
{
	ListCell   *lc;
	bool		first = true;

	foreach(lc, list)
	{
		if (!first)
			appendStringInfoString(ctx->buf, sep);
		first = false;
		dp_expr((Node *) lfirst(lc), ctx);
	}
}

/*
 * An operand of a binary operator.  PostgreSQL's date-vs-timestamp
 * operators compare the date as midnight of that day: say so explicitly.
 */
static void
dp_operand(Node *arg, Oid other_type, DpCtx *ctx)
{
	if (exprType(arg) == DATEOID && other_type == TIMESTAMPOID)
	{
		appendStringInfoString(ctx->buf, "CAST(");
		dp_expr(arg, ctx);
		appendStringInfoString(ctx->buf, " AS TIMESTAMP_NTZ)");
	}
	else
		dp_expr(arg, ctx);
}

static void
dp_op(OpExpr *oe, DpCtx *ctx)
{
	HeapTuple	tup;
	Form_pg_operator op = zb_operator_form(oe->opno, &tup);
	char	   *name = pstrdup(NameStr(op->oprname));
	char		kind = op->oprkind;

	ReleaseSysCache(tup);
	appendStringInfoChar(ctx->buf, '(');
	if (kind == 'l')
	{
		appendStringInfo(ctx->buf, "%s ", name);
		dp_expr(llast(oe->args), ctx);
	}
	else if (strcmp(name, "~~") == 0 || strcmp(name, "~~*") == 0)
	{
		dp_expr(linitial(oe->args), ctx);
		appendStringInfoString(ctx->buf, name[2] == '*' ? " ILIKE " : " LIKE ");
		dp_expr(lsecond(oe->args), ctx);
	}
	else if (strcmp(name, "!~~") == 0 || strcmp(name, "!~~*") == 0)
	{
		appendStringInfoString(ctx->buf, "NOT (");
		dp_expr(linitial(oe->args), ctx);
		appendStringInfoString(ctx->buf, name[3] == '*' ? " ILIKE " : " LIKE ");
		dp_expr(lsecond(oe->args), ctx);
		appendStringInfoChar(ctx->buf, ')');
	}
	else
	{
		dp_operand(linitial(oe->args), exprType(lsecond(oe->args)), ctx);
		appendStringInfo(ctx->buf, " %s ", name);
		dp_operand(lsecond(oe->args), exprType(linitial(oe->args)), ctx);
	}
	appendStringInfoChar(ctx->buf, ')');
}

static void
dp_in_list(ScalarArrayOpExpr *sa, DpCtx *ctx)
{
	Node	   *arr = (Node *) lsecond(sa->args);

	appendStringInfoChar(ctx->buf, '(');
	dp_expr(linitial(sa->args), ctx);
	appendStringInfoString(ctx->buf, sa->useOr ? " IN (" : " NOT IN (");
	if (IsA(arr, Const))
	{
		Const	   *c = (Const *) arr;
		ArrayType  *a = DatumGetArrayTypeP(c->constvalue);
		Oid			elemtype = ARR_ELEMTYPE(a);
		int16		elmlen;
		bool		elmbyval;
		char		elmalign;
		Datum	   *elems;
		bool	   *nulls;
		int			n;
		int			i;

		get_typlenbyvalalign(elemtype, &elmlen, &elmbyval, &elmalign);
		deconstruct_array(a, elemtype, elmlen, elmbyval, elmalign, &elems, &nulls, &n);
		for (i = 0; i < n; i++)
		{
			Const	   *e = makeConst(elemtype, -1, c->constcollid, elmlen,
									  nulls[i] ? (Datum) 0 : datumCopy(elems[i], elmbyval, elmlen),
									  nulls[i], elmbyval);

			if (i > 0)
				appendStringInfoString(ctx->buf, ", ");
			dp_param((Node *) e, ctx);
		}
	}
	else
		dp_list(((ArrayExpr *) arr)->elements, ", ", ctx);
	appendStringInfoString(ctx->buf, "))");
}

static void
dp_aggref(Aggref *agg, DpCtx *ctx)
{
	char	   *name = get_func_name(agg->aggfnoid);

	appendStringInfo(ctx->buf, "%s(", name);
	if (agg->aggstar)
		appendStringInfoChar(ctx->buf, '*');
	else
	{
		if (agg->aggdistinct != NIL)
			appendStringInfoString(ctx->buf, "DISTINCT ");
		dp_expr((Node *) ((TargetEntry *) linitial(agg->args))->expr, ctx);
	}
	appendStringInfoChar(ctx->buf, ')');
}

static void
dp_expr(Node *node, DpCtx *ctx)
{
	StringInfo	buf = ctx->buf;

	if (node == NULL)
		return;
	if (zb_is_param_expr(node))
	{
		dp_param(node, ctx);
		return;
	}
	switch (nodeTag(node))
	{
		case T_Var:
			zb_append_identifier(buf, zb_column_remote_name(ctx->relid,
															((Var *) node)->varattno));
			break;
		case T_OpExpr:
			dp_op((OpExpr *) node, ctx);
			break;
		case T_ScalarArrayOpExpr:
			dp_in_list((ScalarArrayOpExpr *) node, ctx);
			break;
		case T_BoolExpr:
			{
				BoolExpr   *be = (BoolExpr *) node;

				appendStringInfoChar(buf, '(');
				if (be->boolop == NOT_EXPR)
				{
					appendStringInfoString(buf, "NOT ");
					dp_expr(linitial(be->args), ctx);
				}
				else
					dp_list(be->args, be->boolop == AND_EXPR ? " AND " : " OR ", ctx);
				appendStringInfoChar(buf, ')');
				break;
			}
		case T_NullTest:
			{
				NullTest   *nt = (NullTest *) node;

				appendStringInfoChar(buf, '(');
				dp_expr((Node *) nt->arg, ctx);
				appendStringInfoString(buf, nt->nulltesttype == IS_NULL
									   ? " IS NULL)" : " IS NOT NULL)");
				break;
			}
		case T_RelabelType:
			dp_expr((Node *) ((RelabelType *) node)->arg, ctx);
			break;
		case T_FuncExpr:
			{
				FuncExpr   *fe = (FuncExpr *) node;

				if (zb_cast_ok(fe))
				{
					Node	   *arg = linitial(fe->args);

					appendStringInfoString(buf, "CAST(");
					dp_expr(arg, ctx);
					appendStringInfo(buf, " AS %s)",
									 zb_cast_type(exprType(arg), fe->funcresulttype));
				}
				else
				{
					appendStringInfo(buf, "%s(", zb_function_remote_name(fe));
					dp_list(fe->args, ", ", ctx);
					appendStringInfoChar(buf, ')');
				}
				break;
			}
		case T_CoalesceExpr:
			appendStringInfoString(buf, "coalesce(");
			dp_list(((CoalesceExpr *) node)->args, ", ", ctx);
			appendStringInfoChar(buf, ')');
			break;
		case T_CaseExpr:
			{
				CaseExpr   *ce = (CaseExpr *) node;
				ListCell   *lc;

				appendStringInfoString(buf, "CASE");
				foreach(lc, ce->args)
				{
					CaseWhen   *w = (CaseWhen *) lfirst(lc);

					appendStringInfoString(buf, " WHEN ");
					dp_expr((Node *) w->expr, ctx);
					appendStringInfoString(buf, " THEN ");
					dp_expr((Node *) w->result, ctx);
				}
				if (ce->defresult)
				{
					appendStringInfoString(buf, " ELSE ");
					dp_expr((Node *) ce->defresult, ctx);
				}
				appendStringInfoString(buf, " END");
				break;
			}
		case T_Aggref:
			dp_aggref((Aggref *) node, ctx);
			break;
		default:
			elog(ERROR, "unsupported expression type for deparse: %d", (int) nodeTag(node));
	}
}

/* An output column: bytea travels as base64 text. */
static void
dp_output(Node *expr, DpCtx *ctx)
{
	if (exprType(expr) == BYTEAOID)
	{
		appendStringInfoString(ctx->buf, "base64(");
		dp_expr(expr, ctx);
		appendStringInfoChar(ctx->buf, ')');
	}
	else
		dp_expr(expr, ctx);
}

static void
dp_conditions(List *conds, DpCtx *ctx)
{
	ListCell   *lc;
	bool		first = true;

	foreach(lc, conds)
	{
		Node	   *clause = (Node *) lfirst(lc);

		if (IsA(clause, RestrictInfo))
			clause = (Node *) ((RestrictInfo *) clause)->clause;
		if (!first)
			appendStringInfoString(ctx->buf, " AND ");
		first = false;
		/* every condition in parentheses, so AND binds as written */
		if (IsA(clause, OpExpr) || IsA(clause, BoolExpr) || IsA(clause, NullTest) ||
			IsA(clause, ScalarArrayOpExpr))
			dp_expr(clause, ctx);
		else
		{
			appendStringInfoChar(ctx->buf, '(');
			dp_expr(clause, ctx);
			appendStringInfoChar(ctx->buf, ')');
		}
	}
}

static void
dp_order_by(List *pathkeys, RelOptInfo *rel, DpCtx *ctx)
{
	ListCell   *lc;
	const char *sep = " ORDER BY ";

	foreach(lc, pathkeys)
	{
		PathKey    *pk = (PathKey *) lfirst(lc);
		Expr	   *em = zb_find_em_expr(ctx->root, rel, pk->pk_eclass);

		if (em == NULL)
			elog(ERROR, "could not find pathkey item to sort");
		appendStringInfoString(ctx->buf, sep);
		sep = ", ";
		dp_expr((Node *) em, ctx);
		appendStringInfoString(ctx->buf, zb_pathkey_is_asc(pk) ? " ASC" : " DESC");
		appendStringInfoString(ctx->buf, pk->pk_nulls_first ? " NULLS FIRST" : " NULLS LAST");
	}
}

/* LIMIT and OFFSET as integer literals (never parameters: older runtimes refuse those). */
static void
dp_limit(PlannerInfo *root, DpCtx *ctx)
{
	Query	   *q = root->parse;

	if (q->limitCount && IsA(q->limitCount, Const) && !((Const *) q->limitCount)->constisnull)
		appendStringInfo(ctx->buf, " LIMIT " INT64_FORMAT,
						 DatumGetInt64(((Const *) q->limitCount)->constvalue));
	if (q->limitOffset && IsA(q->limitOffset, Const) && !((Const *) q->limitOffset)->constisnull)
		appendStringInfo(ctx->buf, " OFFSET " INT64_FORMAT,
						 DatumGetInt64(((Const *) q->limitOffset)->constvalue));
}

/*
 * A SELECT for a base relation (columns in retrieved_attrs) or an upper
 * relation (tlist, one entry per scan tuple column; out_kinds says which
 * are avg()s sent as sum() and count()).
 */
void
zb_deparse_select(StringInfo buf, PlannerInfo *root, RelOptInfo *rel, List *tlist,
				  List *remote_conds, List *pathkeys, bool has_final_sort, bool has_limit,
				  List **retrieved_attrs, List **params_list, List **out_kinds)
{
	ZbRelInfo  *fpinfo = (ZbRelInfo *) rel->fdw_private;
	RelOptInfo *scanrel = IS_UPPER_REL(rel) ? fpinfo->outerrel : rel;
	ZbRelInfo  *sfpinfo = (ZbRelInfo *) scanrel->fdw_private;
	RangeTblEntry *rte = planner_rt_fetch(scanrel->relid, root);
	Relation	relation = table_open(rte->relid, NoLock);
	DpCtx		ctx;
	ListCell   *lc;
	bool		first = true;

	ctx.root = root;
	ctx.relid = rte->relid;
	ctx.buf = buf;
	ctx.params_list = params_list;
	*retrieved_attrs = NIL;
	*out_kinds = NIL;

	appendStringInfoString(buf, "SELECT ");
	if (IS_UPPER_REL(rel))
	{
		int			i = 0;

		foreach(lc, tlist)
		{
			Expr	   *expr = ((TargetEntry *) lfirst(lc))->expr;

			if (!first)
				appendStringInfoString(buf, ", ");
			first = false;
			if (zb_agg_needs_split(expr))
			{
				Aggref	   *agg = (Aggref *) expr;
				Node	   *arg = (Node *) ((TargetEntry *) linitial(agg->args))->expr;
				const char *distinct = agg->aggdistinct ? "DISTINCT " : "";

				appendStringInfo(buf, "sum(%s", distinct);
				dp_expr(arg, &ctx);
				appendStringInfo(buf, "), count(%s", distinct);
				dp_expr(arg, &ctx);
				appendStringInfoChar(buf, ')');
				*out_kinds = lappend_int(*out_kinds, ZB_OUT_AVG);
			}
			else
			{
				dp_output((Node *) expr, &ctx);
				*out_kinds = lappend_int(*out_kinds, ZB_OUT_PLAIN);
			}
			*retrieved_attrs = lappend_int(*retrieved_attrs, ++i);
		}
	}
	else
	{
		TupleDesc	tupdesc = RelationGetDescr(relation);
		int			i;

		for (i = 1; i <= tupdesc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(tupdesc, i - 1);

			if (att->attisdropped ||
				!bms_is_member(i - FirstLowInvalidHeapAttributeNumber, fpinfo->attrs_used))
				continue;
			if (!first)
				appendStringInfoString(buf, ", ");
			first = false;
			if (att->atttypid == BYTEAOID)
			{
				appendStringInfoString(buf, "base64(");
				zb_append_identifier(buf, zb_column_remote_name(ctx.relid, i));
				appendStringInfoChar(buf, ')');
			}
			else
				zb_append_identifier(buf, zb_column_remote_name(ctx.relid, i));
			*retrieved_attrs = lappend_int(*retrieved_attrs, i);
		}
	}
	if (first)
		appendStringInfoString(buf, "NULL");

	appendStringInfoString(buf, " FROM ");
	zb_deparse_relation(buf, relation);

	if (IS_UPPER_REL(rel))
	{
		Query	   *q = root->parse;

		if (sfpinfo->remote_conds)
		{
			appendStringInfoString(buf, " WHERE ");
			dp_conditions(sfpinfo->remote_conds, &ctx);
		}
		/* GROUP BY output positions, counting the extra count() of each split avg */
		if (q->groupClause)
		{
			const char *sep = " GROUP BY ";

			foreach(lc, q->groupClause)
			{
				SortGroupClause *sgc = (SortGroupClause *) lfirst(lc);
				ListCell   *lt;
				ListCell   *lk;
				int			pos = 0;
				bool		found = false;

				forboth(lt, tlist, lk, *out_kinds)
				{
					TargetEntry *tle = (TargetEntry *) lfirst(lt);

					pos++;
					if (tle->ressortgroupref == sgc->tleSortGroupRef)
					{
						found = true;
						break;
					}
					if (lfirst_int(lk) == ZB_OUT_AVG)
						pos++;
				}
				if (!found)
					elog(ERROR, "could not find GROUP BY item in the remote target list");
				appendStringInfo(buf, "%s%d", sep, pos);
				sep = ", ";
			}
		}
		if (remote_conds)
		{
			appendStringInfoString(buf, " HAVING ");
			dp_conditions(remote_conds, &ctx);
		}
	}
	else if (remote_conds)
	{
		appendStringInfoString(buf, " WHERE ");
		dp_conditions(remote_conds, &ctx);
	}

	if (pathkeys)
		dp_order_by(pathkeys, rel, &ctx);
	if (has_limit)
		dp_limit(root, &ctx);

	(void) has_final_sort;
	table_close(relation, NoLock);
}

/* DELETE FROM t [WHERE ...] */
void
zb_deparse_delete(StringInfo buf, PlannerInfo *root, Index rtindex, Relation rel,
				  RelOptInfo *foreignrel, List *remote_conds, List **params_list)
{
	DpCtx		ctx;

	ctx.root = root;
	ctx.relid = RelationGetRelid(rel);
	ctx.buf = buf;
	ctx.params_list = params_list;
	appendStringInfoString(buf, "DELETE FROM ");
	zb_deparse_relation(buf, rel);
	if (remote_conds)
	{
		appendStringInfoString(buf, " WHERE ");
		dp_conditions(remote_conds, &ctx);
	}
}

void
zb_deparse_truncate(StringInfo buf, Relation rel)
{
	appendStringInfoString(buf, "TRUNCATE TABLE ");
	zb_deparse_relation(buf, rel);
}

/* zerobus.quote_ident(text): the quoting every pushed-down identifier gets. */
PG_FUNCTION_INFO_V1(zerobus_quote_ident);

Datum
zerobus_quote_ident(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(zb_quote_identifier(text_to_cstring(PG_GETARG_TEXT_PP(0)))));
}
