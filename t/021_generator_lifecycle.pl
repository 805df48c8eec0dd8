# The orders profile's lifecycle (issue 11): with a lifecycle table the
# generator runs a shop in an ordinary table instead of filling its queue.
# An audit trigger on the table records every change the generator makes,
# and proves: new orders are placed, orders move placed → paid → shipped →
# delivered with some cancelled, only along those steps, finished orders are
# deleted, the queue gets nothing, every change is counted in
# rows_generated, the changes run as the stream's owner, a new lifecycle
# table applies to a running generator at once, and a lost privilege or a
# dropped table is a state, not a crash.  (The mix and the rates it
# achieves are bench/'s, not asserted here.)
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusEmulator;
use ZerobusNode;

my $emu = ZerobusEmulator->new;
my $node = ZerobusNode::create('lifecycle', $emu, conf => "zerobus.poll_interval = '200ms'");

sub su { return $node->safe_psql('postgres', $_[0]); }

# the Delta table of the orders queue (which the lifecycle leaves empty)
my $delta = su(q{SELECT delta_columns FROM zerobus.generator_profiles() WHERE profile = 'orders'});
$emu->create_table('main.default.orders_events', [ map {
	my ($name, $type, $nn) = /^\s*(\w+)\s+(\S+)(\s+NOT NULL)?/;
	{ name => $name, type => $type, nullable => $nn ? JSON::PP::false : JSON::PP::true }
} split /,(?![^(]*\))/, $delta ]);

# The stream belongs to shopkeeper (it owns the queue); the lifecycle table
# is the superuser's, with the rights shopkeeper needs granted.  The audit
# trigger records who made each change.
su(q{
	CREATE ROLE shopkeeper;
	GRANT USAGE ON FOREIGN SERVER emu TO shopkeeper;
	CREATE USER MAPPING FOR shopkeeper SERVER emu
	  OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
	SELECT zerobus.generator_create_queue('orders', 'orders_queue');
	ALTER TABLE orders_queue OWNER TO shopkeeper;
	SELECT zerobus.generator_create_table('orders', 'shop_orders');
	SELECT zerobus.generator_create_table('orders', 'shop_orders_2');
	GRANT SELECT, INSERT, UPDATE, DELETE ON shop_orders, shop_orders_2 TO shopkeeper;
	CREATE TABLE audit (n bigserial, tab text, op text, order_id bigint, old_status text,
	                    new_status text, who name, at timestamptz DEFAULT clock_timestamp());
	GRANT INSERT ON audit TO shopkeeper;
	GRANT USAGE ON SEQUENCE audit_n_seq TO shopkeeper;
	CREATE FUNCTION audit_change() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
	BEGIN
	  INSERT INTO public.audit (tab, op, order_id, old_status, new_status, who)
	  VALUES (TG_TABLE_NAME, TG_OP,
	          CASE WHEN TG_OP = 'DELETE' THEN OLD.order_id ELSE NEW.order_id END,
	          CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE OLD.status END,
	          CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE NEW.status END,
	          current_user);
	  RETURN NULL;
	END $$;
	CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON shop_orders
	  FOR EACH ROW EXECUTE FUNCTION audit_change();
	CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON shop_orders_2
	  FOR EACH ROW EXECUTE FUNCTION audit_change();
	SELECT zerobus.create_stream('shop', 'orders_queue', 'emu', 'main.default.orders_events');
	SELECT zerobus.generator_start('shop', 'orders', rate => 300, lifecycle_table => 'shop_orders');
});

sub status { return su(q{SELECT coalesce(last_error, '') FROM zerobus.generator_status() WHERE stream = 'shop'}); }

# every status is reached and finished orders are deleted: cancelled ones
# 5 s after, delivered ones 30 s after (profiles.c)
ok($node->poll_query_until('postgres', q{
	SELECT count(DISTINCT new_status) = 5 AND count(*) FILTER (WHERE op = 'DELETE' AND old_status = 'cancelled') > 0
	       AND count(*) FILTER (WHERE op = 'DELETE' AND old_status = 'delivered') > 0
	  FROM audit WHERE tab = 'shop_orders'}), 'orders reach every status and finished ones are deleted')
  or diag('audit: ' . su(q{SELECT string_agg(op || ' ' || coalesce(old_status, '-') || '>' || coalesce(new_status, '-') || ' ' || c, ', ')
	  FROM (SELECT op, old_status, new_status, count(*) c FROM audit GROUP BY 1, 2, 3) x}) . '; generator: ' . status());

su(q{SELECT zerobus.generator_stop('shop')});
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'zerobus_fdw generator shop'}),
	'the generator stopped');

# what happened, change by change
is(su(q{SELECT string_agg(DISTINCT new_status, ',') FROM audit WHERE op = 'INSERT'}), 'placed',
	'new orders are placed');
is(su(q{SELECT string_agg(DISTINCT old_status || '>' || new_status, ',' ORDER BY old_status || '>' || new_status)
	FROM audit WHERE op = 'UPDATE'}), 'paid>cancelled,paid>shipped,placed>cancelled,placed>paid,shipped>delivered',
	'orders move only along the lifecycle, and all of its steps happen');
