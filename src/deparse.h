/*-------------------------------------------------------------------------
 * deparse.h
 *	  Databricks SQL for the history foreign-data wrapper: which expressions
 *	  can run remotely (shippable.c), and the statements that run them
 *	  (deparse.c).
 *-------------------------------------------------------------------------
 */
#ifndef ZB_DEPARSE_H
#define ZB_DEPARSE_H

#include "catalog/pg_operator.h"
#include "foreign/foreign.h"
#include "lib/stringinfo.h"
#include "nodes/pathnodes.h"

/* Planner state of a foreign base relation or of an upper relation over it. */
typedef struct ZbRelInfo
{
	bool		pushdown_safe;	/* upper rels: can the whole rel run remotely? */

	/* conditions (RestrictInfos): remote ones are in the remote WHERE/HAVING */
	List	   *remote_conds;
	List	   *local_conds;
	List	   *final_remote_exprs; /* remote_conds as plain clauses, once planned */
	Bitmapset  *attrs_used;		/* columns the query needs */
	bool		qp_is_pushdown_safe;	/* query_pathkeys can be sorted remotely */

	QualCost	local_conds_cost;
	Selectivity local_conds_sel;

	/* estimates */
	double		tuples;			/* rows in the remote table (estimated) */
	double		rows;
	int			width;
	double		retrieved_rows;
	Cost		startup_cost;
	Cost		total_cost;

	/* options */
	double		fdw_startup_cost;
	double		fdw_tuple_cost;
	Oid			relid;			/* the foreign table */
	ForeignServer *server;

	/* upper relations */
	RelOptInfo *outerrel;		/* the relation the upper rel is computed from */
	UpperRelationKind stage;
	List	   *grouped_tlist;	/* TargetEntries the grouping scan returns */
	char	   *relation_name;	/* for EXPLAIN: "Aggregate on (ft)" */
} ZbRelInfo;

/* How a column of the scan tuple is computed from the remote result. */
#define ZB_OUT_PLAIN	0		/* one remote column */
#define ZB_OUT_AVG		1		/* avg(x) = sum(x) / count(x), two remote columns */

extern char *zb_quote_identifier(const char *ident);
extern void zb_append_identifier(StringInfo buf, const char *ident);
extern void zb_deparse_relation(StringInfo buf, Relation rel);
extern char *zb_column_remote_name(Oid relid, AttrNumber attnum);
extern bool zb_rel_is_query(Oid relid);

extern bool zb_is_foreign_expr(PlannerInfo *root, RelOptInfo *rel, Expr *expr);
extern bool zb_is_foreign_tlist_expr(PlannerInfo *root, RelOptInfo *rel, Expr *expr);
extern bool zb_is_foreign_pathkey(PlannerInfo *root, RelOptInfo *rel, PathKey *pathkey);
extern Expr *zb_find_em_expr(PlannerInfo *root, RelOptInfo *rel, EquivalenceClass *ec);
extern bool zb_agg_needs_split(Expr *expr);
extern bool zb_transmittable_type(Oid type);

/* shippable.c's decisions that deparse.c writes out */
extern bool zb_is_param_expr(Node *node);
extern Form_pg_operator zb_operator_form(Oid opno, HeapTuple *tup);
extern const char *zb_function_remote_name(FuncExpr *fe);
extern bool zb_cast_ok(FuncExpr *fe);
extern const char *zb_cast_type(Oid source, Oid target);

extern void zb_classify_conditions(PlannerInfo *root, RelOptInfo *baserel, List *input_conds,
								   List **remote_conds, List **local_conds);
extern void zb_deparse_select(StringInfo buf, PlannerInfo *root, RelOptInfo *rel,
							  List *tlist, List *remote_conds, List *pathkeys,
							  bool has_final_sort, bool has_limit,
							  List **retrieved_attrs, List **params_list,
							  List **out_kinds);
extern void zb_deparse_delete(StringInfo buf, PlannerInfo *root, Index rtindex,
							  Relation rel, RelOptInfo *foreignrel, List *remote_conds,
							  List **params_list);
extern void zb_deparse_truncate(StringInfo buf, Relation rel);

#endif							/* ZB_DEPARSE_H */
