/*-------------------------------------------------------------------------
 * shippable.c
 *	  Which expressions of a query on a history foreign table can run on
 *	  the SQL warehouse with the same result as in PostgreSQL.
 *
 * Decided per node with PostgreSQL's semantics in mind, not by name alone:
 * operators by name and input type class, functions by name and argument
 * types, casts only when they widen, aggregates (count, sum, avg, min,
 * max) by argument type; each only for built-in types whose Databricks
 * semantics match PostgreSQL's.  Any subexpression that references no
 * column and calls nothing volatile is a parameter, evaluated locally.
 * What is decided here is written as Databricks SQL by deparse.c.
 *
 * Collation: Databricks compares strings by code point (UTF8_BINARY).
 * Equality and LIKE agree with any deterministic PostgreSQL collation;
 * ordering (<, >, ORDER BY, min/max on text) agrees only with "C", so it is
 * shipped only then; case mapping (lower, upper, ILIKE) is shipped only
 * under a collation that maps non-ASCII letters (not "C"/"POSIX").
 *
 * avg() of integers and numerics is computed by PostgreSQL as an exact
 * numeric division; Databricks returns a double or a decimal of another
 * scale.  So such an avg is sent as sum() and count(), and divided locally
 * with PostgreSQL's own numeric_div: the result is PostgreSQL's, digit for
 * digit (zb_agg_needs_split).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "catalog/pg_aggregate.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/pg_locale.h"
#include "utils/syscache.h"

#include "compat.h"
#include "deparse.h"

/* Most elements an IN list may have before it is filtered locally instead. */
#define ZB_MAX_IN_LIST 1000

/* ---------------------------------------------------------------- types */

typedef enum TypeClass
{
	TC_NONE,
	TC_INT,						/* int2, int4, int8 */
	TC_FLOAT,					/* float4, float8 */
	TC_NUMERIC,
	TC_TEXT,					/* text, varchar */
	TC_BOOL,
	TC_DATE,
	TC_TIMESTAMP,
	TC_TIMESTAMPTZ
} TypeClass;

static TypeClass
zb_type_class(Oid type)
{
	switch (type)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
			return TC_INT;
		case FLOAT4OID:
		case FLOAT8OID:
			return TC_FLOAT;
		case NUMERICOID:
			return TC_NUMERIC;
		case TEXTOID:
		case VARCHAROID:
			return TC_TEXT;
		case BOOLOID:
			return TC_BOOL;
		case DATEOID:
			return TC_DATE;
		case TIMESTAMPOID:
			return TC_TIMESTAMP;
		case TIMESTAMPTZOID:
			return TC_TIMESTAMPTZ;
		default:
			return TC_NONE;
	}
}

static inline bool
zb_is_number(TypeClass c)
{
	return c == TC_INT || c == TC_FLOAT || c == TC_NUMERIC;
}

/* Types whose values we can send as statement parameters. */
bool
zb_transmittable_type(Oid type)
{
	return zb_type_class(type) != TC_NONE || type == BPCHAROID || type == NAMEOID;
}

/* The Databricks type of a widening cast's target. */
const char *
zb_cast_type(Oid source, Oid target)
{
	switch (target)
	{
		case INT4OID:
			return "INT";
		case INT8OID:
			return "BIGINT";
		case FLOAT4OID:
			return "FLOAT";
		case FLOAT8OID:
			return "DOUBLE";
		case NUMERICOID:
			switch (source)
			{
				case INT2OID:
					return "DECIMAL(5,0)";
				case INT4OID:
					return "DECIMAL(10,0)";
				case INT8OID:
					return "DECIMAL(20,0)";
			}
			return NULL;
		case TIMESTAMPOID:
			return "TIMESTAMP_NTZ";
	}
	return NULL;
}

/*
 * Casts whose result is the same on both sides: integer widening, integer
 * or numeric to floating point, float4 to float8, date to timestamp.
 */
