/*-------------------------------------------------------------------------
 * option.c
 *	  Option validation for zerobus_fdw objects, and resolving a server plus
 *	  the current user's mapping into one configuration.
 *
 * One table says which option belongs where and what it holds; the
 * validator rejects unknown names with a hint listing the valid ones, and
 * malformed values with the reason.  Secrets are accepted only on user
 * mappings, which only superusers and the mapping's user can read.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include <curl/curl.h>

#include "access/htup_details.h"
#include "access/reloptions.h"
#include "catalog/pg_foreign_data_wrapper.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "foreign/foreign.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/syscache.h"

#include "compat.h"
#include "option.h"
#include "zerobus.h"

typedef enum OptKind
{
	OPT_TEXT,
	OPT_URL,
	OPT_MS,						/* a duration: '30s', '500ms', or milliseconds */
	OPT_NAME3,					/* catalog.schema.table */
	OPT_IDENT,					/* a Databricks name: letters, digits, _ */
	OPT_PATH,					/* an absolute file path (superuser only) */
	OPT_SECRET,
	OPT_WAIT,					/* SQL API wait_timeout: 0s, or 5s to 50s */
	OPT_DISPOSITION,			/* SQL API result disposition */
	OPT_COST,					/* a non-negative planner cost */
	OPT_AGENT					/* words for a User-Agent header: printable ASCII */
} OptKind;

/*
 * One option: where it may be set, what it holds, and for server and user
 * mapping options the field of ZbServerConfig that zb_server_config()
 * resolves it into (the field's C type follows from the kind: char * for
 * text, URLs, names, paths and agents; long for durations; bool for
 * disposition; double for costs).  Foreign table and column options are
 * read where they are used, and have no field.
 */
typedef struct ZbOption
{
	const char *name;
	Oid			context;		/* catalog of the object it belongs to */
	OptKind		kind;
	int			field;			/* offsetof(ZbServerConfig, ...), or -1 */
} ZbOption;

#define CFG(f) ((int) offsetof(ZbServerConfig, f))

static const ZbOption zb_options[] = {
	{"workspace_url", ForeignServerRelationId, OPT_URL, CFG(workspace_url)},
	{"zerobus_endpoint", ForeignServerRelationId, OPT_URL, CFG(zerobus_endpoint)},
	{"workspace_id", ForeignServerRelationId, OPT_TEXT, CFG(workspace_id)},
	{"warehouse_id", ForeignServerRelationId, OPT_TEXT, CFG(warehouse_id)},
	{"catalog", ForeignServerRelationId, OPT_IDENT, CFG(catalog)},
	{"schema", ForeignServerRelationId, OPT_IDENT, CFG(schema)},
	{"ca_file", ForeignServerRelationId, OPT_PATH, CFG(ca_file)},
	{"connect_timeout", ForeignServerRelationId, OPT_MS, CFG(connect_timeout_ms)},
	{"request_timeout", ForeignServerRelationId, OPT_MS, CFG(request_timeout_ms)},
	{"user_agent", ForeignServerRelationId, OPT_AGENT, CFG(user_agent)},
	/* history FDW (SQL Statement Execution API) */
	{"wait_timeout", ForeignServerRelationId, OPT_WAIT, CFG(wait_timeout_s)},
	{"statement_timeout", ForeignServerRelationId, OPT_MS, CFG(statement_timeout_ms)},
	{"disposition", ForeignServerRelationId, OPT_DISPOSITION, CFG(external_links)},
	{"fdw_startup_cost", ForeignServerRelationId, OPT_COST, CFG(fdw_startup_cost)},
	{"fdw_tuple_cost", ForeignServerRelationId, OPT_COST, CFG(fdw_tuple_cost)},
	{"client_id", UserMappingRelationId, OPT_TEXT, CFG(client_id)},
	{"client_secret", UserMappingRelationId, OPT_SECRET, CFG(client_secret)},
	{"table", ForeignTableRelationId, OPT_NAME3, -1},
	{"query", ForeignTableRelationId, OPT_TEXT, -1},
	{"disposition", ForeignTableRelationId, OPT_DISPOSITION, -1},
	{"column_name", AttributeRelationId, OPT_TEXT, -1},
	{NULL, InvalidOid, 0, -1}
};

static const char *
opt_context_name(Oid context)
{
	switch (context)
	{
		case ForeignDataWrapperRelationId:
			return "foreign-data wrapper";
		case ForeignServerRelationId:
			return "server";
		case UserMappingRelationId:
			return "user mapping";
		case ForeignTableRelationId:
			return "foreign table";
		case AttributeRelationId:
			return "foreign table column";
	}
	return "object";
}

