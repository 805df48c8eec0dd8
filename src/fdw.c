/*-------------------------------------------------------------------------
 * fdw.c
 *	  The history foreign-data wrapper: reading (and clearing) Delta tables
 *	  through the Databricks SQL Statement Execution API.
 *
 * Planning pushes down what deparse.c says is safe: WHERE conditions,
 * ORDER BY, aggregates with GROUP BY and HAVING, and LIMIT/OFFSET when
 * every condition runs remotely.  Costs favour remote work (a statement has
 * a fixed cost; each row transferred has a price), so the planner prefers
 * the pushed-down plan.  Nothing at plan time talks to Databricks: EXPLAIN
 * works offline.
 *
 * Execution submits one statement per scan (with its parameters evaluated
 * then), streams the result chunk by chunk, and converts each value from
 * the API's text to the column's PostgreSQL type; a value that does not
 * convert is an ERROR naming the column.  A rescan with the same parameter
 * values re-reads the result from its first chunk; with new values it runs
 * a new statement.
 *
 * DELETE with pushed-down conditions and TRUNCATE run as remote statements;
 * IMPORT FOREIGN SCHEMA reads information_schema.columns.  INSERT goes
 * through ZeroBus (fdwinsert.c).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/explain.h"
#include "common/base64.h"
#include "common/shortest_dec.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/planmain.h"
#include "optimizer/prep.h"
#include "optimizer/restrictinfo.h"
#include "optimizer/tlist.h"
#include "parser/parsetree.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/formatting.h"
#include "utils/date.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/selfuncs.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "deparse.h"
#include "fdwinsert.h"
#include "jscan.h"
#include "option.h"
#include "sqlapi.h"

/* Rows assumed in a foreign table never analyzed. */
#define ZB_DEFAULT_TUPLES 1000.0
/* Scanning and computing remotely, per row, next to a local row. */
#define ZB_REMOTE_ROW_FACTOR 0.2

/* fdw_private of a ForeignPath made by GetForeignUpperPaths */
enum ZbPathPrivate
{
	ZbPathHasFinalSort,
	ZbPathHasLimit
};

/* fdw_private of a ForeignScan */
enum ZbScanPrivate
{
	ZbScanSql,
	ZbScanRetrievedAttrs,
	ZbScanOutKinds,
	ZbScanRelationName,
	ZbScanTableOid				/* the foreign table (options are read at execution) */
};

/* How one remote value becomes a datum. */
typedef enum ZbConvKind
{
	CONV_INPUT,					/* the type's input function */
	CONV_BYTEA,					/* base64 text (we send base64(col)) */
	CONV_JSON,					/* json/jsonb: JSON text, or a quoted scalar */
	CONV_ARRAY,					/* a PostgreSQL array from a JSON array */
	CONV_AVG					/* numeric sum / count */
} ZbConvKind;

typedef struct ZbConv
{
	ZbConvKind	kind;
	AttrNumber	attnum;			/* slot column (1-based) */
	int			remote;			/* first remote column */
	Oid			typid;
	int32		typmod;
	FmgrInfo	inproc;
	Oid			ioparam;
	bool		json_quote;		/* CONV_JSON: the remote type is not JSON-shaped */
	/* CONV_ARRAY */
	Oid			elemtype;
	FmgrInfo	elem_inproc;
	Oid			elem_ioparam;
	int16		elmlen;
	bool		elmbyval;
	char		elmalign;
} ZbConv;

typedef struct ZbScanState
{
	Relation	rel;			/* NULL for a grouping scan */
	TupleDesc	tupdesc;		/* of the scan tuple */
	char	   *sql;
	List	   *retrieved_attrs;
	List	   *out_kinds;
	Oid			relid;			/* the foreign table */
	char	   *relname;		/* for error context */

	/* parameters */
	int			nparams;
	List	   *param_exprs;	/* ExprState * */
	Oid		   *param_types;
	ZbSqlParam *params;

	/* the running statement */
	MemoryContext cxt;			/* statement and parameters live here */
	ZbSession  *conn;
	ZbSqlStatement *st;
	bool		executed;
	int			nconv;
	ZbConv	   *conv;
	char	  **values;
	ZbSqlStats	totals;			/* over every statement of this scan */

	/* conversion error context */
	int			cur_conv;

	/* direct modify */
	bool		set_processed;
	int64		num_affected;
} ZbScanState;

/* A count from the API (num_affected_rows): an integer, or an error. */
static int64
zb_strtoint64(const char *s)
{
	char	   *end;
	long long	v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_FDW_REPLY_HANDLE),
				 errmsg("invalid row count from the Databricks SQL API: \"%s\"", s)));
	return (int64) v;
}

/* ---------------------------------------------------------------- options */

static bool
zb_table_external_links(Oid relid, bool server_default)
{
	ForeignTable *ft = GetForeignTable(relid);
	ListCell   *lc;

	foreach(lc, ft->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "disposition") == 0)
			return zb_parse_disposition(defGetString(def));
	}
	return server_default;
}

/* ---------------------------------------------------------------- costs */

/*
 * Sorting remotely: the warehouse's work, per row, at the remote rate; far
 * below what a local Sort of the transferred rows costs, so the planner
 * sends ORDER BY along whenever it can.
 */
static Cost
zb_remote_sort_cost(double rows)
{
	double		n = Max(rows, 2.0);

	return n * log2(n) * cpu_operator_cost * ZB_REMOTE_ROW_FACTOR;
}

/*
 * Cost of a base relation's scan: a statement's fixed cost, remote work per
 * row scanned, and a transfer price per row returned.
 */
static void
zb_estimate_base(PlannerInfo *root, RelOptInfo *rel, ZbRelInfo *fpinfo,
				 List *pathkeys, double *rows, Cost *startup, Cost *total)
{
	Selectivity sel = clauselist_selectivity(root, fpinfo->remote_conds, rel->relid,
											 JOIN_INNER, NULL);
	double		retrieved = clamp_row_est(fpinfo->tuples * sel);
	Cost		run;

	*startup = fpinfo->fdw_startup_cost;
	run = fpinfo->tuples * cpu_tuple_cost * ZB_REMOTE_ROW_FACTOR;
	run += retrieved * (fpinfo->fdw_tuple_cost + cpu_tuple_cost);
	run += fpinfo->local_conds_cost.per_tuple * retrieved;
	*startup += fpinfo->local_conds_cost.startup;
	if (pathkeys)
		run += zb_remote_sort_cost(retrieved);
	fpinfo->retrieved_rows = retrieved;
	*rows = clamp_row_est(retrieved * fpinfo->local_conds_sel);
	*total = *startup + run;
}

/* ---------------------------------------------------------------- planning */

static void
zb_get_rel_size(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	ZbRelInfo  *fpinfo = palloc0(sizeof(ZbRelInfo));
	ForeignTable *table = GetForeignTable(foreigntableid);
	ZbServerConfig *cfg = zb_server_config(table->serverid, InvalidOid, false);
	ListCell   *lc;
	char	   *refname;
	RangeTblEntry *rte = planner_rt_fetch(baserel->relid, root);

	baserel->fdw_private = fpinfo;
	fpinfo->pushdown_safe = true;
	fpinfo->relid = foreigntableid;
	fpinfo->server = GetForeignServer(table->serverid);
	fpinfo->fdw_startup_cost = cfg->fdw_startup_cost;
	fpinfo->fdw_tuple_cost = cfg->fdw_tuple_cost;

	zb_classify_conditions(root, baserel, baserel->baserestrictinfo,
						   &fpinfo->remote_conds, &fpinfo->local_conds);

	/* columns needed locally: the target list and the local conditions */
	fpinfo->attrs_used = NULL;
	pull_varattnos((Node *) baserel->reltarget->exprs, baserel->relid, &fpinfo->attrs_used);
	foreach(lc, fpinfo->local_conds)
	{
		RestrictInfo *ri = lfirst_node(RestrictInfo, lc);

		pull_varattnos((Node *) ri->clause, baserel->relid, &fpinfo->attrs_used);
	}

	fpinfo->local_conds_sel = clauselist_selectivity(root, fpinfo->local_conds,
													 baserel->relid, JOIN_INNER, NULL);
	cost_qual_eval(&fpinfo->local_conds_cost, fpinfo->local_conds, root);

	/* never analyzed (reltuples -1): assume a modest table */
	fpinfo->tuples = baserel->tuples >= 0 ? Max(baserel->tuples, 1.0) : ZB_DEFAULT_TUPLES;
	baserel->tuples = fpinfo->tuples;
	baserel->rows = clamp_row_est(fpinfo->tuples *
								  clauselist_selectivity(root, baserel->baserestrictinfo,
														 baserel->relid, JOIN_INNER, NULL));
	fpinfo->width = baserel->reltarget->width;
	zb_estimate_base(root, baserel, fpinfo, NIL, &fpinfo->rows,
					 &fpinfo->startup_cost, &fpinfo->total_cost);

	refname = rte->eref->aliasname;
	fpinfo->relation_name = psprintf("%s", quote_identifier(get_rel_name(foreigntableid)));
	if (*refname && strcmp(refname, get_rel_name(foreigntableid)) != 0)
		fpinfo->relation_name = psprintf("%s %s", fpinfo->relation_name,
										 quote_identifier(refname));
}