static bool
zb_cast_is_safe(Oid source, Oid target)
{
	if (zb_cast_type(source, target) == NULL)
		return false;
	switch (target)
	{
		case INT4OID:
			return source == INT2OID;
		case INT8OID:
			return source == INT2OID || source == INT4OID;
		case FLOAT4OID:
			return source == INT2OID || source == INT4OID || source == INT8OID;
		case FLOAT8OID:
			return source == INT2OID || source == INT4OID || source == INT8OID ||
				source == FLOAT4OID || source == NUMERICOID;
		case NUMERICOID:
			return zb_type_class(source) == TC_INT;
		case TIMESTAMPOID:
			return source == DATEOID;
	}
	return false;
}

/* ---------------------------------------------------------------- collations */

/* A libc locale name that sorts by code point, like "C" (glibc's C.UTF-8). */
static bool
zb_locale_is_codepoint(const char *name)
{
	return pg_strcasecmp(name, "C.UTF-8") == 0 || pg_strcasecmp(name, "C.utf8") == 0;
}

/*
 * Does this collation order strings by code point, as Databricks'
 * UTF8_BINARY does?  "C" and "POSIX" do (bytes of UTF-8 sort in code point
 * order), and so does libc's C.UTF-8.
 */
static bool
zb_collation_is_c(Oid coll)
{
	HeapTuple	tup;
	bool		result = false;

	if (!OidIsValid(coll))
		return true;
	if (zb_lc_collate_is_c(coll))
		return true;
	if (coll == DEFAULT_COLLATION_OID)
	{
		tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(MyDatabaseId));
		if (HeapTupleIsValid(tup))
		{
			Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
			bool		isnull;
			Datum		d = SysCacheGetAttr(DATABASEOID, tup, Anum_pg_database_datcollate,
											&isnull);

			result = db->datlocprovider == COLLPROVIDER_LIBC && !isnull &&
				zb_locale_is_codepoint(TextDatumGetCString(d));
			ReleaseSysCache(tup);
		}
		return result;
	}
	tup = SearchSysCache1(COLLOID, ObjectIdGetDatum(coll));
	if (HeapTupleIsValid(tup))
	{
		Form_pg_collation c = (Form_pg_collation) GETSTRUCT(tup);
		bool		isnull;
		Datum		d = SysCacheGetAttr(COLLOID, tup, Anum_pg_collation_collcollate, &isnull);

		result = c->collprovider == COLLPROVIDER_LIBC && !isnull &&
			zb_locale_is_codepoint(TextDatumGetCString(d));
		ReleaseSysCache(tup);
	}
	return result;
}

static bool
zb_ctype_is_c(Oid coll)
{
	if (!OidIsValid(coll))
		return true;
	return zb_lc_ctype_is_c(coll);
}

static bool
zb_collation_deterministic(Oid coll)
{
	if (!OidIsValid(coll) || coll == DEFAULT_COLLATION_OID || coll == C_COLLATION_OID)
		return true;
	return get_collation_isdeterministic(coll);
}

/* ---------------------------------------------------------------- the walker */

typedef struct FeCtx
{
	PlannerInfo *root;
	Relids		scan_relids;	/* the base rel whose columns may appear */
	bool		allow_aggs;		/* an upper (grouping) relation */
	bool		in_agg;
} FeCtx;

static bool fe_walk(Node *node, FeCtx *ctx);

/*
 * A subexpression that references no column and calls nothing volatile is
 * evaluated locally, once per scan, and sent as a parameter.
 */
bool
zb_is_param_expr(Node *node)
{
	if (node == NULL)
		return false;
	if (!zb_transmittable_type(exprType(node)))
		return false;
	if (IsA(node, Const) || IsA(node, Param))
		return true;
	if (contain_var_clause(node) || contain_agg_clause(node) ||
		contain_window_function(node) || contain_subplans(node) ||
		expression_returns_set(node) || contain_volatile_functions(node))
		return false;
	return true;
}

Form_pg_operator
zb_operator_form(Oid opno, HeapTuple *tup)
{
	*tup = SearchSysCache1(OPEROID, ObjectIdGetDatum(opno));
	if (!HeapTupleIsValid(*tup))
		elog(ERROR, "cache lookup failed for operator %u", opno);
	return (Form_pg_operator) GETSTRUCT(*tup);
}

