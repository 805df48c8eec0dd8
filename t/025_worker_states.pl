# Workers under DDL and revoked privileges (issue 8, repros 4 and 5 and
# their neighbours): a missing or forbidden object puts the stream (or its
# generator) in state 'error' with a last_error naming the fix, nothing
# crashes, the worker recovers by itself when the grant or object comes back,
# and it obeys stop_stream and pg_terminate_backend while in error.  The
# stream's owner is a NOLOGIN role: workers act as the queue table's owner
# without logging in as it.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusEmulator;
use ZerobusNode;

my $emu = ZerobusEmulator->new;
$emu->create_table('main.default.t',
	[ { name => 'id', type => 'BIGINT', nullable => JSON::PP::false }, { name => 'note', type => 'STRING' } ]);
my $node = ZerobusNode::create('states', $emu);

$node->safe_psql('postgres', q{
	CREATE ROLE alice NOLOGIN;
	CREATE SCHEMA app AUTHORIZATION alice;
	GRANT USAGE ON FOREIGN SERVER emu TO alice;
	CREATE USER MAPPING FOR alice SERVER emu
	  OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
	SET ROLE alice;
	CREATE TABLE app.q (id bigint NOT NULL, note text);
	RESET ROLE;
	SELECT zerobus.create_stream('s', 'app.q', 'emu', 'main.default.t');
});

my $next_id = 1;

# Insert n rows (as a superuser: the owner may have lost its privileges), return the last id.
sub insert_rows
{
	my ($n) = @_;
	my $lo = $next_id;
	$next_id += $n;
	$node->safe_psql('postgres',
		"INSERT INTO app.q SELECT i, 'row ' || i FROM generate_series($lo, $next_id - 1) i");
	return $next_id - 1;
}

sub delivered { return $emu->count('main.default.t'); }

sub state_is
{
	my ($state, $error_like, $name) = @_;
	ok( $node->poll_query_until('postgres',
			qq{SELECT state = '$state' AND coalesce(last_error, '') LIKE '$error_like' FROM zb_metrics WHERE stream = 's'}),
		$name)
	  or diag($node->safe_psql('postgres', q{SELECT state, last_error FROM zb_metrics}));
}

sub worker_pid
{
	return $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'zerobus_fdw stream'});
}

my $last = insert_rows(100);
ok($emu->wait_for(sub { delivered() == $last }, 60), 'a NOLOGIN owner\'s stream delivers');
is($node->safe_psql('postgres', q{SELECT owner FROM zerobus.streams}), 'alice', 'the owner is the queue\'s');
is($node->safe_psql('postgres', q{SELECT usename IS NULL OR usename <> 'alice' FROM pg_stat_activity WHERE backend_type = 'zerobus_fdw stream'}),
	't', 'the worker is not logged in as the owner');

# --- repro 5: USAGE on the queue's schema revoked, then alter_stream
$node->safe_psql('postgres', q{
	REVOKE USAGE ON SCHEMA app FROM alice;
	SELECT zerobus.alter_stream('s', batch_rows => 100);
});
$last = insert_rows(10);
state_is('error', '%no USAGE on its schema: GRANT USAGE ON SCHEMA app TO alice;', 'schema USAGE revoked: error, with the fix');
is(delivered(), $last - 10, 'nothing is delivered meanwhile');
$node->safe_psql('postgres', q{GRANT USAGE ON SCHEMA app TO alice});
ok($emu->wait_for(sub { delivered() == $last }, 30), 'the grant comes back: the worker recovers at once');

# --- C5: USAGE on the server revoked stops delivery at the next batch
$node->safe_psql('postgres', q{REVOKE USAGE ON FOREIGN SERVER emu FROM alice});
$last = insert_rows(10);
state_is('error', '%no USAGE on server emu%', 'server USAGE revoked: error');
is(delivered(), $last - 10, 'the rows wait in the queue');
$node->safe_psql('postgres', q{GRANT USAGE ON FOREIGN SERVER emu TO alice});
ok($emu->wait_for(sub { delivered() == $last }, 30), 'GRANT resumes delivery');

# --- DELETE privilege on the queue revoked from its own owner
$node->safe_psql('postgres', q{REVOKE DELETE ON app.q FROM alice});
$last = insert_rows(5);
state_is('error', '%no DELETE privilege on its queue table app.q%', 'DELETE revoked: error');
$node->safe_psql('postgres', q{GRANT DELETE ON app.q TO alice});
ok($emu->wait_for(sub { delivered() == $last }, 30), 'DELETE granted again: delivered');

# --- an ERROR inside the worker's SQL (the owner's trigger raises): recovered,
# reported, no crash; the trigger runs as the owner, restricted
$node->safe_psql('postgres', q{
	SET ROLE alice;
	CREATE FUNCTION app.boom() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN RAISE EXCEPTION 'boom as % (restricted: %)', current_user,
	  (SELECT count(*) FROM pg_settings WHERE name = 'search_path' AND setting = 'pg_catalog, pg_temp'); END $$;
	CREATE TRIGGER boom BEFORE DELETE ON app.q FOR EACH ROW EXECUTE FUNCTION app.boom();
});
$last = insert_rows(5);
state_is('error', 'boom as alice (restricted: 1)', 'an error in the owner\'s trigger is a state; it ran as the owner, search_path pinned');