/* A Databricks identifier as ZeroBus accepts it: ASCII letters, digits, _ */
bool
zb_valid_name(const char *name)
{
	const char *p;

	if (name == NULL || name[0] == '\0' || strlen(name) > 255)
		return false;
	for (p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	return true;
}

/* The caller needs USAGE on the server; raises the usual error otherwise. */
void
zb_check_server_usage(Oid serverid, const char *servername)
{
	AclResult	aclresult;

	aclresult = object_aclcheck(ForeignServerRelationId, serverid, GetUserId(), ACL_USAGE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FOREIGN_SERVER, servername);
}

/* An interval argument in milliseconds (months count as 30 days). */
int64
zb_interval_ms(const Interval *iv)
{
	return (iv->time + iv->day * USECS_PER_DAY +
			(int64) iv->month * DAYS_PER_MONTH * USECS_PER_DAY) / 1000;
}

/* catalog.schema.table, each part a valid name. */
void
zb_check_table_name(const char *table, const char *what)
{
	char	   *copy = pstrdup(table);
	char	   *parts[4];
	int			n = 0;
	char	   *p = copy;

	while (n < 4)
	{
		char	   *dot = strchr(p, '.');

		parts[n++] = p;
		if (dot == NULL)
			break;
		*dot = '\0';
		p = dot + 1;
	}
	if (n != 3 || !zb_valid_name(parts[0]) || !zb_valid_name(parts[1]) ||
		!zb_valid_name(parts[2]))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s: \"%s\"", what, table),
				 errdetail("A Databricks table is named catalog.schema.table, each part made of ASCII letters, digits and underscores."),
				 errhint("For example: 'main.default.events'.")));
	pfree(copy);
}

static void
opt_check_url(const char *name, const char *value)
{
	CURLU	   *u = curl_url();
	CURLUcode	rc;
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *path = NULL;
	char	   *query = NULL;
	char	   *user = NULL;
	char	   *fragment = NULL;
	const char *problem = NULL;

	if (u == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	rc = curl_url_set(u, CURLUPART_URL, value, 0);
	if (rc == CURLUE_BAD_SCHEME || rc == CURLUE_UNSUPPORTED_SCHEME)
		problem = "it must start with https:// (or http:// for a local emulator)";
	else if (rc != CURLUE_OK)
	{
		char	   *msg = pstrdup(curl_url_strerror(rc));

		msg[0] = pg_tolower((unsigned char) msg[0]);
		problem = msg;
	}
	else
	{
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
		curl_url_get(u, CURLUPART_HOST, &host, 0);
		curl_url_get(u, CURLUPART_PATH, &path, 0);
		curl_url_get(u, CURLUPART_QUERY, &query, 0);
		curl_url_get(u, CURLUPART_USER, &user, 0);
		curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0);
		if (scheme == NULL || (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0))
			problem = "it must start with https:// (or http:// for a local emulator)";
		else if (host == NULL || host[0] == '\0')
			problem = "it has no host";
		else if (user != NULL)
			problem = "credentials do not belong in the URL; put them in a user mapping";
		else if (query != NULL || fragment != NULL)
			problem = "it must not have a query string or fragment";
		else if (path != NULL && strcmp(path, "/") != 0 && strcmp(path, "") != 0)
			problem = "it must not have a path";
		else if (strcmp(scheme, "http") == 0 && !zb_host_is_loopback(host))
			problem = "plain http:// is only allowed to a loopback address (127.0.0.0/8, ::1 or localhost: a local emulator); use https://";
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(path);
	curl_free(query);
	curl_free(user);
	curl_free(fragment);
	curl_url_cleanup(u);
	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", name, value),
				 errdetail("The URL is not usable: %s.", problem),
				 errhint("For example: 'https://dbc-1234.cloud.databricks.com'.")));
}

/*
 * A duration option, in milliseconds, between 1 ms and its maximum.
 *
 * The network timeouts have maxima (option.h): an interrupt ends any wait
 * whatever they are, but a background worker, or a session nobody cancels,
 * waits on a silent connection for exactly this long before it gives up
 * and reconnects; days of that is never what anyone wants.
 */