/*
 * Is operator opno (with these input types and input collation) one whose
 * Databricks counterpart gives the same answer?
 */
static bool
fe_operator_ok(Oid opno, Oid inputcollid)
{
	HeapTuple	tup;
	Form_pg_operator op;
	const char *name;
	TypeClass	l;
	TypeClass	r;
	bool		ok = false;

	if (opno >= FirstGenbkiObjectId)
		return false;
	op = zb_operator_form(opno, &tup);
	name = NameStr(op->oprname);
	l = op->oprkind == 'b' ? zb_type_class(op->oprleft) : TC_NONE;
	r = zb_type_class(op->oprright);

	if (op->oprkind == 'l')
	{
		/* unary minus on numbers */
		ok = strcmp(name, "-") == 0 && zb_is_number(r);
	}
	else if (strcmp(name, "=") == 0 || strcmp(name, "<>") == 0 ||
			 strcmp(name, "<") == 0 || strcmp(name, "<=") == 0 ||
			 strcmp(name, ">") == 0 || strcmp(name, ">=") == 0)
	{
		bool		ordering = name[0] == '<' || name[0] == '>';

		if (strcmp(name, "<>") == 0)
			ordering = false;
		if (zb_is_number(l) && zb_is_number(r))
			ok = true;
		else if (l == TC_TEXT && r == TC_TEXT)
			ok = zb_collation_deterministic(inputcollid) &&
				(!ordering || zb_collation_is_c(inputcollid));
		else if (l == TC_BOOL && r == TC_BOOL)
			ok = true;
		else if ((l == TC_DATE || l == TC_TIMESTAMP) && (r == TC_DATE || r == TC_TIMESTAMP))
			ok = true;
		else if (l == TC_TIMESTAMPTZ && r == TC_TIMESTAMPTZ)
			ok = true;
	}
	else if (strcmp(name, "+") == 0 || strcmp(name, "-") == 0 || strcmp(name, "*") == 0)
		ok = zb_is_number(l) && zb_is_number(r);
	else if (strcmp(name, "/") == 0)
		ok = l == TC_FLOAT && r == TC_FLOAT;	/* integer division truncates in PostgreSQL */
	else if (strcmp(name, "%") == 0)
		ok = l == TC_INT && r == TC_INT;
	else if (strcmp(name, "||") == 0 || strcmp(name, "~~") == 0 || strcmp(name, "!~~") == 0)
		ok = op->oprleft == TEXTOID && op->oprright == TEXTOID &&
			zb_collation_deterministic(inputcollid);
	else if (strcmp(name, "~~*") == 0 || strcmp(name, "!~~*") == 0)
		ok = op->oprleft == TEXTOID && op->oprright == TEXTOID &&
			zb_collation_deterministic(inputcollid) && !zb_ctype_is_c(inputcollid);

	ReleaseSysCache(tup);
	return ok;
}

/* A function call we can ship: returns its Databricks name, or NULL. */
const char *
zb_function_remote_name(FuncExpr *fe)
{
	char	   *name;
	int			nargs = list_length(fe->args);
	TypeClass	a0;

	if (fe->funcid >= FirstGenbkiObjectId || fe->funcretset || fe->funcvariadic)
		return NULL;
	if (fe->funcformat != COERCE_EXPLICIT_CALL)
		return NULL;
	name = get_func_name(fe->funcid);
	if (name == NULL || nargs < 1)
		return NULL;
	a0 = zb_type_class(exprType(linitial(fe->args)));
	if ((strcmp(name, "lower") == 0 || strcmp(name, "upper") == 0) && nargs == 1 &&
		a0 == TC_TEXT)
		return (!zb_ctype_is_c(fe->inputcollid) &&
				zb_collation_deterministic(fe->inputcollid)) ? name : NULL;
	if ((strcmp(name, "length") == 0 || strcmp(name, "char_length") == 0 ||
		 strcmp(name, "character_length") == 0) && nargs == 1 && a0 == TC_TEXT)
		return "length";
	if (strcmp(name, "abs") == 0 && nargs == 1 && zb_is_number(a0))
		return "abs";
	/* numeric round is half away from zero on both sides; float round is not */
	if (strcmp(name, "round") == 0 && a0 == TC_NUMERIC &&
		(nargs == 1 || (nargs == 2 && exprType(lsecond(fe->args)) == INT4OID)))
		return "round";
	return NULL;
}