is(su(q{SELECT string_agg(DISTINCT old_status, ',' ORDER BY old_status) FROM audit WHERE op = 'DELETE'}),
	'cancelled,delivered', 'only finished orders are deleted, cancelled and (archived) delivered ones');
is(su(q{SELECT count(*) FROM (SELECT order_id FROM audit WHERE op = 'UPDATE' GROUP BY tab, order_id, old_status
	HAVING count(*) > 1) x}), '0', 'no order leaves a status twice');
is(su(q{SELECT count(*) FROM audit a WHERE op <> 'INSERT' AND NOT EXISTS
	(SELECT FROM audit i WHERE i.op = 'INSERT' AND i.order_id = a.order_id AND i.tab = a.tab)}), '0',
	'every order changed was placed by the generator');
is(su(q{SELECT count(*) FROM audit a WHERE op = 'DELETE' AND a.tab = 'shop_orders' AND EXISTS
	(SELECT FROM shop_orders o WHERE o.order_id = a.order_id)}), '0', 'deleted orders are gone');
is(su(q{SELECT string_agg(DISTINCT who, ',') FROM audit}), 'shopkeeper',
	'every change ran as the stream\'s owner');
is(su(q{SELECT (SELECT count(*) FROM audit WHERE op = 'INSERT') - (SELECT count(*) FROM audit WHERE op = 'DELETE')
	= (SELECT count(*) FROM shop_orders)}), 't', 'the table holds the placed orders not deleted');
is(su(q{SELECT rows_generated FROM zerobus.generator_status() WHERE stream = 'shop'}),
	su(q{SELECT count(*) FROM audit}), 'rows_generated counts every change (inserts, updates, deletes)');
is(su(q{SELECT count(*) FROM orders_queue}), '0', 'the queue got no rows');
is($emu->count('main.default.orders_events'), 0, 'and nothing reached the queue\'s Delta table');
note('changes: ' . su(q{SELECT string_agg(op || ' ' || c, ', ') FROM (SELECT op, count(*) c FROM audit GROUP BY 1 ORDER BY 1) x}));

# a new lifecycle table applies to a running generator at once (the launcher
# restarts it only for a new profile)
my $resumed = su(q{SELECT clock_timestamp()});
su(q{SELECT zerobus.generator_start('shop', rate => 300)});
ok($node->poll_query_until('postgres', qq{SELECT count(*) > 20 FROM audit WHERE tab = 'shop_orders' AND at > '$resumed'}),
	'resumed without naming the table: it runs in the same one');
su(q{SELECT zerobus.generator_start('shop', 'orders', rate => 300, lifecycle_table => 'shop_orders_2')});
ok($node->poll_query_until('postgres', q{SELECT count(*) > 300 FROM audit WHERE tab = 'shop_orders_2'}),
	'a new lifecycle table is used');
# one process makes the changes one transaction after the other: audit.n orders them
is(su(q{SELECT max(n) FILTER (WHERE tab = 'shop_orders') < min(n) FILTER (WHERE tab = 'shop_orders_2') FROM audit}),
	't', 'and the old one is no longer changed');

# a lost privilege is a state with the fix; the GRANT resumes it at once
su(q{REVOKE UPDATE ON shop_orders_2 FROM shopkeeper});
ok($node->poll_query_until('postgres', q{SELECT last_error LIKE '%no UPDATE privilege on its lifecycle table%GRANT%'
	FROM zerobus.generator_status() WHERE stream = 'shop'}), 'a revoked UPDATE: generator_status says so')
  or diag(status());
like(su(q{SELECT last_error FROM zb_metrics WHERE stream = 'shop'}), qr/^generator: .*lifecycle table/,
	'and so does zb_metrics');
my $stalled = su(q{SELECT count(*) FROM audit});
su(q{GRANT UPDATE ON shop_orders_2 TO shopkeeper});
ok($node->poll_query_until('postgres', qq{SELECT count(*) > $stalled + 20 FROM audit}), 'GRANT: changes flow again');
ok($node->poll_query_until('postgres',
	q{SELECT last_error IS NULL FROM zerobus.generator_status() WHERE stream = 'shop'}), 'and the error clears');

# the table dropped under it
su(q{DROP TABLE shop_orders_2});
ok($node->poll_query_until('postgres', q{SELECT last_error LIKE 'the lifecycle table (OID %) no longer exists%'
	FROM zerobus.generator_status() WHERE stream = 'shop'}), 'a dropped lifecycle table is a state')
  or diag(status());
is(su(q{SELECT running FROM zerobus.generator_status() WHERE stream = 'shop'}), 't', 'the generator waits, alive');
su(q{SELECT zerobus.generator_start('shop', 'orders', rate => 300, lifecycle_table => 'shop_orders')});
my $count = su(q{SELECT count(*) FROM audit});
ok($node->poll_query_until('postgres', qq{SELECT count(*) > $count + 20 FROM audit WHERE tab = 'shop_orders'}),
	'another table named: it runs there');
su(q{SELECT zerobus.drop_stream('shop')});
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'zerobus_fdw generator shop'}),
	'dropping the stream ends the generator');

$node->stop;
done_testing();
