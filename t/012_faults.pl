# The fault matrix.  Each case inserts rows, breaks something
# while they are being delivered, repairs it, and ends with: every row
# inserted is in the emulator's table, the queue is empty, and duplicates
# (at-least-once) are no more than one worker transaction's rows.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use ZerobusEmulator;
use ZerobusNode;

my $MAX_INFLIGHT = 4000;		# rows per worker transaction: the duplicate bound

my $emu = ZerobusEmulator->new(args => ['--close-signal-duration', '1']);
my $table = 'main.default.faults';
$emu->create_table($table,
	[ { name => 'id', type => 'BIGINT', nullable => JSON::PP::false }, { name => 'payload', type => 'STRING' } ]);

my $node = ZerobusNode::create('faults', $emu,
	conf => "zerobus.poll_interval = '200ms'\nrestart_after_crash = on");
$node->safe_psql('postgres', qq{
	CREATE TABLE q (id bigint NOT NULL, payload text);
	SELECT zerobus.create_stream('f', 'q', 'emu', '$table', batch_rows => 500,
	                             max_inflight => $MAX_INFLIGHT, ack_timeout => '3s');
});

my $next_id = 1;

# Insert n rows in transactions of 500; returns the id range.
sub insert_rows
{
	my ($n) = @_;
	my ($lo, $hi) = ($next_id, $next_id + $n - 1);
	my $sql = '';
	for (my $a = $lo; $a <= $hi; $a += 500)
	{
		my $b = $a + 499 > $hi ? $hi : $a + 499;
		$sql .= "INSERT INTO q SELECT i, 'row ' || i FROM generate_series($a, $b) i;\n";
	}
	$node->safe_psql('postgres', $sql);
	$next_id = $hi + 1;
	return ($lo, $hi);
}

sub wait_delivered
{
	my ($name) = @_;
	# the cluster may be restarting: retry the flush until it answers
	my $ok = $node->poll_query_until('postgres',
		q{SELECT zerobus.flush('f', '120s') >= 0}, 't');
	ok($ok, "$name: flush returned");
}

# The end state every case must reach, for the ids the case inserted.
# Duplicates: each failure (a stream that ended, a crash) can repeat at
# most the rows in flight at that moment, one worker transaction's rows.
my $case_first = 1;
my $reconnects_before = 0;

sub check_all
{
	my ($name, %opt) = @_;
	my ($lo, $hi) = ($case_first, $next_id - 1);
	my $r = $emu->sql(qq{SELECT count(DISTINCT id), count(*) FROM "$table" WHERE id BETWEEN $lo AND $hi})->{rows}[0];
	my ($distinct, $total) = @$r;
	my $reconnects = $node->safe_psql('postgres', 'SELECT reconnects FROM zb_metrics');
	my $failures = $opt{crash} ? 1 : $reconnects - $reconnects_before;
	is($distinct, $hi - $lo + 1, "$name: every row inserted is in the emulator's table");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM q'), '0', "$name: the queue is empty");
	my $dups = $total - $distinct;
	cmp_ok($dups, '<=', $MAX_INFLIGHT * $failures,
		"$name: duplicates ($dups) within one transaction's rows per failure ($failures)");
	note("$name: $dups duplicate(s) after $failures failure(s)");
	$case_first = $next_id;
	$reconnects_before = $reconnects;
}

# Faults of the emulator apply to streams opened after them: restart the
# stream's worker so that it opens a new one.
# The faults are set while no worker runs, so only the new worker's streams
# meet them.
sub restart_stream
{
	my ($faults) = @_;
	$node->safe_psql('postgres', q{SELECT zerobus.stop_stream('f')});
	$emu->wait_for(sub { $node->safe_psql('postgres', 'SELECT workers_running FROM zb_metrics') eq '0' });
	$emu->clear_faults;
	$emu->faults($faults) if $faults;
	$node->safe_psql('postgres', q{SELECT zerobus.start_stream('f')});
}

sub worker_pid
{
	return $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE application_name = 'zerobus_fdw stream f'});
}

sub wait_inflight
{
	return $emu->wait_for(sub {
		$node->safe_psql('postgres', q{SELECT rows_in_flight > 0 FROM zb_metrics}) eq 't' }, 30);
}

# --- baseline
insert_rows(2000);
wait_delivered('baseline');
check_all('baseline');

# --- a worker killed with SIGKILL in the middle of a batch (the postmaster
# restarts every process: a crash)
$emu->faults({ ack_delay_ms => 1500 });
insert_rows(6000);
ok(wait_inflight(), 'kill -9: a batch is in flight');
my $pid = worker_pid();
kill 'KILL', $pid;    # the test's own kill: not a crash (test/perl/ZerobusCrashCheck.pm)
$emu->clear_faults;
wait_delivered('kill -9');
check_all('kill -9 mid-batch', crash => 1);

