# DDL under load (issue 8, repros 4 and 5 and their neighbours; docs/DESIGN.md,
# "Workers: errors, states and recovery"): two streams (three and two workers) and a generator
# deliver while the test alters, renames and drops their queues, renames
# their schema and revokes USAGE on it, revokes USAGE on the server, drops
# the user mapping, breaks and drops the server, reassigns and drops the
# owner role, and stops, starts, alters and drops the streams; it also
# terminates a worker in every state.
#
# Each breakage must reach its state in zb_metrics (state and last_error
# naming the object), and delivery must resume by itself once the object or
# grant is back (checked in the emulator's table), or the stream be gone
# with its queue.  Nothing crashes (the crash check of every TAP test), and
# no row is lost: an AFTER INSERT trigger notes every row that entered a
# queue, and every one of them reaches the emulator but for those still in a
# queue the test dropped on purpose (noted at the drop, under lock).
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use ZerobusEmulator;
use ZerobusNode;

# acks take a while: the DDL meets batches in flight
my $emu = ZerobusEmulator->new(args => [ '--ack-delay-ms', '50' ]);
my $node = ZerobusNode::create('ddl', $emu,
	conf => "zerobus.poll_interval = '200ms'\nrestart_after_crash = on");

# A superuser statement; retried while the cluster restarts (a crash is
# reported by the crash check, the test goes on).
sub su
{
	my ($sql) = @_;
	my $deadline = time + 60;
	while (1)
	{
		my ($ret, $out, $err) = $node->psql('postgres', $sql);
		return $out if $ret == 0;
		die "su failed: $sql\n$err"
		  if time > $deadline
		  || $err !~ /could not connect|terminating connection|server closed the connection|database system is|no connection to the server/;
		usleep(200_000);
	}
}

# Run SQL, return (ok, stderr) without dying.
sub try_su
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql);
	return ($ret == 0, $err);
}