# pg_terminate_backend in state error: the worker goes (the launcher starts another)
my $pid = worker_pid();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid"),
	'pg_terminate_backend ends a worker in state error');

# stop_stream in state error
$node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'zerobus_fdw stream'});
$node->safe_psql('postgres', q{SELECT zerobus.stop_stream('s')});
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'zerobus_fdw stream'}),
	'stop_stream ends a worker in state error');
$node->safe_psql('postgres', q{DROP TRIGGER boom ON app.q; SELECT zerobus.start_stream('s')});
ok($emu->wait_for(sub { delivered() == $last }, 30), 'trigger dropped, stream started: delivered');

# --- the owner reassigned and dropped: the stream moves with the table
$node->safe_psql('postgres', q{
	CREATE ROLE bob NOLOGIN;
	GRANT USAGE ON FOREIGN SERVER emu TO bob;
});
my ($rc, $out, $err) = $node->psql('postgres', 'DROP ROLE alice');
like($err, qr/owner of table app\.q/, 'DROP ROLE of the owner is refused while it owns the queue');
$node->safe_psql('postgres', q{
	REASSIGN OWNED BY alice TO bob;
	DROP OWNED BY alice;
	DROP ROLE alice;
});
is($node->safe_psql('postgres', q{SELECT owner FROM zerobus.streams}), 'bob', 'REASSIGN OWNED moved the stream');
$last = insert_rows(5);
state_is('error', '%has no user mapping for server emu: CREATE USER MAPPING FOR bob%', 'the new owner has no user mapping: error');
$node->safe_psql('postgres', q{CREATE USER MAPPING FOR bob SERVER emu
	OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret')});
ok($emu->wait_for(sub { delivered() == $last }, 30), 'a mapping for the new owner: delivered');

# --- repro 4: a generator whose queue is dropped
my $delta = $node->safe_psql('postgres',
	q{SELECT delta_columns FROM zerobus.generator_profiles() WHERE profile = 'transactions'});
my @cols = map {
	my ($name, $type, $nn) = /^\s*(\w+)\s+(\S+)(\s+NOT NULL)?/;
	{ name => $name, type => $type, nullable => $nn ? JSON::PP::false : JSON::PP::true }
} split /,(?![^(]*\))/, $delta;
$emu->create_table('main.default.financial_transactions', \@cols);

sub generate_then_drop
{
	my ($stream) = @_;
	$node->safe_psql('postgres', qq{
		SELECT zerobus.generator_create_queue('transactions', '${stream}_q');
		SELECT zerobus.create_stream('$stream', '${stream}_q', 'emu', 'main.default.financial_transactions');
		SELECT zerobus.generator_start('$stream', profile => 'transactions', throttle => 60);
	});
	ok($node->poll_query_until('postgres',
			qq{SELECT rows_generated > 100 FROM zerobus.generator_status() WHERE stream = '$stream'}),
		"$stream: the generator runs");
	my ($rc, $out, $err) = $node->psql('postgres', "DROP TABLE ${stream}_q");
	return $err;
}

like(generate_then_drop('g1'), qr/NOTICE:  drop cascades to stream "g1"/,
	'DROP TABLE of a generator\'s queue drops its stream, with a NOTICE');
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'zerobus_fdw generator'}),
	'and its generator stops');

# without the event trigger (disabled, as in single-user mode), a state
$node->safe_psql('postgres', q{ALTER EVENT TRIGGER zerobus_queue_dropped DISABLE});
generate_then_drop('g2');
ok($node->poll_query_until('postgres',
		q{SELECT last_error LIKE 'the queue table (OID %) no longer exists: SELECT zerobus.drop_stream(''g2'');'
		    FROM zerobus.generator_status() WHERE stream = 'g2'}),
	'event trigger disabled: the generator reports the missing queue');
state_is_for('g2', 'error', 'the queue table (OID %) no longer exists%', 'and the stream is in state error');
$node->safe_psql('postgres', q{SELECT zerobus.drop_stream('g2')});
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type IN ('zerobus_fdw generator', 'zerobus_fdw stream') AND application_name LIKE '%g2'}),
	'dropping the stream ends its workers');
$node->safe_psql('postgres', q{ALTER EVENT TRIGGER zerobus_queue_dropped ENABLE});

sub state_is_for
{
	my ($stream, $state, $error_like, $name) = @_;
	ok( $node->poll_query_until('postgres',
			qq{SELECT state = '$state' AND coalesce(last_error, '') LIKE '$error_like' FROM zb_metrics WHERE stream = '$stream'}),
		$name)
	  or diag($node->safe_psql('postgres', q{SELECT stream, state, last_error FROM zb_metrics}));
}

# --- nothing crashed
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal/, 'no process was terminated by a signal');
unlike($log, qr/PANIC/, 'no PANIC');

$node->stop;
done_testing();