static long
opt_parse_ms(const char *name, const char *value)
{
	double		ms;
	const char *hint = NULL;
	long		max_ms = INT_MAX;
	const char *max_text = NULL;
	const char *max_hint = NULL;

	if (strcmp(name, "connect_timeout") == 0)
	{
		max_ms = ZB_MAX_CONNECT_TIMEOUT_MS;
		max_text = "1 min";
		max_hint = "A TCP and TLS connection that has not been made within a minute will not be; to bound a whole query, use statement_timeout.";
	}
	else if (strcmp(name, "request_timeout") == 0)
	{
		max_ms = ZB_MAX_REQUEST_TIMEOUT_MS;
		max_text = "10 min";
		max_hint = "It bounds one HTTP request (a result chunk of 256 MB included) or one wait for a ZeroBus acknowledgement; to bound a whole query, use statement_timeout.";
	}

	if (!parse_real(value, &ms, GUC_UNIT_MS, &hint) || !(rint(ms) >= 1))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", name, value),
				 errdetail("A positive duration is required."),
				 errhint("%s", hint ? hint : "For example: '30s', '500ms' or '2min'.")));
	if (rint(ms) > max_ms)
	{
		if (max_text)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("invalid value for option \"%s\": \"%s\"", name, value),
					 errdetail("The %s is at most %s.", name, max_text),
					 errhint("%s", max_hint)));
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", name, value),
				 errdetail("The %s is at most %d ms (about 24 days).", name, INT_MAX)));
	}
	return (long) rint(ms);
}

/* wait_timeout: the SQL API accepts 0s (return at once) or 5s to 50s. */
static long
opt_parse_wait(const char *name, const char *value)
{
	int			s;
	const char *hint = NULL;

	if (!parse_int(value, &s, GUC_UNIT_S, &hint) || !(s == 0 || (s >= 5 && s <= 50)))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", name, value),
				 errdetail("The SQL Statement API accepts 0s, or 5s to 50s."),
				 errhint("'0s' submits and then polls; a longer wait saves polls, but a query cancelled while the submit waits cannot cancel its remote statement (the statement id has not arrived).")));
	return s;
}

/* disposition: where the SQL API puts results. */
static bool
opt_parse_disposition(const char *name, const char *value)
{
	if (pg_strcasecmp(value, "inline") == 0)
		return false;
	if (pg_strcasecmp(value, "external_links") == 0)
		return true;
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
			 errmsg("invalid value for option \"%s\": \"%s\"", name, value),
			 errhint("Use 'inline' (results in the API responses, at most 25 MiB) or 'external_links' (results fetched from cloud storage, any size).")));
	return false;
}

static double
opt_parse_cost(const char *name, const char *value)
{
	char	   *end;
	double		v = strtod(value, &end);

	if (end == value || *end != '\0' || !(v >= 0) || isinf(v))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", name, value),
				 errhint("A non-negative number is required.")));
	return v;
}

/*
 * Words appended to the client identifier that every request carries
 * (User-Agent, x-zerobus-sdk): printable ASCII only, so that no value can
 * end a header line or start another.
 */
static void
opt_check_agent(const char *name, const char *value)
{
	const char *p;

	if (value[0] == '\0' || strlen(value) > ZB_MAX_USER_AGENT_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\"", name),
				 errdetail("It must be 1 to %d characters long.", ZB_MAX_USER_AGENT_LEN)));
	for (p = value; *p; p++)
		if ((unsigned char) *p < 0x20 || (unsigned char) *p > 0x7e)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("invalid value for option \"%s\"", name),
					 errdetail("It is sent in HTTP headers, so it may hold printable ASCII characters only."),
					 errhint("For example: 'acme-ingest/2.1 (team data-platform)'.")));
}

bool
zb_parse_disposition(const char *value)
{
	return opt_parse_disposition("disposition", value);
}

static void
opt_check_value(const ZbOption *opt, const char *value)
{
	switch (opt->kind)
	{
		case OPT_WAIT:
			(void) opt_parse_wait(opt->name, value);
			break;
		case OPT_DISPOSITION:
			(void) opt_parse_disposition(opt->name, value);
			break;
		case OPT_COST:
			(void) opt_parse_cost(opt->name, value);
			break;
		case OPT_URL:
			opt_check_url(opt->name, value);
			break;
		case OPT_MS:
			(void) opt_parse_ms(opt->name, value);
			break;
		case OPT_NAME3:
			zb_check_table_name(value, psprintf("value for option \"%s\"", opt->name));
			break;
		case OPT_IDENT:
			if (!zb_valid_name(value))
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("invalid value for option \"%s\": \"%s\"", opt->name, value),
						 errhint("Use ASCII letters, digits and underscores only.")));
			break;
		case OPT_PATH:
			if (!superuser())
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("only superusers can set option \"%s\"", opt->name)));
			if (!is_absolute_path(value))
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("invalid value for option \"%s\": \"%s\"", opt->name, value),
						 errhint("Give an absolute path to a PEM file of CA certificates.")));
			break;
		case OPT_AGENT:
			opt_check_agent(opt->name, value);
			break;
		case OPT_TEXT:
		case OPT_SECRET:
			if (value[0] == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("option \"%s\" must not be empty", opt->name)));
			break;
	}
}

