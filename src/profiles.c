/*-------------------------------------------------------------------------
 * profiles.c
 *	  The generator's traffic profiles.
 *
 * Rows are made by one INSERT … SELECT per batch over
 *   (SELECT random() AS r1, …, random() AS r8,
 *           1 + floor(random() * 500)::int AS d FROM generate_series(1, $1)) s
 * so each profile is the SQL below, run by the executor at full speed.
 *
 *   transactions: the financial-transactions seed: sender and receiver
 *     accounts, amounts from $1 to $50,000 (mostly small), six currencies,
 *     four types, weighted statuses; about 5% anomalous, with a large amount
 *     and a risk score of 0.8 to 1.0 (others stay under 0.3).
 *   sensors: the IoT seed: 500 devices whose GPS positions drift slowly
 *     around a home point, with speed, battery draining in cycles, signal
 *     strength and temperature.
 *   orders: order events (placed/paid/shipped/delivered/cancelled) with
 *     customers, products, quantities and prices, by region.  With a
 *     lifecycle table it runs a shop instead: the orders live in an ordinary
 *     table, are placed (INSERT), move placed → paid → shipped → delivered
 *     (UPDATEs; 8% of placed and 3% of paid orders are cancelled instead),
 *     and are deleted once finished: cancelled ones after 5 s, delivered
 *     ones after 30 s (archived).  A status is kept at least 1 s (placed),
 *     2 s (paid), 3 s (shipped).  Per order that is one INSERT, 2.8 UPDATEs
 *     and one DELETE on average: about 21% inserts, 58% updates and 21%
 *     deletes once the table has filled (generator.c paces the mix).
 *   weblogs: HTTP access log lines: client address, method, path, status
 *     (mostly 200), response size, latency and user agent.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "profiles.h"

/*
 * The orders' lifecycle.  Due rows are found through the (status,
 * updated_at) index, one ordered range per status, merged oldest first,
 * and changed by key (= ANY of an array: an index scan whatever the
 * planner thinks of the LIMIT of a generic plan).
 * Every operator and function is qualified: these statements are the
 * generator's own, not a profile's fixed expressions (docs/DESIGN.md).
 */
#define DUE(status, age) \
	"(SELECT order_id, updated_at FROM %1$s" \
	" WHERE status OPERATOR(pg_catalog.=) '" status "'" \
	" AND updated_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) '" age "'::pg_catalog.interval)" \
	" ORDER BY updated_at LIMIT $1)"

static const ZbLifecycle orders_lifecycle = {
	"order_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
	"customer_id text NOT NULL, product text NOT NULL, quantity integer NOT NULL, "
	"unit_price numeric(10,2) NOT NULL, total numeric(12,2) NOT NULL, status text NOT NULL, "
	"region text NOT NULL, ordered_at timestamptz NOT NULL DEFAULT now(), "
	"updated_at timestamptz NOT NULL DEFAULT now()",
	"status, updated_at",
	/*
	 * short values, never out of line: an UPDATE that leaves one unchanged
	 * is capturable without REPLICA IDENTITY FULL (docs/DESIGN.md)
	 */
	"customer_id, product, unit_price, total, status, region",
	/* a delete carries the key only, a truncate record no column: all nullable */
	"order_id BIGINT, customer_id STRING, product STRING, quantity INT, "
	"unit_price DECIMAL(10,2), total DECIMAL(12,2), status STRING, region STRING, "
	"ordered_at TIMESTAMP, updated_at TIMESTAMP, "
	"_change_type STRING NOT NULL, _commit_lsn BIGINT NOT NULL, "
	"_commit_timestamp TIMESTAMP NOT NULL, _seq BIGINT NOT NULL",
	"order_id",
	"order_id, customer_id, product, quantity, unit_price, total, status, region, ordered_at, updated_at",
	"customer_id, product, quantity, unit_price, total, status, region, ordered_at, updated_at",
	"'CUST-' || lpad(floor(s.r2 * 20000)::int::text, 5, '0'), "
	"(ARRAY['laptop','phone','headphones','monitor','keyboard','mouse','tablet','camera','speaker','charger'])[1 + floor(s.r3 * 10)::int], "
	"1 + floor(power(s.r4, 4) * 9)::int, "
	"round((5 + power(s.r5, 2) * 1995)::numeric, 2), "
	"(1 + floor(power(s.r4, 4) * 9)::int) * round((5 + power(s.r5, 2) * 1995)::numeric, 2), "
	"'placed', "
	"(ARRAY['us-east','us-west','eu-central','eu-west','ap-south','ap-northeast'])[1 + floor(s.r7 * 6)::int], "
	"clock_timestamp(), clock_timestamp()",
	"UPDATE %1$s AS o SET status = CASE"
	" WHEN o.status OPERATOR(pg_catalog.=) 'placed' THEN CASE WHEN pg_catalog.random()"
	" OPERATOR(pg_catalog.<) 0.08::pg_catalog.float8 THEN 'cancelled' ELSE 'paid' END"
	" WHEN o.status OPERATOR(pg_catalog.=) 'paid' THEN CASE WHEN pg_catalog.random()"
	" OPERATOR(pg_catalog.<) 0.03::pg_catalog.float8 THEN 'cancelled' ELSE 'shipped' END"
	" WHEN o.status OPERATOR(pg_catalog.=) 'shipped' THEN 'delivered' ELSE o.status END,"
	" updated_at = pg_catalog.clock_timestamp()"
	" WHERE o.order_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT due.order_id FROM ("
	DUE("placed", "1 s") " UNION ALL " DUE("paid", "2 s") " UNION ALL " DUE("shipped", "3 s")
	") due ORDER BY due.updated_at LIMIT $1))",
	"DELETE FROM %1$s AS o"
	" WHERE o.order_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT due.order_id FROM ("
	DUE("cancelled", "5 s") " UNION ALL " DUE("delivered", "30 s")
	") due ORDER BY due.updated_at LIMIT $1))"
};