# --- postmaster immediate stop and restart
$emu->faults({ ack_delay_ms => 1500 });
insert_rows(6000);
ok(wait_inflight(), 'immediate stop: a batch is in flight');
$node->stop('immediate');
$emu->clear_faults;
$node->start;
wait_delivered('immediate stop');
check_all('postmaster immediate stop and restart', crash => 1);

# --- the emulator (the service) restarts; its table survives
$emu->faults({ ack_delay_ms => 1000 });
insert_rows(4000);
ok(wait_inflight(), 'service restart: a batch is in flight');
$emu->stop('KILL');
insert_rows(2000);
ok($node->poll_query_until('postgres', q{SELECT state IN ('backoff', 'connecting', 'error') FROM zb_metrics}),
	'while the service is down the stream backs off');
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM q'), '>', 0, 'and the queue grows');
$emu->start;
wait_delivered('service restart');
check_all('emulator restart');

# --- the stream ends with UNAVAILABLE in the middle of the load
restart_stream({ end_stream => { after_requests => 3, status => 'UNAVAILABLE',
	message => 'the service is restarting', streams => 2 } });
insert_rows(8000);
wait_delivered('UNAVAILABLE');
check_all('UNAVAILABLE mid-stream');
like($node->safe_psql('postgres', 'SELECT last_error FROM zb_metrics'), qr/UNAVAILABLE: the service is restarting/,
	'UNAVAILABLE: the error is reported');
$emu->clear_faults;

# --- acknowledgements withheld past the ack timeout
restart_stream({ withhold_acks => JSON::PP::true });
insert_rows(3000);
ok($emu->wait_for(sub { $node->safe_psql('postgres', 'SELECT last_error FROM zb_metrics') =~ /no durable acknowledgement within 3000 ms/ }, 30),
	'withheld acks: the ack timeout fires');
is($node->safe_psql('postgres', 'SELECT count(*) >= 3000 FROM q'), 't', 'withheld acks: the rows stay queued');
$emu->clear_faults;
wait_delivered('withheld acks');
check_all('acks withheld past the timeout');

# --- CloseStreamSignal under load: drain, move to a new stream, no error
restart_stream({ close_signal => { after_requests => 5, duration_ms => 1000, streams => 3 } });
my $reconnects = $node->safe_psql('postgres', 'SELECT reconnects FROM zb_metrics');
insert_rows(20000);
wait_delivered('close signal');
check_all('CloseStreamSignal under load');
# a stream opened when the rows ran out never reaches 5 requests, and the
# last rotation may wait for the next batch: at least two signals, each
# (but possibly the last) followed by a new stream
my $signals = $emu->stats->{close_signals_sent};
cmp_ok($signals, '>=', 2, 'close signal: the emulator sent them');
cmp_ok($node->safe_psql('postgres', 'SELECT reconnects FROM zb_metrics'), '>=', $reconnects + $signals - 1,
	'close signal: the worker moved to new streams');
$emu->clear_faults;

# --- tokens expire while streaming: a worker keeps fetching fresh ones
# (tokens of two seconds, streams that the service ends every 2 requests)
restart_stream({ token_ttl_s => 2,
	end_stream => { after_requests => 2, status => 'UNAVAILABLE', message => 'rotate', streams => 1000 } });
my $tokens = $emu->stats->{tokens_issued};
# keep rows flowing until two tokens have expired and been replaced (tokens
# live 2 s: a few seconds of traffic), within a deadline
for (1 .. 60)
{
	insert_rows(500);
	last if $emu->wait_for(sub { $emu->stats->{tokens_issued} >= $tokens + 2 }, 1);
}
wait_delivered('token expiry');
check_all('tokens expiring mid-stream');
cmp_ok($emu->stats->{tokens_issued}, '>=', $tokens + 2, 'token expiry: fresh tokens were fetched');
$emu->clear_faults;

# --- the service forgets every token (as after a restart of its auth):
# the worker's cached token is refused, dropped and fetched again
restart_stream({ end_stream => { after_requests => 2, status => 'UNAVAILABLE', message => 'rotate', streams => 1 } });
insert_rows(500);
wait_delivered('before revocation');
# the open stream ends at its second request; the worker's token is revoked first
$emu->faults({ expire_tokens => JSON::PP::true,
	end_stream => { after_requests => 1, status => 'UNAVAILABLE', message => 'rotate', streams => 1 } });