static void
zb_get_paths(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	ZbRelInfo  *fpinfo = (ZbRelInfo *) baserel->fdw_private;
	ListCell   *lc;
	bool		sortable = root->query_pathkeys != NIL;
	double		rows;
	Cost		startup;
	Cost		total;

	add_path(baserel, (Path *) zb_foreignscan_path(root, baserel, fpinfo->rows,
												   fpinfo->startup_cost, fpinfo->total_cost,
												   NIL, baserel->lateral_relids));

	/* the query's ORDER BY, sorted remotely */
	foreach(lc, root->query_pathkeys)
	{
		if (!zb_is_foreign_pathkey(root, baserel, (PathKey *) lfirst(lc)))
		{
			sortable = false;
			break;
		}
	}
	fpinfo->qp_is_pushdown_safe = sortable;
	if (sortable)
	{
		zb_estimate_base(root, baserel, fpinfo, root->query_pathkeys, &rows, &startup, &total);
		add_path(baserel, (Path *) zb_foreignscan_path(root, baserel, rows, startup, total,
													   root->query_pathkeys,
													   baserel->lateral_relids));
	}
}

/*
 * Can the grouping of grouped_rel run remotely?  Builds its target list
 * (grouping keys and aggregates) and HAVING conditions.
 */
static bool
zb_grouping_ok(PlannerInfo *root, RelOptInfo *grouped_rel, Node *havingQual)
{
	Query	   *q = root->parse;
	ZbRelInfo  *fpinfo = (ZbRelInfo *) grouped_rel->fdw_private;
	ZbRelInfo  *ofpinfo = (ZbRelInfo *) fpinfo->outerrel->fdw_private;
	PathTarget *target = grouped_rel->reltarget;
	List	   *tlist = NIL;
	ListCell   *lc;
	int			i = 0;

	if (q->groupingSets || ofpinfo->local_conds)
		return false;

	foreach(lc, target->exprs)
	{
		Expr	   *expr = (Expr *) lfirst(lc);
		Index		sgref = get_pathtarget_sortgroupref(target, i);

		i++;
		if (sgref && get_sortgroupref_clause_noerr(sgref, q->groupClause))
		{
			/* a grouping key: must run remotely, and reference a column */
			if (!zb_is_foreign_expr(root, grouped_rel, expr) || !contain_var_clause((Node *) expr))
				return false;
			tlist = lappend(tlist, makeTargetEntry(expr, list_length(tlist) + 1, NULL, false));
			((TargetEntry *) llast(tlist))->ressortgroupref = sgref;
		}
		else if (zb_is_foreign_tlist_expr(root, grouped_rel, expr))
			tlist = add_to_flat_tlist(tlist, list_make1(expr));
		else
		{
			/* computed locally from aggregates and keys that run remotely */
			List	   *aggvars = pull_var_clause((Node *) expr, PVC_INCLUDE_AGGREGATES);
			ListCell   *l;

			foreach(l, aggvars)
			{
				Expr	   *e = (Expr *) lfirst(l);

				if (IsA(e, Aggref) && !zb_is_foreign_tlist_expr(root, grouped_rel, e))
					return false;
			}
			tlist = add_to_flat_tlist(tlist, aggvars);
		}
	}

	/* HAVING: all of it remotely, or no grouping pushdown */
	if (havingQual)
	{
		foreach(lc, (List *) havingQual)
		{
			Expr	   *expr = (Expr *) lfirst(lc);

			if (!zb_is_foreign_expr(root, grouped_rel, expr))
				return false;
			fpinfo->remote_conds = lappend(fpinfo->remote_conds,
										   zb_make_restrictinfo(root, expr,
																root->qual_security_level,
																grouped_rel->relids));
		}
	}
	fpinfo->grouped_tlist = tlist;
	return true;
}

static void
zb_add_grouping_paths(PlannerInfo *root, RelOptInfo *input_rel, RelOptInfo *grouped_rel,
					  GroupPathExtraData *extra)
{
	Query	   *q = root->parse;
	ZbRelInfo  *ifpinfo = (ZbRelInfo *) input_rel->fdw_private;
	ZbRelInfo  *fpinfo = (ZbRelInfo *) grouped_rel->fdw_private;
	double		input_rows;
	double		num_groups;
	double		rows;
	Cost		startup;
	Cost		total;
	AggClauseCosts aggcosts;
	List	   *group_exprs;
	Selectivity having_sel;
	ForeignPath *path;

	if (!q->groupClause && !q->groupingSets && !q->hasAggs && !root->hasHavingQual)
		return;
	if (extra->patype == PARTITIONWISE_AGGREGATE_PARTIAL)
		return;
	if (!IS_SIMPLE_REL(input_rel) || ifpinfo == NULL)
		return;

	fpinfo->outerrel = input_rel;
	fpinfo->relid = ifpinfo->relid;
	fpinfo->server = ifpinfo->server;
	fpinfo->fdw_startup_cost = ifpinfo->fdw_startup_cost;
	fpinfo->fdw_tuple_cost = ifpinfo->fdw_tuple_cost;
	if (!zb_grouping_ok(root, grouped_rel, extra->havingQual))
		return;
	fpinfo->pushdown_safe = true;

	/* remote: scan, aggregate, return one row per group */
	input_rows = clamp_row_est(ifpinfo->tuples *
							   clauselist_selectivity(root, ifpinfo->remote_conds,
													  input_rel->relid, JOIN_INNER, NULL));
	group_exprs = get_sortgrouplist_exprs(q->groupClause, fpinfo->grouped_tlist);
	num_groups = group_exprs ? estimate_num_groups(root, group_exprs, input_rows, NULL, NULL)
		: 1;
	having_sel = clauselist_selectivity(root, fpinfo->remote_conds, 0, JOIN_INNER, NULL);
	rows = clamp_row_est(num_groups * having_sel);

	MemSet(&aggcosts, 0, sizeof(AggClauseCosts));
	if (q->hasAggs)
		get_agg_clause_costs(root, AGGSPLIT_SIMPLE, &aggcosts);

	startup = ifpinfo->fdw_startup_cost;
	total = startup + ifpinfo->tuples * cpu_tuple_cost * ZB_REMOTE_ROW_FACTOR +
		input_rows * (aggcosts.transCost.per_tuple + cpu_operator_cost *
					  list_length(group_exprs)) * ZB_REMOTE_ROW_FACTOR +
		rows * (fpinfo->fdw_tuple_cost + cpu_tuple_cost);

	fpinfo->rows = rows;
	fpinfo->startup_cost = startup;
	fpinfo->total_cost = total;
	fpinfo->retrieved_rows = rows;
	fpinfo->width = grouped_rel->reltarget->width;
	fpinfo->tuples = ifpinfo->tuples;
	fpinfo->relation_name = psprintf("Aggregate on (%s)", ifpinfo->relation_name);

	path = zb_upper_path(root, grouped_rel, grouped_rel->reltarget, rows, startup, total,
						 NIL, NIL);
	add_path(grouped_rel, (Path *) path);
}