const ZbProfile zb_profiles[] = {
	{
		"transactions",
		"financial transactions: accounts, amounts $1-$50,000, currencies, types, statuses; ~5% anomalies with a high risk score",
		"txn_id text NOT NULL, sender_account text NOT NULL, receiver_account text NOT NULL, "
		"amount numeric(12,2) NOT NULL, currency text NOT NULL, txn_type text NOT NULL, "
		"status text NOT NULL, risk_score double precision NOT NULL, is_anomaly boolean NOT NULL, "
		"created_at timestamptz NOT NULL DEFAULT now()",
		"txn_id STRING NOT NULL, sender_account STRING NOT NULL, receiver_account STRING NOT NULL, "
		"amount DECIMAL(12,2) NOT NULL, currency STRING NOT NULL, txn_type STRING NOT NULL, "
		"status STRING NOT NULL, risk_score DOUBLE NOT NULL, is_anomaly BOOLEAN NOT NULL, "
		"created_at TIMESTAMP NOT NULL",
		"txn_id, sender_account, receiver_account, amount, currency, txn_type, status, "
		"risk_score, is_anomaly, created_at",
		"gen_random_uuid()::text, "
		"'ACC' || lpad(floor(s.r1 * 100000)::int::text, 6, '0'), "
		"'ACC' || lpad(floor(s.r2 * 100000)::int::text, 6, '0'), "
		"CASE WHEN s.r3 < 0.05 THEN round((20000 + s.r4 * 30000)::numeric, 2) "
		"     ELSE round((1 + power(s.r4, 3) * 19999)::numeric, 2) END, "
		"(ARRAY['USD','USD','USD','EUR','EUR','GBP','JPY','CHF','CAD'])[1 + floor(s.r5 * 9)::int], "
		"(ARRAY['transfer','transfer','payment','payment','payment','withdrawal','deposit'])[1 + floor(s.r6 * 7)::int], "
		"CASE WHEN s.r7 < 0.90 THEN 'completed' WHEN s.r7 < 0.96 THEN 'pending' "
		"     WHEN s.r7 < 0.99 THEN 'failed' ELSE 'reversed' END, "
		"CASE WHEN s.r3 < 0.05 THEN round((0.8 + s.r8 * 0.2)::numeric, 3)::float8 "
		"     ELSE round((s.r8 * 0.3)::numeric, 3)::float8 END, "
		"s.r3 < 0.05, "
		"clock_timestamp()"
	},
	{
		"sensors",
		"IoT devices: drifting GPS position, speed, battery, signal strength, temperature",
		"device_id text NOT NULL, latitude double precision NOT NULL, longitude double precision NOT NULL, "
		"speed_kmh double precision NOT NULL, battery_pct smallint NOT NULL, signal_dbm smallint NOT NULL, "
		"temperature_c real NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now()",
		"device_id STRING NOT NULL, latitude DOUBLE NOT NULL, longitude DOUBLE NOT NULL, "
		"speed_kmh DOUBLE NOT NULL, battery_pct SMALLINT NOT NULL, signal_dbm SMALLINT NOT NULL, "
		"temperature_c FLOAT NOT NULL, recorded_at TIMESTAMP NOT NULL",
		"device_id, latitude, longitude, speed_kmh, battery_pct, signal_dbm, temperature_c, recorded_at",
		"'sensor-' || lpad(s.d::text, 4, '0'), "
		/* home point per device, drifting with time */
		"round((37.2 + (s.d % 50) * 0.02 + 0.01 * sin(extract(epoch FROM clock_timestamp()) / 300 + s.d) "
		"       + (s.r1 - 0.5) * 0.0005)::numeric, 6)::float8, "
		"round((-122.5 + (s.d / 50) * 0.02 + 0.01 * cos(extract(epoch FROM clock_timestamp()) / 300 + s.d) "
		"       + (s.r2 - 0.5) * 0.0005)::numeric, 6)::float8, "
		"round((abs(sin(extract(epoch FROM clock_timestamp()) / 120 + s.d)) * 90 + s.r3 * 5)::numeric, 1)::float8, "
		"(100 - ((floor(extract(epoch FROM clock_timestamp()) / 36)::bigint + s.d * 7) % 100))::smallint, "
		"(-50 - floor(s.r4 * 60))::smallint, "
		"round((18 + 8 * sin(extract(epoch FROM clock_timestamp()) / 3600 + s.d) + s.r5)::numeric, 1)::real, "
		"clock_timestamp()"
	},
	{
		"orders",
		"order events: customers, products, quantities, prices, statuses, regions",
		"order_id text NOT NULL, customer_id text NOT NULL, product text NOT NULL, "
		"quantity integer NOT NULL, unit_price numeric(10,2) NOT NULL, total numeric(12,2) NOT NULL, "
		"status text NOT NULL, region text NOT NULL, ordered_at timestamptz NOT NULL DEFAULT now()",
		"order_id STRING NOT NULL, customer_id STRING NOT NULL, product STRING NOT NULL, "
		"quantity INT NOT NULL, unit_price DECIMAL(10,2) NOT NULL, total DECIMAL(12,2) NOT NULL, "
		"status STRING NOT NULL, region STRING NOT NULL, ordered_at TIMESTAMP NOT NULL",
		"order_id, customer_id, product, quantity, unit_price, total, status, region, ordered_at",
		"'ORD-' || upper(substr(md5(s.r1::text || clock_timestamp()::text), 1, 10)), "
		"'CUST-' || lpad(floor(s.r2 * 20000)::int::text, 5, '0'), "
		"(ARRAY['laptop','phone','headphones','monitor','keyboard','mouse','tablet','camera','speaker','charger'])[1 + floor(s.r3 * 10)::int], "
		"1 + floor(power(s.r4, 4) * 9)::int, "
		"round((5 + power(s.r5, 2) * 1995)::numeric, 2), "
		"(1 + floor(power(s.r4, 4) * 9)::int) * round((5 + power(s.r5, 2) * 1995)::numeric, 2), "
		"CASE WHEN s.r6 < 0.35 THEN 'placed' WHEN s.r6 < 0.65 THEN 'paid' WHEN s.r6 < 0.85 THEN 'shipped' "
		"     WHEN s.r6 < 0.97 THEN 'delivered' ELSE 'cancelled' END, "
		"(ARRAY['us-east','us-west','eu-central','eu-west','ap-south','ap-northeast'])[1 + floor(s.r7 * 6)::int], "
		"clock_timestamp()",
		&orders_lifecycle
	},
	{
		"weblogs",
		"HTTP access log lines: client, method, path, status, bytes, latency, user agent",
		"client_ip text NOT NULL, method text NOT NULL, path text NOT NULL, status smallint NOT NULL, "
		"response_bytes integer NOT NULL, latency_ms double precision NOT NULL, user_agent text NOT NULL, "
		"logged_at timestamptz NOT NULL DEFAULT now()",
		"client_ip STRING NOT NULL, method STRING NOT NULL, path STRING NOT NULL, status SMALLINT NOT NULL, "
		"response_bytes INT NOT NULL, latency_ms DOUBLE NOT NULL, user_agent STRING NOT NULL, "
		"logged_at TIMESTAMP NOT NULL",
		"client_ip, method, path, status, response_bytes, latency_ms, user_agent, logged_at",
		"'10.' || floor(s.r1 * 256)::int || '.' || floor(s.r2 * 256)::int || '.' || s.d % 256, "
		"CASE WHEN s.r3 < 0.8 THEN 'GET' WHEN s.r3 < 0.95 THEN 'POST' WHEN s.r3 < 0.98 THEN 'PUT' ELSE 'DELETE' END, "
		"(ARRAY['/','/api/items','/api/items/' || s.d,'/api/cart','/login','/search?q=' || floor(s.r4 * 1000),'/static/app.js','/health'])[1 + floor(s.r5 * 8)::int], "
		"(CASE WHEN s.r6 < 0.93 THEN 200 WHEN s.r6 < 0.96 THEN 304 WHEN s.r6 < 0.985 THEN 404 WHEN s.r6 < 0.995 THEN 500 ELSE 503 END)::smallint, "
		"floor(200 + power(s.r7, 3) * 200000)::int, "
		"round((2 + power(s.r8, 4) * 800)::numeric, 2)::float8, "
		"(ARRAY['Mozilla/5.0 (X11; Linux x86_64)','Mozilla/5.0 (Macintosh)','curl/7.88.1','python-requests/2.31'])[1 + floor(s.r4 * 4)::int], "
		"clock_timestamp()"
	},
	{NULL, NULL, NULL, NULL, NULL, NULL, NULL}
};

const ZbProfile *
zb_profile(const char *name)
{
	const ZbProfile *p;

	for (p = zb_profiles; p->name; p++)
		if (strcmp(p->name, name) == 0)
			return p;
	return NULL;
}

/* "transactions, sensors, orders, weblogs", for hints. */
const char *
zb_profile_names(void)
{
	StringInfoData s;
	const ZbProfile *p;

	initStringInfo(&s);
	for (p = zb_profiles; p->name; p++)
		appendStringInfo(&s, "%s%s", s.len ? ", " : "", p->name);
	return s.data;
}