sub poll
{
	my ($cond, $secs) = @_;
	my $deadline = time + ($secs // 30);
	while (time < $deadline)
	{
		my $v = eval { $cond->() };
		return 1 if $v;
		usleep(200_000);
	}
	return 0;
}

sub metrics
{
	my ($stream) = @_;
	return su(qq{SELECT state || '|' || coalesce(last_error, '') FROM zb_metrics WHERE stream = '$stream'});
}

# Wait for a stream's state, with a last_error matching $re.
sub state_is
{
	my ($stream, $state, $re, $name) = @_;
	my $seen;
	ok(poll(sub { $seen = metrics($stream); $seen =~ /^\Q$state\E\|/ && $seen =~ $re }),
		"$name: $stream in state $state, last_error naming the problem")
	  or diag("last seen: $seen");
}

sub workers_of
{
	my ($stream, $kind) = @_;
	$kind //= 'stream';
	return grep { length } split /\n/,
	  su(qq{SELECT pid FROM pg_stat_activity WHERE application_name = 'zerobus_fdw $kind $stream' ORDER BY pid});
}

# pg_terminate_backend of one of a stream's workers in the current state:
# it ends, and the launcher starts another.
sub terminate_in_state
{
	my ($stream, $state) = @_;
	my @before = workers_of($stream);
	my $want = su(qq{SELECT workers FROM zb_metrics WHERE stream = '$stream'});
	my $pid = $before[0];
	ok(defined $pid, "$state: $stream has a worker to terminate") or return;
	su("SELECT pg_terminate_backend($pid)");
	ok(poll(sub { su("SELECT count(*) FROM pg_stat_activity WHERE pid = $pid") eq '0' }, 10),
		"$state: pg_terminate_backend ends a worker in state $state within seconds");
	ok(poll(sub { my @now = workers_of($stream); @now == $want && !grep { $_ == $pid } @now }, 30),
		"$state: the launcher starts another");
}

# --- rows and what became of them
my $next_id = 1;

sub load
{
	my ($n, $table, $extra) = @_;
	$table //= 'app.q';
	my ($lo, $hi) = ($next_id, $next_id + $n - 1);
	$next_id += $n;
	my $cols = $extra ? 'id, payload, extra' : 'id, payload';
	my $vals = $extra ? "i, 'row ' || i, '$extra'" : "i, 'row ' || i";
	su("INSERT INTO $table ($cols) SELECT $vals FROM generate_series($lo, $hi) i");
	return $hi;
}

sub delivered_ids { return $emu->sql(q{SELECT count(DISTINCT id) FROM "main.default.load"})->{rows}[0][0]; }

# every row of app.q so far delivered (the queue drained)
sub s1_caught_up
{
	my ($name, $secs) = @_;
	my $want = $next_id - 1 - su(q{SELECT count(*) FROM audit.dropped WHERE q = 'q'});
	my $got;
	ok(poll(sub { ($got = delivered_ids()) == $want }, $secs // 60), "$name: every row of s1's queue delivered")
	  or diag("delivered $got of $want; " . metrics('s1'));
}

sub generated_count { return $emu->count('main.default.orders_load'); }

sub s2_resumes
{
	my ($name) = @_;
	my $before = generated_count();
	ok(poll(sub { generated_count() > $before + 10 }, 60), "$name: the generator's rows flow again")
	  or diag(metrics('s2'));
}

# ------------------------------------------------------------------
# Setup: owner app (LOGIN), schema app, a queue of the test's rows (s1,
# three workers) and a generator's queue (s2, two workers)
# ------------------------------------------------------------------
my $plain = [
	{ name => 'id', type => 'BIGINT', nullable => JSON::PP::false },
	{ name => 'payload', type => 'STRING' },
	{ name => 'extra', type => 'STRING' } ];
$emu->create_table('main.default.load', $plain);
my $delta = su(q{SELECT delta_columns FROM zerobus.generator_profiles() WHERE profile = 'orders'});
$emu->create_table('main.default.orders_load', [ (map {
	my ($name, $type, $nn) = /^\s*(\w+)\s+(\S+)(\s+NOT NULL)?/;
	{ name => $name, type => $type, nullable => $nn ? JSON::PP::false : JSON::PP::true }
} split /,(?![^(]*\))/, $delta), { name => 'extra', type => 'STRING' } ]);

my $creds = q{client_id 'zb-test-client', client_secret 'zb-test-secret'};
my $server_opts = sprintf("workspace_url '%s', zerobus_endpoint '%s', warehouse_id 'emulator-wh'",
	$emu->http_url, $emu->grpc_url);
su(qq{
	CREATE ROLE app LOGIN;
	CREATE ROLE app_b LOGIN;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA zerobus TO app, app_b;
	GRANT USAGE ON FOREIGN SERVER emu TO app, app_b;
	CREATE USER MAPPING FOR app SERVER emu OPTIONS ($creds);
	CREATE USER MAPPING FOR app_b SERVER emu OPTIONS ($creds);
	CREATE SCHEMA audit;
	CREATE TABLE audit.ledger (q text, k text);
	CREATE TABLE audit.dropped (q text, k text);
	GRANT USAGE ON SCHEMA audit TO PUBLIC;
	GRANT INSERT ON audit.ledger TO PUBLIC;
	CREATE FUNCTION audit.note() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog AS \$\$
	BEGIN
	  IF TG_ARGV[0] = 'q' THEN
	    INSERT INTO audit.ledger SELECT 'q', id::text FROM new_rows;
	  ELSE
	    INSERT INTO audit.ledger SELECT 'gq', order_id FROM new_rows;
	  END IF;
	  RETURN NULL;
	END \$\$;
	CREATE SCHEMA app AUTHORIZATION app;
	SET ROLE app;
	CREATE TABLE app.q (id bigint NOT NULL, payload text);
	CREATE TRIGGER ledger AFTER INSERT ON app.q REFERENCING NEW TABLE AS new_rows
	  FOR EACH STATEMENT EXECUTE FUNCTION audit.note('q');
	SELECT zerobus.generator_create_queue('orders', 'app.gq');
	CREATE TRIGGER ledger AFTER INSERT ON app.gq REFERENCING NEW TABLE AS new_rows
	  FOR EACH STATEMENT EXECUTE FUNCTION audit.note('gq');
	SELECT zerobus.create_stream('s1', 'app.q', 'emu', 'main.default.load',
	                             workers => 3, batch_rows => 200, max_inflight => 1000);
	SELECT zerobus.create_stream('s2', 'app.gq', 'emu', 'main.default.orders_load',
	                             workers => 2, batch_rows => 200, max_inflight => 1000);
	SELECT zerobus.generator_start('s2', 'orders', throttle => 30);
	RESET ROLE;
});

load(5000);
s1_caught_up('baseline');
s2_resumes('baseline');
is(su(q{SELECT string_agg(stream || ':' || workers_running, ',' ORDER BY stream) FROM zb_metrics}),
	's1:3,s2:2', 'three and two workers run');

# ------------------------------------------------------------------
# The queues' columns change under load: added, dropped (the schema is
# sent again), one no record can carry (paused, C4)
# ------------------------------------------------------------------
load(3000);
su(q{ALTER TABLE app.q ADD COLUMN extra text; ALTER TABLE app.gq ADD COLUMN extra text DEFAULT 'generated'});
my $with_extra = load(2000, 'app.q', 'added');
s1_caught_up('ADD COLUMN under load');
ok(poll(sub { $emu->sql(q{SELECT count(*) FROM "main.default.orders_load" WHERE extra = 'generated'})->{rows}[0][0] > 0 }, 60),
	'ADD COLUMN with a default on the generator\'s queue: its values arrive');
is($emu->sql(qq{SELECT count(*) FROM "main.default.load" WHERE extra = 'added' AND id <= $with_extra})->{rows}[0][0], 2000,
	'ADD COLUMN: the new column\'s values arrive');
su(q{ALTER TABLE app.q DROP COLUMN extra; ALTER TABLE app.gq DROP COLUMN extra});
load(2000);
s1_caught_up('DROP COLUMN under load');
s2_resumes('DROP COLUMN under load');

load(2000);
su(q{ALTER TABLE app.q ADD COLUMN spot point});
load(500);
state_is('s1', 'paused', qr/spot/, 'a column no record can carry');
terminate_in_state('s1', 'paused');
state_is('s1', 'paused', qr/spot/, 'the restarted worker');
su(q{ALTER TABLE app.q DROP COLUMN spot});
s1_caught_up('the column dropped again');

# ------------------------------------------------------------------
# Renames: the queue and its schema; streams follow their table
# ------------------------------------------------------------------
load(2000);
su(q{ALTER TABLE app.q RENAME TO q_renamed});
load(1000, 'app.q_renamed');
su(q{ALTER SCHEMA app RENAME TO app_renamed});
load(1000, 'app_renamed.q_renamed');
s1_caught_up('queue and schema renamed under load');
s2_resumes('schema renamed under load');
su(q{ALTER SCHEMA app_renamed RENAME TO app; ALTER TABLE app.q_renamed RENAME TO q});
load(1000);
s1_caught_up('renamed back');

# ------------------------------------------------------------------
# Grants and objects taken away and given back (C4, C5); a worker
# terminated in state error
# ------------------------------------------------------------------
sub breaks_and_recovers
{
	my (%c) = @_;
	load(3000);    # rows in flight when it breaks
	su($c{break});
	load(500);     # rows that must wait
	for my $s (@{ $c{streams} })
	{
		state_is($s, $c{state}, $c{error}, $c{name});
	}
	if ($c{generator})
	{
		ok(poll(sub { su(q{SELECT to_jsonb(g) ->> 'last_error' FROM zerobus.generator_status() g WHERE stream = 's2'}) ne '' }),
			"$c{name}: the generator reports it in generator_status().last_error");
	}
	terminate_in_state('s1', $c{state}) if $c{terminate};
	su($c{fix});
	s1_caught_up("$c{name}, given back");
	s2_resumes("$c{name}, given back") if grep { $_ eq 's2' } @{ $c{streams} };
}

breaks_and_recovers(name => 'USAGE on the queue\'s schema revoked', streams => [ 's1', 's2' ], generator => 1,
	terminate => 1, state => 'error', error => qr/schema app/i,
	break => q{REVOKE USAGE ON SCHEMA app FROM app}, fix => q{GRANT USAGE ON SCHEMA app TO app});
breaks_and_recovers(name => 'USAGE on the server revoked', streams => [ 's1', 's2' ],
	state => 'error', error => qr/server emu/i,
	break => q{REVOKE USAGE ON FOREIGN SERVER emu FROM app}, fix => q{GRANT USAGE ON FOREIGN SERVER emu TO app});
breaks_and_recovers(name => 'the owner\'s user mapping dropped', streams => [ 's1', 's2' ],
	state => 'error', error => qr/user mapping/i,
	break => q{DROP USER MAPPING FOR app SERVER emu},
	fix => qq{CREATE USER MAPPING FOR app SERVER emu OPTIONS ($creds)});
breaks_and_recovers(name => 'DELETE on the queue revoked from its owner', streams => [ 's1' ],
	state => 'error', error => qr/DELETE/,
	break => q{REVOKE DELETE ON app.q FROM app}, fix => q{GRANT DELETE ON app.q TO app});
# a closed port: retryable, so 'backoff'
my $closed = do { require IO::Socket::INET; my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0); my $p = $s->sockport; close $s; $p };
breaks_and_recovers(name => 'the server\'s endpoint altered to a closed port', streams => [ 's1', 's2' ],
	terminate => 1, state => 'backoff', error => qr/./,
	break => qq{ALTER SERVER emu OPTIONS (SET zerobus_endpoint 'http://127.0.0.1:$closed')},
	fix => sprintf(q{ALTER SERVER emu OPTIONS (SET zerobus_endpoint '%s')}, $emu->grpc_url));

# ------------------------------------------------------------------
# A worker terminated while streaming and while idle
# ------------------------------------------------------------------
$emu->faults({ ack_delay_ms => 1500 });
load(3000);
ok(poll(sub { metrics('s1') =~ /^streaming\|/ && su(q{SELECT rows_in_flight > 0 FROM zb_metrics WHERE stream = 's1'}) eq 't' }),
	'streaming: s1 has rows in flight');
terminate_in_state('s1', 'streaming');
$emu->clear_faults;
s1_caught_up('a worker terminated while streaming');
ok(poll(sub { metrics('s1') =~ /^idle\|/ }), 'idle: s1 drained');
terminate_in_state('s1', 'idle');
load(500);
s1_caught_up('a worker terminated while idle');

# ------------------------------------------------------------------
# The owner role: DROP ROLE refused while it owns the queues (C1);
# REASSIGN OWNED moves the streams; DROP OWNED and DROP ROLE then succeed
# ------------------------------------------------------------------
load(3000);
my ($dropped, $err) = try_su(q{DROP ROLE app});
ok(!$dropped, 'DROP ROLE of the queues\' owner is refused');
like($err, qr/owner of (table|schema)/, 'because it owns them');
su(q{REASSIGN OWNED BY app TO app_b});
is(su(q{SELECT string_agg(name || ':' || owner, ',' ORDER BY name) FROM zerobus.streams}), 's1:app_b,s2:app_b',
	'REASSIGN OWNED: the streams belong to the new owner');
su(q{DROP OWNED BY app; DROP ROLE app});
is(su(q{SELECT count(*) FROM pg_roles WHERE rolname = 'app'}), '0', 'then DROP OWNED and DROP ROLE succeed');
load(1000);
s1_caught_up('owner reassigned and dropped under load');
s2_resumes('owner reassigned and dropped under load');

# ------------------------------------------------------------------
# stop, start, alter under load
# ------------------------------------------------------------------
load(3000);
su(q{SELECT zerobus.alter_stream('s1', workers => 1, batch_rows => 50)});
ok(poll(sub { scalar(workers_of('s1')) == 1 }), 'alter_stream(workers => 1): one worker');
su(q{SELECT zerobus.alter_stream('s1', workers => 4, max_inflight => 500)});
ok(poll(sub { scalar(workers_of('s1')) == 4 }), 'alter_stream(workers => 4): four workers');
load(2000);
su(q{SELECT zerobus.stop_stream('s1'); SELECT zerobus.stop_stream('s2')});
ok(poll(sub { !workers_of('s1') && !workers_of('s2') && !workers_of('s2', 'generator') }),
	'stop_stream under load: no worker, no generator');
is(metrics('s1') =~ /^stopped\|/ ? 1 : 0, 1, 'stop_stream: state stopped');
my $waiting = load(1000);
cmp_ok(su(q{SELECT count(*) FROM app.q}), '>=', 1000, 'rows wait while stopped');
su(q{SELECT zerobus.start_stream('s1'); SELECT zerobus.start_stream('s2')});
s1_caught_up('started again');
s2_resumes('started again');

# ------------------------------------------------------------------
# The server dropped with CASCADE (its user mappings go with it), then
# created again
# ------------------------------------------------------------------
load(3000);
su(q{DROP SERVER emu CASCADE});
load(500);
state_is($_, 'error', qr/emu/, 'DROP SERVER CASCADE') for qw(s1 s2);
terminate_in_state('s2', 'error');
su(qq{
	CREATE SERVER emu FOREIGN DATA WRAPPER zerobus_fdw OPTIONS ($server_opts);
	GRANT USAGE ON FOREIGN SERVER emu TO app_b;
	CREATE USER MAPPING FOR app_b SERVER emu OPTIONS ($creds);
	CREATE USER MAPPING FOR CURRENT_USER SERVER emu OPTIONS ($creds);
});
s1_caught_up('server created again');
s2_resumes('server created again');

# ------------------------------------------------------------------
# drop_stream under load (the rows stay queued), a new stream for them;
# then the queues dropped under load: their streams (and the generator)
# go with them (C2)
# ------------------------------------------------------------------
load(3000);
su(q{SELECT zerobus.drop_stream('s1')});
ok(poll(sub { !workers_of('s1') && su(q{SELECT count(*) FROM zb_metrics WHERE stream = 's1'}) eq '0' }),
	'drop_stream under load: workers and metrics gone');
load(500);
su(q{SET ROLE app_b; SELECT zerobus.create_stream('s1', 'app.q', 'emu', 'main.default.load', workers => 2)});
s1_caught_up('a new stream for the rows left queued');

# the generator's queue dropped while it generates (repro 4)
load(1000);
ok(poll(sub { su(q{SELECT running FROM zerobus.generator_status() WHERE stream = 's2'}) eq 't' }),
	'the generator runs');
su(q{BEGIN;
	LOCK TABLE app.gq IN ACCESS EXCLUSIVE MODE;
	INSERT INTO audit.dropped SELECT 'gq', order_id FROM app.gq;
	DROP TABLE app.gq;
	COMMIT;});
ok(poll(sub { su(q{SELECT count(*) FROM zerobus.streams WHERE name = 's2'}) eq '0' }),
	'DROP TABLE of a generator\'s queue under load: its stream is gone');
ok(poll(sub { !workers_of('s2') && !workers_of('s2', 'generator') }), 'and its workers and generator');

# the owner dropped with everything it owns: the schema, the queue, the stream
load(2000);
su(q{BEGIN;
	LOCK TABLE app.q IN ACCESS EXCLUSIVE MODE;
	INSERT INTO audit.dropped SELECT 'q', id::text FROM app.q;
	DROP OWNED BY app_b;
	COMMIT;});
ok(poll(sub { su(q{SELECT count(*) FROM zerobus.streams}) eq '0' }), 'DROP OWNED under load: the last stream is gone');
ok(poll(sub { su(q{SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'zerobus_fdw %' AND application_name NOT IN ('zerobus_fdw launcher', 'zerobus_fdw scan')}) eq '0' }),
	'no stream or generator process is left');

# ------------------------------------------------------------------
# No row lost: every row that entered a queue arrived, but those the test
# dropped with their queue
# ------------------------------------------------------------------
s1_caught_up('at the end');
my %arrived;
$arrived{ 'q/' . $_->[0] } = 1 for @{ $emu->sql(q{SELECT DISTINCT id FROM "main.default.load"})->{rows} };
$arrived{ 'gq/' . $_->[0] } = 1 for @{ $emu->sql(q{SELECT DISTINCT order_id FROM "main.default.orders_load"})->{rows} };
my @missing = grep { !$arrived{$_} } split /\n/, su(q{
	SELECT q || '/' || k FROM audit.ledger EXCEPT SELECT q || '/' || k FROM audit.dropped ORDER BY 1});
my $entered = su(q{SELECT count(*) FROM audit.ledger});
cmp_ok($entered, '>', 50000, "rows entered the queues: $entered");
is(scalar @missing, 0, 'no row of a queue was lost') or diag('missing: ' . join(', ', @missing[0 .. ($#missing < 19 ? $#missing : 19)]));
note('rows dropped with their queue on purpose: ' . su(q{SELECT count(*) FROM audit.dropped}));

$node->stop;
done_testing();