static void
zb_add_ordered_paths(PlannerInfo *root, RelOptInfo *input_rel, RelOptInfo *ordered_rel)
{
	ZbRelInfo  *ifpinfo = (ZbRelInfo *) input_rel->fdw_private;
	ZbRelInfo  *fpinfo = (ZbRelInfo *) ordered_rel->fdw_private;
	ListCell   *lc;
	ForeignPath *path;

	if (root->parse->hasTargetSRFs || ifpinfo == NULL)
		return;
	fpinfo->outerrel = input_rel;

	/* a base relation already offered remotely sorted paths */
	if (IS_SIMPLE_REL(input_rel))
	{
		fpinfo->pushdown_safe = ifpinfo->qp_is_pushdown_safe;
		return;
	}
	if (!(IS_UPPER_REL(input_rel) && ifpinfo->stage == UPPERREL_GROUP_AGG &&
		  ifpinfo->pushdown_safe))
		return;
	foreach(lc, root->sort_pathkeys)
	{
		if (!zb_is_foreign_pathkey(root, input_rel, (PathKey *) lfirst(lc)))
			return;
	}
	fpinfo->pushdown_safe = true;
	path = zb_upper_path(root, input_rel, root->upper_targets[UPPERREL_ORDERED],
						 ifpinfo->rows, ifpinfo->startup_cost,
						 ifpinfo->total_cost + zb_remote_sort_cost(ifpinfo->rows),
						 root->sort_pathkeys,
						 list_make2(makeInteger(true), makeInteger(false)));
	add_path(ordered_rel, (Path *) path);
}

/* LIMIT/OFFSET that can be written as integer literals. */
static bool
zb_limit_ok(Node *node)
{
	if (node == NULL)
		return true;
	if (!IsA(node, Const) || ((Const *) node)->consttype != INT8OID)
		return false;
	return ((Const *) node)->constisnull || DatumGetInt64(((Const *) node)->constvalue) >= 0;
}

static void
zb_add_final_paths(PlannerInfo *root, RelOptInfo *input_rel, RelOptInfo *final_rel,
				   FinalPathExtraData *extra)
{
	Query	   *q = root->parse;
	ZbRelInfo  *ifpinfo = (ZbRelInfo *) input_rel->fdw_private;
	ZbRelInfo  *fpinfo = (ZbRelInfo *) final_rel->fdw_private;
	bool		has_final_sort = false;
	List	   *pathkeys = NIL;
	double		rows;
	double		fraction;
	Cost		transfer;
	Cost		work;
	Cost		startup;
	Cost		total;
	ForeignPath *path;

	if (q->commandType != CMD_SELECT || q->rowMarks || !extra->limit_needed ||
		q->hasTargetSRFs || ifpinfo == NULL)
		return;
	if (q->limitOption != LIMIT_OPTION_COUNT)
		return;

	if (IS_UPPER_REL(input_rel) && ifpinfo->stage == UPPERREL_ORDERED)
	{
		if (!ifpinfo->pushdown_safe)
			return;
		input_rel = ifpinfo->outerrel;
		ifpinfo = (ZbRelInfo *) input_rel->fdw_private;
		has_final_sort = true;
		pathkeys = root->sort_pathkeys;
	}
	if (IS_UPPER_REL(input_rel))
	{
		if (ifpinfo->stage != UPPERREL_GROUP_AGG || !ifpinfo->pushdown_safe)
			return;
	}
	else if (!IS_SIMPLE_REL(input_rel))
		return;

	/* LIMIT applies to the rows that pass every condition: all must be remote */
	if (ifpinfo->local_conds)
		return;
	if (!zb_limit_ok(q->limitCount) || !zb_limit_ok(q->limitOffset))
		return;

	fpinfo->pushdown_safe = true;
	fpinfo->outerrel = input_rel;

	/*
	 * The remote side still scans (and sorts) what it must, but only the
	 * rows LIMIT keeps are transferred: OFFSET rows never are.  A local
	 * Limit over a sorted remote scan receives offset + count rows.
	 */
	transfer = ifpinfo->fdw_tuple_cost + cpu_tuple_cost;
	rows = Max(ifpinfo->rows - Max(extra->offset_est, 0), 1.0);
	if (extra->count_est > 0)
		rows = Min(rows, (double) extra->count_est);
	rows = clamp_row_est(rows);
	fraction = ifpinfo->rows > 0
		? Min(1.0, (rows + Max(extra->offset_est, 0)) / ifpinfo->rows) : 1.0;
	work = Max(0.0, ifpinfo->total_cost - ifpinfo->startup_cost - ifpinfo->rows * transfer);
	if (has_final_sort)
		work += zb_remote_sort_cost(ifpinfo->rows);
	startup = ifpinfo->startup_cost;
	total = startup + work * fraction + rows * transfer * 0.9;

	path = zb_upper_path(root, input_rel, root->upper_targets[UPPERREL_FINAL],
						 rows, startup, total, pathkeys,
						 list_make2(makeInteger(has_final_sort), makeInteger(true)));
	add_path(final_rel, (Path *) path);
}

static void
zb_get_upper_paths(PlannerInfo *root, UpperRelationKind stage, RelOptInfo *input_rel,
				   RelOptInfo *output_rel, void *extra)
{
	ZbRelInfo  *fpinfo;

	if (input_rel->fdw_private == NULL || output_rel->fdw_private != NULL)
		return;
	if (!((ZbRelInfo *) input_rel->fdw_private)->pushdown_safe)
		return;
	if (stage != UPPERREL_GROUP_AGG && stage != UPPERREL_ORDERED && stage != UPPERREL_FINAL)
		return;

	fpinfo = palloc0(sizeof(ZbRelInfo));
	fpinfo->pushdown_safe = false;
	fpinfo->stage = stage;
	output_rel->fdw_private = fpinfo;

	switch (stage)
	{
		case UPPERREL_GROUP_AGG:
			zb_add_grouping_paths(root, input_rel, output_rel, (GroupPathExtraData *) extra);
			break;
		case UPPERREL_ORDERED:
			zb_add_ordered_paths(root, input_rel, output_rel);
			break;
		case UPPERREL_FINAL:
			zb_add_final_paths(root, input_rel, output_rel, (FinalPathExtraData *) extra);
			break;
		default:
			break;
	}
}

static ForeignScan *
zb_get_plan(PlannerInfo *root, RelOptInfo *foreignrel, Oid foreigntableid,
			ForeignPath *best_path, List *tlist, List *scan_clauses, Plan *outer_plan)
{
	ZbRelInfo  *fpinfo = (ZbRelInfo *) foreignrel->fdw_private;
	ZbRelInfo  *sfpinfo;
	Index		scan_relid;
	List	   *fdw_scan_tlist = NIL;
	List	   *remote_exprs = NIL;
	List	   *local_exprs = NIL;
	List	   *remote_conds = NIL;
	List	   *params_list = NIL;
	List	   *retrieved_attrs;
	List	   *out_kinds;
	bool		has_final_sort = false;
	bool		has_limit = false;
	StringInfoData sql;
	ListCell   *lc;

	if (best_path->fdw_private)
	{
		has_final_sort = intVal(list_nth(best_path->fdw_private, ZbPathHasFinalSort));
		has_limit = intVal(list_nth(best_path->fdw_private, ZbPathHasLimit));
	}

	if (IS_SIMPLE_REL(foreignrel))
	{
		scan_relid = foreignrel->relid;
		foreach(lc, scan_clauses)
		{
			RestrictInfo *ri = lfirst_node(RestrictInfo, lc);

			if (ri->pseudoconstant)
				continue;
			if (list_member_ptr(fpinfo->remote_conds, ri))
			{
				remote_conds = lappend(remote_conds, ri);
				remote_exprs = lappend(remote_exprs, ri->clause);
			}
			else if (list_member_ptr(fpinfo->local_conds, ri))
				local_exprs = lappend(local_exprs, ri->clause);
			else if (zb_is_foreign_expr(root, foreignrel, ri->clause))
			{
				remote_conds = lappend(remote_conds, ri);
				remote_exprs = lappend(remote_exprs, ri->clause);
			}
			else
				local_exprs = lappend(local_exprs, ri->clause);
		}
		sfpinfo = fpinfo;
	}
	else
	{
		/* a grouping relation: the scan returns its target list */
		scan_relid = 0;
		Assert(!scan_clauses);
		remote_conds = fpinfo->remote_conds;
		remote_exprs = extract_actual_clauses(fpinfo->remote_conds, false);
		fdw_scan_tlist = fpinfo->grouped_tlist;
		sfpinfo = (ZbRelInfo *) fpinfo->outerrel->fdw_private;
	}
	fpinfo->final_remote_exprs = remote_exprs;

	initStringInfo(&sql);
	zb_deparse_select(&sql, root, foreignrel, fdw_scan_tlist, remote_conds,
					  best_path->path.pathkeys, has_final_sort, has_limit,
					  &retrieved_attrs, &params_list, &out_kinds);

	return make_foreignscan(tlist, local_exprs, scan_relid, params_list,
							list_make5(makeString(sql.data), retrieved_attrs, out_kinds,
									   makeString(IS_SIMPLE_REL(foreignrel)
												  ? sfpinfo->relation_name
												  : fpinfo->relation_name),
									   makeInteger((int) sfpinfo->relid)),
							fdw_scan_tlist, remote_exprs, outer_plan);
}