bool
zb_cast_ok(FuncExpr *fe)
{
	if (fe->funcid >= FirstGenbkiObjectId || list_length(fe->args) != 1)
		return false;
	if (fe->funcformat != COERCE_IMPLICIT_CAST && fe->funcformat != COERCE_EXPLICIT_CAST)
		return false;
	return zb_cast_is_safe(exprType(linitial(fe->args)), fe->funcresulttype);
}

/* An aggregate we can ship (its arguments are checked by the caller). */
static bool
fe_aggregate_ok(Aggref *agg, bool split_ok)
{
	char	   *name;
	TypeClass	c = TC_NONE;

	if (agg->aggfnoid >= FirstGenbkiObjectId || agg->aggkind != AGGKIND_NORMAL ||
		agg->aggorder != NIL || agg->aggfilter != NULL || agg->aggvariadic ||
		agg->aggsplit != AGGSPLIT_SIMPLE)
		return false;
	name = get_func_name(agg->aggfnoid);
	if (name == NULL)
		return false;
	if (agg->args != NIL)
	{
		if (list_length(agg->args) != 1)
			return false;
		c = zb_type_class(exprType((Node *) ((TargetEntry *) linitial(agg->args))->expr));
	}
	if (strcmp(name, "count") == 0)
		return true;
	if (strcmp(name, "sum") == 0)
		return zb_is_number(c);
	if (strcmp(name, "avg") == 0)
		return c == TC_FLOAT || ((c == TC_INT || c == TC_NUMERIC) && split_ok);
	if (strcmp(name, "min") == 0 || strcmp(name, "max") == 0)
	{
		if (c == TC_TEXT)
			return zb_collation_is_c(agg->inputcollid);
		return zb_is_number(c) || c == TC_DATE || c == TC_TIMESTAMP || c == TC_TIMESTAMPTZ;
	}
	return false;
}

/* Is this avg() one that is computed locally from a remote sum and count? */
bool
zb_agg_needs_split(Expr *expr)
{
	Aggref	   *agg;
	char	   *name;
	TypeClass	c;

	if (!IsA(expr, Aggref))
		return false;
	agg = (Aggref *) expr;
	if (list_length(agg->args) != 1)
		return false;
	name = get_func_name(agg->aggfnoid);
	if (name == NULL || strcmp(name, "avg") != 0)
		return false;
	c = zb_type_class(exprType((Node *) ((TargetEntry *) linitial(agg->args))->expr));
	return c == TC_INT || c == TC_NUMERIC;
}

static bool
fe_walk_list(List *list, FeCtx *ctx)
{
	ListCell   *lc;

	foreach(lc, list)
	{
		if (!fe_walk((Node *) lfirst(lc), ctx))
			return false;
	}
	return true;
}

static bool
fe_walk_agg(Aggref *agg, FeCtx *ctx, bool split_ok)
{
	ListCell   *lc;
	bool		ok = true;

	if (!ctx->allow_aggs || ctx->in_agg || !fe_aggregate_ok(agg, split_ok))
		return false;
	ctx->in_agg = true;
	foreach(lc, agg->args)
	{
		TargetEntry *tle = (TargetEntry *) lfirst(lc);

		/* an aggregate's argument must reference a column: no parameters */
		if (!IsA(tle, TargetEntry) || tle->resjunk || zb_is_param_expr((Node *) tle->expr) ||
			!fe_walk((Node *) tle->expr, ctx))
		{
			ok = false;
			break;
		}
	}
	ctx->in_agg = false;
	return ok;
}

