/*-------------------------------------------------------------------------
 * fdw.c
 *	  The history foreign-data wrapper's handler and planner: which part of
 *	  a query on Delta tables runs on the SQL warehouse, at what cost.
 *
 * Planning pushes down what shippable.c says is safe (and deparse.c
 * writes): WHERE conditions, ORDER BY, aggregates with GROUP BY and HAVING,
 * and LIMIT/OFFSET when every condition runs remotely.  Costs favour remote
 * work (a statement has a fixed cost; each row transferred has a price), so
 * the planner prefers the pushed-down plan.  A DELETE whose conditions all
 * run remotely is planned as one remote statement.  Nothing at plan time
 * talks to Databricks: EXPLAIN works offline.
 *
 * The other callbacks live with their job: executing scans, DELETE and
 * TRUNCATE (fdwscan.c), INSERT through ZeroBus (fdwinsert.c), ANALYZE and
 * IMPORT FOREIGN SCHEMA (fdwimport.c).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/table.h"
#include "foreign/foreign.h"
#include "nodes/makefuncs.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/planmain.h"
#include "optimizer/prep.h"
#include "optimizer/restrictinfo.h"
#include "optimizer/tlist.h"
#include "parser/parsetree.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/selfuncs.h"

#include "compat.h"
#include "deparse.h"
#include "fdw.h"
#include "fdwinsert.h"
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

/* ---------------------------------------------------------------- handler */

PG_FUNCTION_INFO_V1(zerobus_fdw_handler);

Datum
zerobus_fdw_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *routine = makeNode(FdwRoutine);

	routine->GetForeignRelSize = zb_get_rel_size;
	routine->GetForeignPaths = zb_get_paths;
	routine->GetForeignPlan = zb_get_plan;
	routine->GetForeignUpperPaths = zb_get_upper_paths;
	routine->IsForeignRelUpdatable = zb_is_updatable;
	routine->PlanForeignModify = zb_plan_modify;
	routine->PlanDirectModify = zb_plan_direct_modify;

	zb_fdw_scan_routines(routine);
	zb_fdw_insert_routines(routine);
	zb_fdw_import_routines(routine);
	PG_RETURN_POINTER(routine);
}