/* ---------------------------------------------------------------- parameters */

/* Databricks DECIMAL(p,s) for a numeric's text, or NULL if it does not fit. */
static char *
zb_decimal_type(const char *text)
{
	const char *p = text;
	const char *dot;
	int			intdigits;
	int			scale;
	int			precision;

	if (*p == '-')
		p++;
	while (*p == '0')
		p++;
	dot = strchr(p, '.');
	intdigits = dot ? (int) (dot - p) : (int) strlen(p);
	scale = dot ? (int) strlen(dot + 1) : 0;
	precision = Max(intdigits + scale, 1);
	if (precision > 38)
		return NULL;
	return psprintf("DECIMAL(%d,%d)", precision, scale);
}

static char *
zb_format_date(DateADT d, const char *what)
{
	int			y,
				m,
				day;

	if (DATE_NOT_FINITE(d))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("cannot send an infinite %s to Databricks", what)));
	j2date(d + POSTGRES_EPOCH_JDATE, &y, &m, &day);
	if (y < 1 || y > 9999)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("%s out of the Databricks range (years 1 to 9999)", what)));
	return psprintf("%04d-%02d-%02d", y, m, day);
}

static char *
zb_format_timestamp(Timestamp ts, bool utc)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_NOT_FINITE(ts))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("cannot send an infinite timestamp to Databricks")));
	/* no time zone argument: the fields of the UTC instant (or the naive value) */
	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	if (tm.tm_year < 1 || tm.tm_year > 9999)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of the Databricks range (years 1 to 9999)")));
	return psprintf("%04d-%02d-%02d%c%02d:%02d:%02d.%06d%s", tm.tm_year, tm.tm_mon, tm.tm_mday,
					utc ? 'T' : ' ', tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec,
					utc ? "Z" : "");
}

/* A value as a statement parameter: its text (NULL for NULL) and Databricks type. */
static void
zb_param_value(Oid type, Datum value, bool isnull, ZbSqlParam *p)
{
	char		buf[64];

	p->value = NULL;
	switch (type)
	{
		case BOOLOID:
			p->type = "BOOLEAN";
			if (!isnull)
				p->value = DatumGetBool(value) ? "true" : "false";
			return;
		case INT2OID:
			p->type = "SMALLINT";
			if (!isnull)
				p->value = psprintf("%d", (int) DatumGetInt16(value));
			return;
		case INT4OID:
			p->type = "INT";
			if (!isnull)
				p->value = psprintf("%d", DatumGetInt32(value));
			return;
		case INT8OID:
			p->type = "BIGINT";
			if (!isnull)
				p->value = psprintf(INT64_FORMAT, DatumGetInt64(value));
			return;
		case FLOAT4OID:
		case FLOAT8OID:
			p->type = type == FLOAT4OID ? "FLOAT" : "DOUBLE";
			if (!isnull)
			{
				double		d = type == FLOAT4OID ? DatumGetFloat4(value) : DatumGetFloat8(value);

				if (isnan(d))
					p->value = "NaN";
				else if (isinf(d))
					p->value = d > 0 ? "Infinity" : "-Infinity";
				else
				{
					if (type == FLOAT4OID)
						float_to_shortest_decimal_buf(DatumGetFloat4(value), buf);
					else
						double_to_shortest_decimal_buf(d, buf);
					p->value = pstrdup(buf);
				}
			}
			return;
		case NUMERICOID:
			if (isnull)
			{
				p->type = "DECIMAL(38,0)";
				return;
			}
			p->value = DatumGetCString(DirectFunctionCall1(numeric_out, value));
			if (strcmp(p->value, "NaN") == 0 || strstr(p->value, "Infinity"))
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
						 errmsg("cannot send numeric %s to Databricks", p->value),
						 errdetail("Databricks DECIMAL has no NaN or infinity.")));
			p->type = zb_decimal_type(p->value);
			if (p->type == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("numeric value has too many digits for Databricks"),
						 errdetail("Databricks DECIMAL holds at most 38 digits.")));
			return;
		case DATEOID:
			p->type = "DATE";
			if (!isnull)
				p->value = zb_format_date(DatumGetDateADT(value), "date");
			return;
		case TIMESTAMPOID:
			p->type = "TIMESTAMP_NTZ";
			if (!isnull)
				p->value = zb_format_timestamp(DatumGetTimestamp(value), false);
			return;
		case TIMESTAMPTZOID:
			p->type = "TIMESTAMP";
			if (!isnull)
				p->value = zb_format_timestamp(DatumGetTimestampTz(value), true);
			return;
		case NAMEOID:
			p->type = "STRING";
			if (!isnull)
				p->value = pstrdup(NameStr(*DatumGetName(value)));
			return;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			p->type = "STRING";
			if (!isnull)
				p->value = TextDatumGetCString(value);
			return;
	}
	elog(ERROR, "unexpected parameter type %u", type);
}

/* ---------------------------------------------------------------- conversion */

static void
zb_conv_error_callback(void *arg)
{
	ZbScanState *fs = (ZbScanState *) arg;
	ZbConv	   *c;
	const ZbSqlColumn *col;

	if (fs->cur_conv < 0 || fs->cur_conv >= fs->nconv || fs->st == NULL)
		return;
	c = &fs->conv[fs->cur_conv];
	col = zb_sql_column(fs->st, c->remote);
	if (fs->rel)
		errcontext("column \"%s\" of foreign table \"%s\" (remote type %s)",
				   NameStr(TupleDescAttr(fs->tupdesc, c->attnum - 1)->attname),
				   RelationGetRelationName(fs->rel), col->type_text);
	else
		errcontext("processing expression at position %d in select list of a remote query on foreign table \"%s\" (remote type %s)",
				   c->attnum, fs->relname, col->type_text);
}

static void
zb_setup_conversions(ZbScanState *fs)
{
	int			n = list_length(fs->retrieved_attrs);
	int			remote = 0;
	int			i = 0;
	ListCell   *la;
	ListCell   *lk;

	fs->conv = palloc0(sizeof(ZbConv) * Max(1, n));
	fs->nconv = n;
	forboth(la, fs->retrieved_attrs, lk, fs->out_kinds)
	{
		ZbConv	   *c = &fs->conv[i++];
		Form_pg_attribute att;
		Oid			infunc;

		c->attnum = lfirst_int(la);
		att = TupleDescAttr(fs->tupdesc, c->attnum - 1);
		c->typid = att->atttypid;
		c->typmod = att->atttypmod;
		c->remote = remote;
		getTypeInputInfo(c->typid, &infunc, &c->ioparam);
		fmgr_info(infunc, &c->inproc);
		if (lfirst_int(lk) == ZB_OUT_AVG)
		{
			c->kind = CONV_AVG;
			remote += 2;
			continue;
		}
		remote++;
		if (c->typid == BYTEAOID)
			c->kind = CONV_BYTEA;
		else if (c->typid == JSONOID || c->typid == JSONBOID)
			c->kind = CONV_JSON;
		else if (OidIsValid(get_element_type(c->typid)) && get_typlen(c->typid) == -1)
		{
			Oid			einfunc;

			c->kind = CONV_ARRAY;
			c->elemtype = get_element_type(c->typid);
			get_typlenbyvalalign(c->elemtype, &c->elmlen, &c->elmbyval, &c->elmalign);
			getTypeInputInfo(c->elemtype, &einfunc, &c->elem_ioparam);
			fmgr_info(einfunc, &c->elem_inproc);
		}
		else
			c->kind = CONV_INPUT;
	}
}

