/*-------------------------------------------------------------------------
 * deparse.c
 *	  Databricks SQL for the history foreign-data wrapper.
 *
 * Two jobs: deciding which expressions can be evaluated remotely with the
 * same result as in PostgreSQL (the "walker"), and writing them as
 * Databricks SQL.  What is shipped:
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
 *	  functions, each only for built-in types whose Databricks semantics
 *	  match PostgreSQL's;
 *	- count, sum, avg, min and max, with GROUP BY, HAVING, ORDER BY, LIMIT.
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
 * digit.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/transam.h"
#include "catalog/pg_aggregate.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_database.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "optimizer/tlist.h"
#include "parser/parsetree.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/pg_locale.h"
#include "utils/rel.h"
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
static const char *
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
static bool
fe_is_param(Node *node)
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

static Form_pg_operator
fe_operator(Oid opno, HeapTuple *tup)
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
	op = fe_operator(opno, &tup);
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
static const char *
fe_function_name(FuncExpr *fe)
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

static bool
fe_cast_ok(FuncExpr *fe)
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
		if (!IsA(tle, TargetEntry) || tle->resjunk || fe_is_param((Node *) tle->expr) ||
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
	if (fe_is_param(node))
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
				op = fe_operator(sa->opno, &tup);
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

				if (!fe_cast_ok(fe) && fe_function_name(fe) == NULL)
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
	if (em == NULL || fe_is_param((Node *) em) || zb_agg_needs_split(em))
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
	Form_pg_operator op = fe_operator(oe->opno, &tup);
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
	if (fe_is_param(node))
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

				if (fe_cast_ok(fe))
				{
					Node	   *arg = linitial(fe->args);

					appendStringInfoString(buf, "CAST(");
					dp_expr(arg, ctx);
					appendStringInfo(buf, " AS %s)",
									 zb_cast_type(exprType(arg), fe->funcresulttype));
				}
				else
				{
					appendStringInfo(buf, "%s(", fe_function_name(fe));
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