$tokens = $emu->stats->{tokens_issued};
insert_rows(3000);
wait_delivered('token revoked');
check_all('token refused mid-stream');
cmp_ok($emu->stats->{tokens_issued}, '>', $tokens, 'token refused: a new token was fetched');
$emu->clear_faults;

# --- the token endpoint fails for a while
restart_stream({ token_endpoint_fail => { status => 500, count => 6 } });
insert_rows(3000);
wait_delivered('token endpoint 500s');
check_all('token endpoint failing for a while');
cmp_ok($emu->stats->{token_failures}, '>=', 6, 'token endpoint: the failures happened');
$emu->clear_faults;

# --- a poison row: dead-lettered, every other row delivered
$emu->faults({ reject_record => { contains => 'POISON' } });
my ($lo, $hi) = ($next_id, $next_id + 2999);
$node->safe_psql('postgres', qq{
	INSERT INTO q SELECT i, CASE WHEN i = $lo + 1234 THEN 'POISON pill' ELSE 'row ' || i END
	  FROM generate_series($lo, $hi) i});
$next_id = $hi + 1;
wait_delivered('poison');
is($node->safe_psql('postgres', q{SELECT count(*) FROM q}), '0', 'poison: the queue is empty');
is($node->safe_psql('postgres', q{SELECT (record->>'id')::bigint - } . $lo . q{ || ' ' || (error LIKE 'INVALID_ARGUMENT:%') FROM zerobus.dead_letters}),
	'1234 true', 'poison: exactly the poison row is a dead letter, with the service\'s error');
is($emu->sql(qq{SELECT count(DISTINCT id) FROM "$table" WHERE id BETWEEN $lo AND $hi})->{rows}[0][0],
	2999, 'poison: the other 2999 rows were delivered');
$emu->clear_faults;
$case_first = $next_id;

# --- a poison row among three (one batch, bisected down to single rows):
# only it is a dead letter; the other two are delivered and not reported
# as refused
$emu->faults({ reject_record => { contains => 'POISON' } });
$lo = $next_id;
$node->safe_psql('postgres', qq{DELETE FROM zerobus.dead_letters;
	INSERT INTO q VALUES ($lo, 'row $lo'), ($lo + 1, 'POISON small'), ($lo + 2, 'row ' || $lo + 2)});
$next_id = $lo + 3;
wait_delivered('small poison');
is($node->safe_psql('postgres', q{SELECT string_agg(record->>'id', ',' ORDER BY id) FROM zerobus.dead_letters}),
	$lo + 1, 'poison among three: only the poison row is a dead letter');
is(join(',', map { $_->[0] } @{ $emu->sql(qq{SELECT DISTINCT id FROM "$table" WHERE id BETWEEN $lo AND $lo + 2 ORDER BY id})->{rows} }),
	join(',', $lo, $lo + 2), 'poison among three: the other two were delivered');
$emu->clear_faults;
$case_first = $next_id;

# --- TLS with a wrong CA: a clear error, nothing lost; fixed, delivered
$node->safe_psql('postgres', sprintf(q{ALTER SERVER emu OPTIONS (SET zerobus_endpoint '%s', ADD ca_file '%s')},
	$emu->grpcs_url, $emu->wrong_ca_file));
ok($emu->wait_for(sub { $node->safe_psql('postgres', 'SELECT last_error FROM zb_metrics') =~ /TLS failure/ }, 30),
	'wrong CA: a TLS error is reported');
is($node->safe_psql('postgres', 'SELECT state FROM zb_metrics'), 'error', 'wrong CA: error state');
insert_rows(1000);
# make the worker try again now that rows wait (an ALTER SERVER retries at
# once), and wait until that attempt has failed too
my $failed_at = $node->safe_psql('postgres', 'SELECT last_error_at FROM zb_metrics');
$node->safe_psql('postgres', sprintf(q{ALTER SERVER emu OPTIONS (SET ca_file '%s')}, $emu->wrong_ca_file));
ok($node->poll_query_until('postgres', qq{SELECT last_error_at > '$failed_at' AND last_error ~ 'TLS failure' FROM zb_metrics}),
	'wrong CA: a new attempt with the rows queued fails too');
is($node->safe_psql('postgres', 'SELECT count(*) FROM q'), '1000', 'wrong CA: the rows wait');
$node->safe_psql('postgres', sprintf(q{ALTER SERVER emu OPTIONS (SET ca_file '%s')}, $emu->ca_file));
wait_delivered('right CA');
check_all('TLS with a wrong CA, then the right one');

$node->stop;
done_testing();