/* Check the result's shape against ours, and settle per-column details. */
static void
zb_check_result(ZbScanState *fs)
{
	int			expected = 0;
	int			i;

	for (i = 0; i < fs->nconv; i++)
		expected += fs->conv[i].kind == CONV_AVG ? 2 : 1;
	/* a scan that needs no column asks for SELECT NULL */
	if (expected == 0 && zb_sql_ncolumns(fs->st) == 1)
		return;
	if (zb_sql_ncolumns(fs->st) != expected)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_COLUMN_NUMBER),
				 errmsg("remote result has %d columns, expected %d",
						zb_sql_ncolumns(fs->st), expected),
				 fs->rel ? errhint("Check the \"query\" option of foreign table \"%s\": it must return the table's columns.",
								   RelationGetRelationName(fs->rel)) : 0,
				 errcontext("remote SQL: %s", fs->sql)));
	for (i = 0; i < fs->nconv; i++)
	{
		ZbConv	   *c = &fs->conv[i];
		const char *t = zb_sql_column(fs->st, c->remote)->type_name;

		if (c->kind == CONV_JSON)
			c->json_quote = !(strcmp(t, "STRING") == 0 || strcmp(t, "ARRAY") == 0 ||
							  strcmp(t, "MAP") == 0 || strcmp(t, "STRUCT") == 0 ||
							  strcmp(t, "USER_DEFINED_TYPE") == 0 ||
							  strcmp(t, "VARIANT") == 0 || strcmp(t, "NULL") == 0 ||
							  strcmp(t, "BOOLEAN") == 0 || strcmp(t, "INT") == 0 ||
							  strcmp(t, "LONG") == 0 || strcmp(t, "SHORT") == 0 ||
							  strcmp(t, "BYTE") == 0 || strcmp(t, "DECIMAL") == 0 ||
							  strcmp(t, "DOUBLE") == 0 || strcmp(t, "FLOAT") == 0);
	}
}

static Datum
zb_convert_array(ZbConv *c, const char *text)
{
	JScan		js;
	StringInfoData v;
	bool		first = true;
	bool		more;
	int			n = 0;
	int			cap = 16;
	Datum	   *elems;
	bool	   *nulls;
	int			dims[1];
	int			lbs[1] = {1};

	if (text[0] != '[')			/* a PostgreSQL array literal */
		return InputFunctionCall(&c->inproc, (char *) text, c->ioparam, c->typmod);
	elems = palloc(sizeof(Datum) * cap);
	nulls = palloc(sizeof(bool) * cap);
	initStringInfo(&v);
	jscan_init(&js, text, strlen(text));
	if (!jscan_begin(&js, '['))
		goto bad;
	while (jscan_next(&js, ']', &first, &more) && more)
	{
		JScanKind	kind;

		resetStringInfo(&v);
		if (!jscan_peek_kind(&js, &kind))
			goto bad;
		if (kind == JS_ARRAY || kind == JS_OBJECT)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
					 errmsg("cannot convert a nested JSON value to an element of type %s",
							format_type_be(c->elemtype)),
					 errhint("Declare the column as jsonb to keep nested values.")));
		if (!jscan_scalar(&js, &v, &kind))
			goto bad;
		if (n == cap)
		{
			cap *= 2;
			elems = repalloc(elems, sizeof(Datum) * cap);
			nulls = repalloc(nulls, sizeof(bool) * cap);
		}
		nulls[n] = (kind == JS_NULL);
		elems[n] = nulls[n] ? (Datum) 0
			: InputFunctionCall(&c->elem_inproc, v.data, c->elem_ioparam, -1);
		n++;
	}
	if (js.err || !jscan_at_end(&js))
		goto bad;
	dims[0] = n;
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, c->elemtype,
											  c->elmlen, c->elmbyval, c->elmalign));
bad:
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
			 errmsg("invalid JSON array for type %s: %s", format_type_be(c->typid),
					js.err ? js.err : "malformed")));
	return (Datum) 0;
}