static bool
fe_walk(Node *node, FeCtx *ctx)
{
	if (node == NULL)
		return true;
	if (zb_is_param_expr(node))
		return true;

	switch (nodeTag(node))
	{
		case T_Var:
			{
				Var		   *var = (Var *) node;

				return var->varlevelsup == 0 && var->varattno > 0 &&
					bms_is_member(var->varno, ctx->scan_relids);
			}
		case T_OpExpr:
			{
				OpExpr	   *oe = (OpExpr *) node;

				return !oe->opretset && fe_operator_ok(oe->opno, oe->inputcollid) &&
					fe_walk_list(oe->args, ctx);
			}
		case T_ScalarArrayOpExpr:
			{
				ScalarArrayOpExpr *sa = (ScalarArrayOpExpr *) node;
				HeapTuple	tup;
				Form_pg_operator op;
				bool		eq;
				bool		ne;
				Node	   *arr = (Node *) lsecond(sa->args);

				if (!fe_operator_ok(sa->opno, sa->inputcollid))
					return false;
				op = zb_operator_form(sa->opno, &tup);
				eq = strcmp(NameStr(op->oprname), "=") == 0;
				ne = strcmp(NameStr(op->oprname), "<>") == 0;
				ReleaseSysCache(tup);
				if (!((eq && sa->useOr) || (ne && !sa->useOr)))
					return false;
				if (!fe_walk((Node *) linitial(sa->args), ctx))
					return false;
				if (IsA(arr, Const))
				{
					Const	   *c = (Const *) arr;
					int			n;

					if (c->constisnull)
						return false;
					n = ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(c->constvalue)),
									   ARR_DIMS(DatumGetArrayTypeP(c->constvalue)));
					return n > 0 && n <= ZB_MAX_IN_LIST &&
						zb_transmittable_type(get_element_type(c->consttype));
				}
				if (IsA(arr, ArrayExpr))
				{
					ArrayExpr  *ae = (ArrayExpr *) arr;

					return !ae->multidims && ae->elements != NIL &&
						list_length(ae->elements) <= ZB_MAX_IN_LIST &&
						fe_walk_list(ae->elements, ctx);
				}
				return false;
			}
		case T_BoolExpr:
			return fe_walk_list(((BoolExpr *) node)->args, ctx);
		case T_NullTest:
			{
				NullTest   *nt = (NullTest *) node;

				return !nt->argisrow && fe_walk((Node *) nt->arg, ctx);
			}
		case T_RelabelType:
			return fe_walk((Node *) ((RelabelType *) node)->arg, ctx);
		case T_FuncExpr:
			{
				FuncExpr   *fe = (FuncExpr *) node;

				if (!zb_cast_ok(fe) && zb_function_remote_name(fe) == NULL)
					return false;
				return fe_walk_list(fe->args, ctx);
			}
		case T_CoalesceExpr:
			{
				CoalesceExpr *ce = (CoalesceExpr *) node;

				return zb_transmittable_type(ce->coalescetype) &&
					(zb_type_class(ce->coalescetype) != TC_TEXT ||
					 zb_collation_deterministic(ce->coalescecollid)) &&
					fe_walk_list(ce->args, ctx);
			}
		case T_CaseExpr:
			{
				CaseExpr   *ce = (CaseExpr *) node;
				ListCell   *lc;

				/* the "CASE x WHEN v" form compares with CaseTestExpr: not shipped */
				if (ce->arg != NULL || !zb_transmittable_type(ce->casetype))
					return false;
				foreach(lc, ce->args)
				{
					CaseWhen   *w = (CaseWhen *) lfirst(lc);

					if (!fe_walk((Node *) w->expr, ctx) || !fe_walk((Node *) w->result, ctx))
						return false;
				}
				return fe_walk((Node *) ce->defresult, ctx);
			}
		case T_Aggref:
			return fe_walk_agg((Aggref *) node, ctx, false);
		default:
			return false;
	}
}

static void
fe_init(FeCtx *ctx, PlannerInfo *root, RelOptInfo *rel)
{
	ZbRelInfo  *fpinfo = (ZbRelInfo *) rel->fdw_private;

	memset(ctx, 0, sizeof(FeCtx));
	ctx->root = root;
	if (IS_UPPER_REL(rel))
	{
		ctx->scan_relids = fpinfo->outerrel->relids;
		ctx->allow_aggs = true;
	}
	else
		ctx->scan_relids = rel->relids;
}