static void
opt_reject_unknown(const char *name, Oid context)
{
	StringInfoData valid;
	const ZbOption *o;
	const char *owner = NULL;

	initStringInfo(&valid);
	for (o = zb_options; o->name; o++)
	{
		if (o->context == context)
			appendStringInfo(&valid, "%s%s", valid.len ? ", " : "", o->name);
		else if (strcmp(o->name, name) == 0)
			owner = opt_context_name(o->context);
	}
	if (owner)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("option \"%s\" belongs on a %s, not on a %s",
						name, owner, opt_context_name(context)),
				 strcmp(name, "client_secret") == 0 || strcmp(name, "client_id") == 0
				 ? errhint("Credentials go in a user mapping: CREATE USER MAPPING FOR CURRENT_USER SERVER <server> OPTIONS (client_id '<client id>', client_secret '<secret>');")
				 : errhint("Valid options here: %s.", valid.len ? valid.data : "none")));
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
			 errmsg("invalid option \"%s\" for a zerobus_fdw %s", name, opt_context_name(context)),
			 valid.len ? errhint("Valid options here: %s.", valid.data)
			 : errhint("A zerobus_fdw %s takes no options.", opt_context_name(context))));
}

PG_FUNCTION_INFO_V1(zerobus_fdw_validator);

Datum
zerobus_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			context = PG_GETARG_OID(1);
	ListCell   *lc;
	bool		has_table = false;
	bool		has_query = false;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);
		const char *value = defGetString(def);
		const ZbOption *o;

		for (o = zb_options; o->name; o++)
			if (o->context == context && strcmp(o->name, def->defname) == 0)
				break;
		if (o->name == NULL)
			opt_reject_unknown(def->defname, context);
		opt_check_value(o, value);
		if (strcmp(def->defname, "table") == 0)
			has_table = true;
		if (strcmp(def->defname, "query") == 0)
			has_query = true;
	}
	if (has_table && has_query)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("options \"table\" and \"query\" cannot both be set"),
				 errhint("A foreign table reads either a Databricks table or the result of a query.")));
	PG_RETURN_VOID();
}

/* ---------- resolved configuration ---------- */

static char *
opt_strip_slash(const char *url)
{
	char	   *s = pstrdup(url);
	size_t		len = strlen(s);

	while (len > 0 && s[len - 1] == '/')
		s[--len] = '\0';
	return s;
}

Oid
zb_server_oid(const char *servername)
{
	ForeignServer *server = GetForeignServerByName(servername, false);
	ForeignDataWrapper *fdw = GetForeignDataWrapper(server->fdwid);
	HeapTuple	tup;
	bool		ours = false;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fdw->fdwhandler));
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		src = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &isnull);

		ours = !isnull && strcmp(TextDatumGetCString(src), "zerobus_fdw_handler") == 0;
		ReleaseSysCache(tup);
	}
	if (!ours)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("server \"%s\" does not use the zerobus_fdw foreign-data wrapper",
						servername),
				 errhint("Create it with CREATE SERVER <name> FOREIGN DATA WRAPPER zerobus_fdw.")));
	return server->serverid;
}

/*
 * The user mapping 'userid' uses on a server: its own, or PUBLIC's.  An
 * ERROR with the statement that creates one when there is none.
 */
Oid
zb_user_mapping_oid(Oid serverid, Oid userid)
{
	HeapTuple	tup;
	Oid			umid;

	tup = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(userid),
						  ObjectIdGetDatum(serverid));
	if (!HeapTupleIsValid(tup))
		tup = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(InvalidOid),
							  ObjectIdGetDatum(serverid));
	if (!HeapTupleIsValid(tup))
	{
		ForeignServer *server = GetForeignServer(serverid);

		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no user mapping for user \"%s\" on server \"%s\"",
						GetUserNameFromId(userid, false), server->servername),
				 errhint("CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (client_id '<client id>', client_secret '<secret>');",
						 quote_identifier(server->servername))));
	}
	umid = ((Form_pg_user_mapping) GETSTRUCT(tup))->oid;
	ReleaseSysCache(tup);
	return umid;
}