static Datum
zb_convert(ZbScanState *fs, ZbConv *c, char **values, bool *isnull)
{
	const char *text = values[c->remote];

	*isnull = false;
	switch (c->kind)
	{
		case CONV_AVG:
			{
				const char *sum = values[c->remote];
				const char *cnt = values[c->remote + 1];
				Datum		s;
				Datum		n;

				if (sum == NULL || cnt == NULL)
				{
					*isnull = true;
					return (Datum) 0;
				}
				s = DirectFunctionCall3(numeric_in, CStringGetDatum(sum),
										ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
				n = DirectFunctionCall3(numeric_in, CStringGetDatum(cnt),
										ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
				if (DatumGetBool(DirectFunctionCall2(numeric_eq, n,
													 DirectFunctionCall1(int4_numeric, Int32GetDatum(0)))))
				{
					*isnull = true;
					return (Datum) 0;
				}
				/* exactly PostgreSQL's avg(): numeric_div(sum, count) */
				return DirectFunctionCall2(numeric_div, s, n);
			}
		default:
			break;
	}
	if (text == NULL)
	{
		*isnull = true;
		return (Datum) 0;
	}
	switch (c->kind)
	{
		case CONV_BYTEA:
			{
				int			len = strlen(text);
				int			maxlen = pg_b64_dec_len(len);
				bytea	   *b = palloc(VARHDRSZ + maxlen);
				int			n = zb_b64_decode(text, len, VARDATA(b), maxlen);

				if (n < 0)
					ereport(ERROR,
							(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
							 errmsg("invalid base64 data for type bytea")));
				SET_VARSIZE(b, VARHDRSZ + n);
				return PointerGetDatum(b);
			}
		case CONV_JSON:
			if (c->json_quote)
			{
				StringInfoData q;

				initStringInfo(&q);
				escape_json(&q, text);
				return InputFunctionCall(&c->inproc, q.data, c->ioparam, c->typmod);
			}
			return InputFunctionCall(&c->inproc, (char *) text, c->ioparam, c->typmod);
		case CONV_ARRAY:
			return zb_convert_array(c, text);
		default:
			return InputFunctionCall(&c->inproc, (char *) text, c->ioparam, c->typmod);
	}
}

/* ---------------------------------------------------------------- execution */

static ZbScanState *
zb_scan_state_init(ForeignScanState *node, ForeignScan *fsplan, EState *estate)
{
	ZbScanState *fs = palloc0(sizeof(ZbScanState));
	ListCell   *lc;
	int			i;

	fs->sql = strVal(list_nth(fsplan->fdw_private, ZbScanSql));
	fs->retrieved_attrs = (List *) list_nth(fsplan->fdw_private, ZbScanRetrievedAttrs);
	fs->out_kinds = (List *) list_nth(fsplan->fdw_private, ZbScanOutKinds);
	fs->relname = strVal(list_nth(fsplan->fdw_private, ZbScanRelationName));
	fs->relid = (Oid) intVal(list_nth(fsplan->fdw_private, ZbScanTableOid));
	fs->cxt = AllocSetContextCreate(estate->es_query_cxt, "zerobus scan",
									ALLOCSET_DEFAULT_SIZES);
	fs->cur_conv = -1;

	fs->nparams = list_length(fsplan->fdw_exprs);
	if (fs->nparams > 0)
	{
		fs->param_exprs = ExecInitExprList(fsplan->fdw_exprs, (PlanState *) node);
		fs->param_types = palloc(sizeof(Oid) * fs->nparams);
		fs->params = palloc0(sizeof(ZbSqlParam) * fs->nparams);
		i = 0;
		foreach(lc, fsplan->fdw_exprs)
		{
			fs->param_types[i] = exprType((Node *) lfirst(lc));
			fs->params[i].name = psprintf("p%d", i + 1);
			i++;
		}
	}
	return fs;
}

/* Evaluate the parameters and run the statement. */
static void
zb_scan_execute(ForeignScanState *node, ZbScanState *fs)
{
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	MemoryContext old;
	ListCell   *lc;
	int			i = 0;

	if (fs->st)
	{
		zb_sql_release(fs->st);
		fs->st = NULL;
	}
	MemoryContextReset(fs->cxt);
	old = MemoryContextSwitchTo(fs->cxt);
	if (fs->conn == NULL)
	{
		/* resolved once per scan (options changed since take effect here) */
		Oid			serverid = ((ForeignScan *) node->ss.ps.plan)->fs_server;

		MemoryContextSwitchTo(GetMemoryChunkContext(fs));
		fs->conn = zb_sql_connect(serverid, GetUserId());
		MemoryContextSwitchTo(fs->cxt);
	}
	foreach(lc, fs->param_exprs)
	{
		ExprState  *expr = (ExprState *) lfirst(lc);
		bool		isnull;
		Datum		v;

		v = ExecEvalExpr(expr, econtext, &isnull);
		zb_param_value(fs->param_types[i], v, isnull, &fs->params[i]);
		i++;
	}
	fs->st = zb_sql_execute(fs->conn, fs->sql, fs->nparams, fs->params,
							zb_table_external_links(fs->relid,
													zb_session_config(fs->conn)->external_links));
	MemoryContextSwitchTo(old);

	if (fs->conv == NULL)
	{
		old = MemoryContextSwitchTo(GetMemoryChunkContext(fs));
		zb_setup_conversions(fs);
		fs->values = palloc0(sizeof(char *) * Max(1, zb_sql_ncolumns(fs->st)));
		MemoryContextSwitchTo(old);
	}
	else if (zb_sql_ncolumns(fs->st) > 0)
	{
		old = MemoryContextSwitchTo(GetMemoryChunkContext(fs));
		fs->values = repalloc(fs->values, sizeof(char *) * zb_sql_ncolumns(fs->st));
		MemoryContextSwitchTo(old);
	}
	zb_check_result(fs);
	fs->executed = true;
}

static void
zb_begin_scan(ForeignScanState *node, int eflags)
{
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;
	EState	   *estate = node->ss.ps.state;
	ZbScanState *fs;

	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
	{
		node->fdw_state = NULL;
		return;
	}
	fs = zb_scan_state_init(node, fsplan, estate);
	node->fdw_state = fs;
	if (fsplan->scan.scanrelid > 0)
	{
		fs->rel = node->ss.ss_currentRelation;
		fs->tupdesc = RelationGetDescr(fs->rel);
		fs->out_kinds = NIL;
		for (int i = 0; i < list_length(fs->retrieved_attrs); i++)
			fs->out_kinds = lappend_int(fs->out_kinds, ZB_OUT_PLAIN);
	}
	else
		fs->tupdesc = node->ss.ss_ScanTupleSlot->tts_tupleDescriptor;
}

static void
zb_accumulate(ZbScanState *fs)
{
	if (fs->st)
	{
		const ZbSqlStats *s = zb_sql_stats(fs->st);

		fs->totals.rows += s->rows;
		fs->totals.chunks += s->chunks;
		fs->totals.bytes += s->bytes;
		fs->totals.requests += s->requests;
	}
}

static TupleTableSlot *
zb_iterate_scan(ForeignScanState *node)
{
	ZbScanState *fs = (ZbScanState *) node->fdw_state;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;
	ErrorContextCallback errcb;
	int			i;

	if (!fs->executed)
		zb_scan_execute(node, fs);

	ExecClearTuple(slot);
	if (!zb_sql_next_row(fs->st, fs->values))
		return slot;

	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	errcb.callback = zb_conv_error_callback;
	errcb.arg = fs;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	for (i = 0; i < fs->nconv; i++)
	{
		ZbConv	   *c = &fs->conv[i];

		fs->cur_conv = i;
		slot->tts_values[c->attnum - 1] = zb_convert(fs, c, fs->values,
													  &slot->tts_isnull[c->attnum - 1]);
	}
	fs->cur_conv = -1;
	error_context_stack = errcb.previous;
	ExecStoreVirtualTuple(slot);
	return slot;
}

static void
zb_rescan(ForeignScanState *node)
{
	ZbScanState *fs = (ZbScanState *) node->fdw_state;

	if (!fs->executed)
		return;
	/* new parameter values need a new statement; otherwise read it again */
	if (node->ss.ps.chgParam != NULL)
	{
		zb_accumulate(fs);
		zb_sql_release(fs->st);
		fs->st = NULL;
		fs->executed = false;
	}
	else
		zb_sql_rewind(fs->st);
}

static void
zb_end_scan(ForeignScanState *node)
{
	ZbScanState *fs = (ZbScanState *) node->fdw_state;

	if (fs == NULL)
		return;
	if (fs->st)
	{
		zb_accumulate(fs);
		zb_sql_release(fs->st);
		fs->st = NULL;
	}
}

static void
zb_explain_scan(ForeignScanState *node, ExplainState *es)
{
	ForeignScan *plan = (ForeignScan *) node->ss.ps.plan;
	ZbScanState *fs = (ZbScanState *) node->fdw_state;

	if (plan->scan.scanrelid == 0)
		ExplainPropertyText("Relations",
							strVal(list_nth(plan->fdw_private, ZbScanRelationName)), es);
	if (es->verbose)
		ExplainPropertyText("Remote SQL", strVal(list_nth(plan->fdw_private, ZbScanSql)), es);
	if (es->analyze && fs)
	{
		ZbSqlStats	t = fs->totals;

		if (fs->st)
		{
			const ZbSqlStats *s = zb_sql_stats(fs->st);

			t.rows += s->rows;
			t.chunks += s->chunks;
			t.bytes += s->bytes;
			t.requests += s->requests;
		}
		ExplainPropertyInteger("Remote Rows", NULL, t.rows, es);
		ExplainPropertyInteger("Remote Chunks", NULL, t.chunks, es);
		if (es->costs)
		{
			ExplainPropertyInteger("Remote Bytes", NULL, t.bytes, es);
			ExplainPropertyInteger("Remote Requests", NULL, t.requests, es);
		}
	}
}

/* ---------------------------------------------------------------- modification */

static int
zb_is_updatable(Relation rel)
{
	if (zb_rel_is_query(RelationGetRelid(rel)))
		return 0;
	return (1 << CMD_INSERT) | (1 << CMD_DELETE);
}

static ForeignScan *
zb_find_modifytable_subplan(PlannerInfo *root, ModifyTable *plan, Index rtindex,
							int subplan_index)
{
	Plan	   *subplan = outerPlan(plan);

	if (IsA(subplan, Append))
	{
		Append	   *ap = (Append *) subplan;

		if (subplan_index < list_length(ap->appendplans))
			subplan = (Plan *) list_nth(ap->appendplans, subplan_index);
	}
	else if (IsA(subplan, Result) && outerPlan(subplan) != NULL &&
			 IsA(outerPlan(subplan), Append))
	{
		Append	   *ap = (Append *) outerPlan(subplan);

		if (subplan_index < list_length(ap->appendplans))
			subplan = (Plan *) list_nth(ap->appendplans, subplan_index);
	}
	if (IsA(subplan, ForeignScan))
	{
		ForeignScan *fscan = (ForeignScan *) subplan;

		if (bms_is_member(rtindex, fscan->fs_relids))
			return fscan;
	}
	return NULL;
}

/*
 * DELETE runs as one remote statement when all its conditions do; there is
 * no row identity in a Delta table to delete rows one by one.
 */
static bool
zb_plan_direct_modify(PlannerInfo *root, ModifyTable *plan, Index resultRelation,
					  int subplan_index)
{
	ForeignScan *fscan;
	RelOptInfo *foreignrel;
	ZbRelInfo  *fpinfo;
	RangeTblEntry *rte;
	Relation	rel;
	StringInfoData sql;
	List	   *params_list = NIL;

	if (plan->operation != CMD_DELETE)
		return false;
	fscan = zb_find_modifytable_subplan(root, plan, resultRelation, subplan_index);
	if (fscan == NULL || fscan->scan.scanrelid == 0)
		return false;
	if (fscan->scan.plan.qual != NIL || plan->returningLists != NIL)
		return false;

	foreignrel = root->simple_rel_array[resultRelation];
	fpinfo = (ZbRelInfo *) foreignrel->fdw_private;
	rte = root->simple_rte_array[resultRelation];
	rel = table_open(rte->relid, NoLock);
	initStringInfo(&sql);
	zb_deparse_delete(&sql, root, resultRelation, rel, foreignrel,
					  fpinfo->final_remote_exprs, &params_list);
	table_close(rel, NoLock);

	fscan->operation = CMD_DELETE;
	fscan->resultRelation = resultRelation;
	fscan->fdw_exprs = params_list;
	fscan->fdw_private = list_make5(makeString(sql.data), NIL, NIL,
									makeString(fpinfo->relation_name),
									makeInteger((int) rte->relid));
	fscan->fdw_private = lappend(fscan->fdw_private, makeInteger(plan->canSetTag));
	return true;
}

static List *
zb_plan_modify(PlannerInfo *root, ModifyTable *plan, Index resultRelation, int subplan_index)
{
	if (plan->operation == CMD_INSERT)
	{
		if (plan->onConflictAction != ONCONFLICT_NONE)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("INSERT ... ON CONFLICT is not supported on zerobus_fdw foreign tables"),
					 errdetail("ZeroBus appends rows; Delta tables have no unique constraints to check.")));
		return NIL;
	}
	if (plan->operation == CMD_DELETE)
	{
		RangeTblEntry *rte = planner_rt_fetch(resultRelation, root);

		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot delete from foreign table \"%s\" row by row",
						get_rel_name(rte->relid)),
				 plan->returningLists
				 ? errdetail("Databricks does not return deleted rows: DELETE ... RETURNING is not supported.")
				 : errdetail("A Delta table has no row identity; a DELETE runs as one remote statement, so all its conditions must run remotely."),
				 plan->returningLists ? 0
				 : errhint("Use conditions that can be pushed down (comparisons, IN, LIKE, IS NULL on the table's columns, with constant values).")));
	}
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("UPDATE is not supported on zerobus_fdw foreign tables")));
	return NIL;
}