/* Can expr (a condition, or HAVING over aggregates) be evaluated remotely? */
bool
zb_is_foreign_expr(PlannerInfo *root, RelOptInfo *rel, Expr *expr)
{
	FeCtx		ctx;

	if (expr == NULL)
		return true;
	fe_init(&ctx, root, rel);
	return fe_walk((Node *) expr, &ctx);
}

/*
 * Can expr be an output column of a remote grouping query?  Unlike a
 * condition, it may be an avg() computed from a remote sum and count.
 */
bool
zb_is_foreign_tlist_expr(PlannerInfo *root, RelOptInfo *rel, Expr *expr)
{
	FeCtx		ctx;

	fe_init(&ctx, root, rel);
	if (IsA(expr, Aggref))
		return fe_walk_agg((Aggref *) expr, &ctx, true);
	return fe_walk((Node *) expr, &ctx);
}

/* ---------------------------------------------------------------- pathkeys */

/*
 * The member of ec to sort by: for a base relation, an expression over its
 * columns; for an upper relation, one of its output expressions.
 */
Expr *
zb_find_em_expr(PlannerInfo *root, RelOptInfo *rel, EquivalenceClass *ec)
{
	ZbRelInfo  *fpinfo = (ZbRelInfo *) rel->fdw_private;
	ListCell   *lc;

	if (IS_UPPER_REL(rel))
	{
		ListCell   *lt;

		foreach(lt, fpinfo->grouped_tlist)
		{
			Expr	   *expr = ((TargetEntry *) lfirst(lt))->expr;

			while (expr && IsA(expr, RelabelType))
				expr = ((RelabelType *) expr)->arg;
			foreach(lc, ec->ec_members)
			{
				EquivalenceMember *em = (EquivalenceMember *) lfirst(lc);
				Expr	   *e = em->em_expr;

				if (em->em_is_const || em->em_is_child)
					continue;
				while (e && IsA(e, RelabelType))
					e = ((RelabelType *) e)->arg;
				if (equal(e, expr))
					return em->em_expr;
			}
		}
		return NULL;
	}
	foreach(lc, ec->ec_members)
	{
		EquivalenceMember *em = (EquivalenceMember *) lfirst(lc);

		if (!em->em_is_const && !bms_is_empty(em->em_relids) &&
			bms_is_subset(em->em_relids, rel->relids) &&
			zb_is_foreign_expr(root, rel, em->em_expr))
			return em->em_expr;
	}
	return NULL;
}

/* Can the remote side sort by this pathkey with PostgreSQL's result? */
bool
zb_is_foreign_pathkey(PlannerInfo *root, RelOptInfo *rel, PathKey *pathkey)
{
	EquivalenceClass *ec = pathkey->pk_eclass;
	Expr	   *em;
	TypeClass	c;

	if (ec->ec_has_volatile || pathkey->pk_opfamily >= FirstGenbkiObjectId)
		return false;
	em = zb_find_em_expr(root, rel, ec);
	if (em == NULL || zb_is_param_expr((Node *) em) || zb_agg_needs_split(em))
		return false;
	if (IS_UPPER_REL(rel) && !zb_is_foreign_expr(root, rel, em))
		return false;
	c = zb_type_class(exprType((Node *) em));
	if (c == TC_TEXT)
		return zb_collation_is_c(ec->ec_collation);
	return c != TC_NONE;
}

/* ---------------------------------------------------------------- conditions */

void
zb_classify_conditions(PlannerInfo *root, RelOptInfo *baserel, List *input_conds,
					   List **remote_conds, List **local_conds)
{
	ListCell   *lc;

	*remote_conds = NIL;
	*local_conds = NIL;
	foreach(lc, input_conds)
	{
		RestrictInfo *ri = lfirst_node(RestrictInfo, lc);

		if (zb_is_foreign_expr(root, baserel, ri->clause))
			*remote_conds = lappend(*remote_conds, ri);
		else
			*local_conds = lappend(*local_conds, ri);
	}
}