/* Store one option's value into its field of the configuration. */
static void
opt_resolve(ZbServerConfig *cfg, const ZbOption *opt, const char *value)
{
	char	   *field = (char *) cfg + opt->field;

	switch (opt->kind)
	{
		case OPT_URL:
			*(char **) field = opt_strip_slash(value);
			break;
		case OPT_TEXT:
		case OPT_NAME3:
		case OPT_IDENT:
		case OPT_PATH:
		case OPT_SECRET:
		case OPT_AGENT:
			*(char **) field = pstrdup(value);
			break;
		case OPT_MS:
			*(long *) field = opt_parse_ms(opt->name, value);
			break;
		case OPT_WAIT:
			*(long *) field = opt_parse_wait(opt->name, value);
			break;
		case OPT_DISPOSITION:
			*(bool *) field = opt_parse_disposition(opt->name, value);
			break;
		case OPT_COST:
			*(double *) field = opt_parse_cost(opt->name, value);
			break;
	}
}

/* Resolve the options of one object (a server, or a user mapping). */
static void
opt_resolve_all(ZbServerConfig *cfg, Oid context, List *options)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);
		const ZbOption *o;

		for (o = zb_options; o->name; o++)
			if (o->context == context && o->field >= 0 &&
				strcmp(o->name, def->defname) == 0)
			{
				opt_resolve(cfg, o, defGetString(def));
				break;
			}
	}
}

/*
 * A server's options, and with need_mapping those of the user mapping of
 * 'userid' (its own or PUBLIC's), resolved into one configuration with
 * defaults filled in.  Callers that connect use the session layer
 * (session.c), which keeps one resolved configuration per server and user
 * mapping.
 */
ZbServerConfig *
zb_server_config(Oid serverid, Oid userid, bool need_mapping)
{
	ForeignServer *server = GetForeignServer(serverid);
	ZbServerConfig *cfg = palloc0(sizeof(ZbServerConfig));

	cfg->serverid = serverid;
	cfg->servername = pstrdup(server->servername);
	cfg->connect_timeout_ms = ZB_DEFAULT_CONNECT_TIMEOUT_MS;
	cfg->request_timeout_ms = ZB_DEFAULT_REQUEST_TIMEOUT_MS;
	cfg->wait_timeout_s = 0;
	cfg->statement_timeout_ms = 0;
	cfg->external_links = false;
	cfg->fdw_startup_cost = ZB_DEFAULT_FDW_STARTUP_COST;
	cfg->fdw_tuple_cost = ZB_DEFAULT_FDW_TUPLE_COST;

	opt_resolve_all(cfg, ForeignServerRelationId, server->options);
	if (cfg->workspace_id == NULL && cfg->zerobus_endpoint)
		cfg->workspace_id = zb_workspace_id_from_endpoint(cfg->zerobus_endpoint);

	if (need_mapping)
	{
		UserMapping *um;

		(void) zb_user_mapping_oid(serverid, userid);
		um = GetUserMapping(userid, serverid);
		cfg->umid = um->umid;
		opt_resolve_all(cfg, UserMappingRelationId, um->options);
		if (cfg->client_id == NULL || cfg->client_secret == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
					 errmsg("user mapping for server \"%s\" lacks %s",
							server->servername,
							cfg->client_id == NULL ? "client_id" : "client_secret"),
					 errhint("ALTER USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (ADD %s);",
							 quote_identifier(server->servername),
							 cfg->client_id == NULL ? "client_id '<client id>'"
							 : "client_secret '<secret>'")));
	}
	return cfg;
}

/* ERROR unless the server names the workspace that issues tokens. */
void
zb_require_workspace(const ZbServerConfig *cfg)
{
	if (cfg->workspace_url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("server \"%s\" has no workspace_url", cfg->servername),
				 errhint("ALTER SERVER %s OPTIONS (ADD workspace_url 'https://<deployment>.cloud.databricks.com');",
						 quote_identifier(cfg->servername))));
}

void
zb_require_endpoint(const ZbServerConfig *cfg)
{
	if (cfg->zerobus_endpoint == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("server \"%s\" has no zerobus_endpoint", cfg->servername),
				 errhint("ALTER SERVER %s OPTIONS (ADD zerobus_endpoint 'https://<workspace-id>.zerobus.<region>.cloud.databricks.com');",
						 quote_identifier(cfg->servername))));
}