/*
 * The executor requires this callback to exist for DELETE even when the
 * DELETE runs directly; planning never chooses row-by-row deletes.
 */
static TupleTableSlot *
zb_exec_delete(EState *estate, ResultRelInfo *rinfo, TupleTableSlot *slot,
			   TupleTableSlot *planSlot)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot delete from foreign table \"%s\" row by row",
					RelationGetRelationName(rinfo->ri_RelationDesc))));
	return NULL;
}

static void
zb_begin_direct_modify(ForeignScanState *node, int eflags)
{
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;
	ZbScanState *fs;

	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
	{
		node->fdw_state = NULL;
		return;
	}
	fs = zb_scan_state_init(node, fsplan, node->ss.ps.state);
	fs->set_processed = intVal(list_nth(fsplan->fdw_private, ZbScanTableOid + 1));
	if (fsplan->scan.scanrelid == 0)
		fs->rel = ExecOpenScanRelation(node->ss.ps.state,
									   node->resultRelInfo->ri_RangeTableIndex, eflags);
	else
		fs->rel = node->ss.ss_currentRelation;
	fs->num_affected = -1;
	node->fdw_state = fs;
}

static TupleTableSlot *
zb_iterate_direct_modify(ForeignScanState *node)
{
	ZbScanState *fs = (ZbScanState *) node->fdw_state;
	EState	   *estate = node->ss.ps.state;
	Instrumentation *instr = node->ss.ps.instrument;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;

	if (fs->num_affected == -1)
	{
		ExprContext *econtext = node->ss.ps.ps_ExprContext;
		MemoryContext old = MemoryContextSwitchTo(fs->cxt);
		ListCell   *lc;
		int			i = 0;
		char	   *values[2];

		fs->conn = zb_sql_connect(GetForeignTable(RelationGetRelid(fs->rel))->serverid,
								  GetUserId());
		foreach(lc, fs->param_exprs)
		{
			bool		isnull;
			Datum		v = ExecEvalExpr((ExprState *) lfirst(lc), econtext, &isnull);

			zb_param_value(fs->param_types[i], v, isnull, &fs->params[i]);
			i++;
		}
		fs->st = zb_sql_execute(fs->conn, fs->sql, fs->nparams, fs->params, false);
		fs->num_affected = 0;
		/* Databricks reports num_affected_rows as the result's first column */
		if (zb_sql_ncolumns(fs->st) >= 1 && zb_sql_ncolumns(fs->st) <= 2 &&
			zb_sql_next_row(fs->st, values) && values[0])
			fs->num_affected = zb_strtoint64(values[0]);
		MemoryContextSwitchTo(old);
	}
	if (fs->set_processed)
		estate->es_processed += fs->num_affected;
	if (instr)
		instr->tuplecount += fs->num_affected;
	return ExecClearTuple(slot);
}

static void
zb_end_direct_modify(ForeignScanState *node)
{
	ZbScanState *fs = (ZbScanState *) node->fdw_state;

	if (fs && fs->st)
	{
		zb_sql_release(fs->st);
		fs->st = NULL;
	}
}

static void
zb_explain_direct_modify(ForeignScanState *node, ExplainState *es)
{
	ForeignScan *plan = (ForeignScan *) node->ss.ps.plan;

	if (es->verbose)
		ExplainPropertyText("Remote SQL", strVal(list_nth(plan->fdw_private, ZbScanSql)), es);
}

static void
zb_exec_truncate(List *rels, DropBehavior behavior, bool restart_seqs)
{
	ListCell   *lc;

	foreach(lc, rels)
	{
		Relation	rel = (Relation) lfirst(lc);
		Oid			relid = RelationGetRelid(rel);
		StringInfoData sql;
		ZbSession  *conn;
		ZbSqlStatement *st;

		if (zb_rel_is_query(relid))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot truncate foreign table \"%s\"", RelationGetRelationName(rel)),
					 errdetail("It is defined by a query, not a table.")));
		initStringInfo(&sql);
		zb_deparse_truncate(&sql, rel);
		conn = zb_sql_connect(GetForeignTable(relid)->serverid, GetUserId());
		st = zb_sql_execute(conn, sql.data, 0, NULL, false);
		zb_sql_release(st);
	}
}

/* ---------------------------------------------------------------- ANALYZE */

/*
 * ANALYZE asks Databricks for the table's row count (one count(*), run
 * remotely) so that the planner's estimates start from the real size.  It
 * returns no sample rows: fetching a representative sample would mean
 * scanning the table, so column statistics keep their defaults.
 */
static int
zb_acquire_sample_rows(Relation rel, int elevel, HeapTuple *rows, int targrows,
					   double *totalrows, double *totaldeadrows)
{
	Oid			relid = RelationGetRelid(rel);
	StringInfoData sql;
	ZbSession  *conn;
	ZbSqlStatement *st;
	char	   *values[1];

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT count(*) FROM ");
	zb_deparse_relation(&sql, rel);
	conn = zb_sql_connect(GetForeignTable(relid)->serverid, GetUserId());
	st = zb_sql_execute(conn, sql.data, 0, NULL, false);
	*totalrows = 0;
	if (zb_sql_ncolumns(st) == 1 && zb_sql_next_row(st, values) && values[0])
		*totalrows = (double) zb_strtoint64(values[0]);
	*totaldeadrows = 0;
	zb_sql_release(st);
	ereport(elevel,
			(errmsg("\"%s\": %.0f rows in the remote table; no sample taken",
					RelationGetRelationName(rel), *totalrows)));
	return 0;
}

static bool
zb_analyze(Relation relation, AcquireSampleRowsFunc *func, BlockNumber *totalpages)
{
	*func = zb_acquire_sample_rows;
	*totalpages = 1;
	return true;
}

/* ---------------------------------------------------------------- import */

/* The PostgreSQL type for a Databricks type (information_schema's full_data_type). */
static char *
zb_map_type(const char *dbtype)
{
	char	   *t = asc_tolower(dbtype, strlen(dbtype));
	int			p;
	int			s;

	if (strcmp(t, "tinyint") == 0 || strcmp(t, "smallint") == 0 || strcmp(t, "byte") == 0 ||
		strcmp(t, "short") == 0)
		return "smallint";
	if (strcmp(t, "int") == 0 || strcmp(t, "integer") == 0)
		return "integer";
	if (strcmp(t, "bigint") == 0 || strcmp(t, "long") == 0)
		return "bigint";
	if (strcmp(t, "boolean") == 0)
		return "boolean";
	if (strcmp(t, "float") == 0 || strcmp(t, "real") == 0)
		return "real";
	if (strcmp(t, "double") == 0)
		return "double precision";
	if (strcmp(t, "string") == 0)
		return "text";
	if (strcmp(t, "date") == 0)
		return "date";
	if (strcmp(t, "timestamp") == 0 || strcmp(t, "timestamp_ltz") == 0)
		return "timestamp with time zone";
	if (strcmp(t, "timestamp_ntz") == 0)
		return "timestamp without time zone";
	if (strcmp(t, "binary") == 0)
		return "bytea";
	if (strcmp(t, "variant") == 0 || strncmp(t, "array<", 6) == 0 ||
		strncmp(t, "map<", 4) == 0 || strncmp(t, "struct<", 7) == 0)
		return "jsonb";
	if (strcmp(t, "decimal") == 0)
		return "numeric(10,0)";
	if (sscanf(t, "decimal(%d,%d)", &p, &s) == 2 && p >= 1 && p <= 38 && s >= 0 && s <= p)
		return psprintf("numeric(%d,%d)", p, s);
	if (sscanf(t, "varchar(%d)", &p) == 1 && p >= 1)
		return psprintf("varchar(%d)", p);
	if (sscanf(t, "char(%d)", &p) == 1 && p >= 1)
		return psprintf("character(%d)", p);
	return "text";
}

