/*-------------------------------------------------------------------------
 * option.h
 *	  Options of the zerobus_fdw server, user mapping, foreign table and
 *	  column, their validation, and the resolved configuration.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_OPTION_H
#define ZB_OPTION_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"

typedef struct ZbServerConfig
{
	Oid			serverid;
	char	   *servername;
	char	   *workspace_url;	/* no trailing slash; NULL if unset */
	char	   *zerobus_endpoint;	/* no trailing slash; NULL if unset */
	char	   *workspace_id;	/* explicit, or the endpoint's first label */
	char	   *warehouse_id;
	char	   *catalog;
	char	   *schema;
	char	   *ca_file;
	long		connect_timeout_ms;
	long		request_timeout_ms;
	char	   *user_agent;		/* appended to the client identifier; NULL if unset */
	/* history FDW (SQL Statement Execution API) */
	long		wait_timeout_s; /* 0, or 5..50 */
	long		statement_timeout_ms;	/* 0 = no limit of our own */
	bool		external_links; /* disposition EXTERNAL_LINKS */
	double		fdw_startup_cost;
	double		fdw_tuple_cost;
	/* from the user mapping */
	Oid			umid;
	char	   *client_id;
	char	   *client_secret;
} ZbServerConfig;

#define ZB_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define ZB_DEFAULT_REQUEST_TIMEOUT_MS 30000
/* maxima: see opt_parse_ms() and docs/fdw.md */
#define ZB_MAX_CONNECT_TIMEOUT_MS 60000
#define ZB_MAX_REQUEST_TIMEOUT_MS 600000
#define ZB_MAX_USER_AGENT_LEN 200
#define ZB_DEFAULT_FDW_STARTUP_COST 100.0
#define ZB_DEFAULT_FDW_TUPLE_COST 0.05

extern ZbServerConfig *zb_server_config(Oid serverid, Oid userid, bool need_mapping);
extern Oid	zb_server_oid(const char *servername);
extern Oid	zb_user_mapping_oid(Oid serverid, Oid userid);
extern void zb_require_workspace(const ZbServerConfig *cfg);
extern void zb_require_endpoint(const ZbServerConfig *cfg);
extern bool zb_valid_name(const char *name);
extern bool zb_parse_disposition(const char *value);
extern void zb_check_table_name(const char *table, const char *what);
extern void zb_check_server_usage(Oid serverid, const char *servername);
extern int64 zb_interval_ms(const Interval *iv);

#endif							/* ZB_OPTION_H */