static List *
zb_import_schema(ImportForeignSchemaStmt *stmt, Oid serverOid)
{
	ForeignServer *server = GetForeignServer(serverOid);
	ZbSession  *conn = zb_sql_connect(serverOid, GetUserId());
	char	   *remote = stmt->remote_schema;
	const char *dot = strchr(remote, '.');
	char	   *catalog;
	char	   *schema;
	StringInfoData sql;
	List	   *params = NIL;
	ZbSqlParam *pa;
	ZbSqlStatement *st;
	char	   *values[4];
	List	   *commands = NIL;
	StringInfoData cmd;
	char	   *cur_table = NULL;
	bool		skip = false;
	int			ncols = 0;
	ListCell   *lc;
	int			i;

	if (dot)
	{
		catalog = pnstrdup(remote, dot - remote);
		schema = pstrdup(dot + 1);
	}
	else
	{
		catalog = zb_session_config(conn)->catalog;
		schema = pstrdup(remote);
	}
	if (catalog == NULL || catalog[0] == '\0' || schema[0] == '\0' || strchr(schema, '.'))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_SCHEMA_NOT_FOUND),
				 errmsg("invalid remote schema \"%s\"", remote),
				 errhint("Name it as \"catalog.schema\" (for example \"main.default\"), or set the server option \"catalog\" and name just the schema.")));

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT `table_name`, `column_name`, `full_data_type`, `is_nullable` FROM ");
	zb_append_identifier(&sql, catalog);
	appendStringInfoString(&sql, ".`information_schema`.`columns` WHERE (`table_schema` = :p1)");
	params = lappend(params, asc_tolower(schema, strlen(schema)));
	if (stmt->list_type == FDW_IMPORT_SCHEMA_LIMIT_TO ||
		stmt->list_type == FDW_IMPORT_SCHEMA_EXCEPT)
	{
		appendStringInfoString(&sql, stmt->list_type == FDW_IMPORT_SCHEMA_LIMIT_TO
							   ? " AND (`table_name` IN (" : " AND (`table_name` NOT IN (");
		i = 0;
		foreach(lc, stmt->table_list)
		{
			RangeVar   *rv = (RangeVar *) lfirst(lc);

			params = lappend(params, rv->relname);
			appendStringInfo(&sql, "%s:p%d", i++ > 0 ? ", " : "", list_length(params));
		}
		appendStringInfoString(&sql, "))");
	}
	appendStringInfoString(&sql, " ORDER BY `table_name`, `ordinal_position`");

	pa = palloc0(sizeof(ZbSqlParam) * list_length(params));
	i = 0;
	foreach(lc, params)
	{
		pa[i].name = psprintf("p%d", i + 1);
		pa[i].value = (char *) lfirst(lc);
		pa[i].type = "STRING";
		i++;
	}
	st = zb_sql_execute(conn, sql.data, list_length(params), pa, false);
	if (zb_sql_ncolumns(st) != 4)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_COLUMN_NUMBER),
				 errmsg("unexpected result from information_schema.columns")));

	initStringInfo(&cmd);
	for (;;)
	{
		bool		more = zb_sql_next_row(st, values);

		if (cur_table && (!more || values[0] == NULL || strcmp(values[0], cur_table) != 0))
		{
			/* finish the previous table */
			if (!skip)
			{
				appendStringInfo(&cmd, "\n) SERVER %s OPTIONS (table %s)",
								 quote_identifier(server->servername),
								 quote_literal_cstr(psprintf("%s.%s.%s", catalog, schema, cur_table)));
				commands = lappend(commands, pstrdup(cmd.data));
			}
			cur_table = NULL;
		}
		if (!more)
			break;
		if (values[0] == NULL || values[1] == NULL || values[2] == NULL)
			continue;
		if (cur_table == NULL)
		{
			cur_table = pstrdup(values[0]);
			skip = !zb_valid_name(catalog) || !zb_valid_name(schema) ||
				!zb_valid_name(cur_table);
			if (skip)
				ereport(NOTICE,
						(errmsg("skipping remote table \"%s.%s.%s\": its name is not made of ASCII letters, digits and underscores",
								catalog, schema, cur_table),
						 errhint("Create a foreign table for it with the \"query\" option.")));
			resetStringInfo(&cmd);
			appendStringInfo(&cmd, "CREATE FOREIGN TABLE %s.%s (",
							 quote_identifier(stmt->local_schema), quote_identifier(cur_table));
			ncols = 0;
		}
		if (skip)
			continue;
		appendStringInfo(&cmd, "%s\n  %s %s", ncols++ > 0 ? "," : "",
						 quote_identifier(values[1]), zb_map_type(values[2]));
		if (strlen(values[1]) >= NAMEDATALEN)
			appendStringInfo(&cmd, " OPTIONS (column_name %s)", quote_literal_cstr(values[1]));
		if (values[3] && strcmp(values[3], "NO") == 0)
			appendStringInfoString(&cmd, " NOT NULL");
	}
	zb_sql_release(st);

	if (commands == NIL && stmt->list_type != FDW_IMPORT_SCHEMA_LIMIT_TO)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_SCHEMA_NOT_FOUND),
				 errmsg("remote schema \"%s.%s\" does not exist or has no tables", catalog, schema)));
	return commands;
}

/* ---------------------------------------------------------------- handler */

PG_FUNCTION_INFO_V1(zerobus_fdw_handler);

Datum
zerobus_fdw_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *routine = makeNode(FdwRoutine);

	routine->GetForeignRelSize = zb_get_rel_size;
	routine->GetForeignPaths = zb_get_paths;
	routine->GetForeignPlan = zb_get_plan;
	routine->BeginForeignScan = zb_begin_scan;
	routine->IterateForeignScan = zb_iterate_scan;
	routine->ReScanForeignScan = zb_rescan;
	routine->EndForeignScan = zb_end_scan;
	routine->ExplainForeignScan = zb_explain_scan;
	routine->GetForeignUpperPaths = zb_get_upper_paths;

	routine->IsForeignRelUpdatable = zb_is_updatable;
	routine->PlanForeignModify = zb_plan_modify;
	routine->ExecForeignDelete = zb_exec_delete;
	routine->PlanDirectModify = zb_plan_direct_modify;
	routine->BeginDirectModify = zb_begin_direct_modify;
	routine->IterateDirectModify = zb_iterate_direct_modify;
	routine->EndDirectModify = zb_end_direct_modify;
	routine->ExplainDirectModify = zb_explain_direct_modify;
	routine->ExecForeignTruncate = zb_exec_truncate;
	zb_fdw_insert_routines(routine);

	routine->AnalyzeForeignTable = zb_analyze;
	routine->ImportForeignSchema = zb_import_schema;
	PG_RETURN_POINTER(routine);
}

/* ---------------------------------------------------------------- execute_remote */

/*
 * zerobus.execute_remote(server, statement, VARIADIC args text[]): run one
 * statement on the server's SQL warehouse, with args as the STRING
 * parameters :p1, :p2, ...  Returns num_affected_rows for DML, else the
 * number of rows the statement returned.  Not granted to PUBLIC.
 */
PG_FUNCTION_INFO_V1(zerobus_execute_remote);

Datum
zerobus_execute_remote(PG_FUNCTION_ARGS)
{
	char	   *servername = NameStr(*PG_GETARG_NAME(0));
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(1));
	ArrayType  *args = PG_GETARG_ARRAYTYPE_P(2);
	Oid			serverid = zb_server_oid(servername);
	ZbSession  *conn;
	ZbSqlStatement *st;
	ZbSqlParam *params = NULL;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	int64		result = 0;
	char	  **values;

	zb_check_server_usage(serverid, servername);

	deconstruct_array(args, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n > 0)
		params = palloc0(sizeof(ZbSqlParam) * n);
	for (i = 0; i < n; i++)
	{
		params[i].name = psprintf("p%d", i + 1);
		params[i].value = nulls[i] ? NULL : TextDatumGetCString(elems[i]);
		params[i].type = "STRING";
	}
	conn = zb_sql_connect(serverid, GetUserId());
	st = zb_sql_execute(conn, sql, n, params, false);
	values = palloc0(sizeof(char *) * Max(1, zb_sql_ncolumns(st)));
	if (zb_sql_ncolumns(st) > 0 &&
		strcmp(zb_sql_column(st, 0)->name, "num_affected_rows") == 0)
	{
		if (zb_sql_next_row(st, values) && values[0])
			result = zb_strtoint64(values[0]);
	}
	else if (zb_sql_ncolumns(st) > 0)
	{
		while (zb_sql_next_row(st, values))
			result++;
	}
	zb_sql_release(st);
	PG_RETURN_INT64(result);
}
