# Duplicates are bounded by max_inflight, and the dedup key finds them.
#
# Four streams run side by side, each into its own Delta table with a
# dedup_column: max_inflight 1000 and the default 50,000, one worker and
# several, PROTO and JSON records.  Each case of the fault matrix inserts
# rows, breaks something while they are in flight, repairs it, waits until
# everything is delivered, and then, per stream, from what the service
# stored:
#   - nothing is lost: every id inserted arrived;
#   - re-sent rows carry the same key (no id has two keys) and different
#     rows different keys (as many keys as ids);
#   - duplicates (rows stored minus distinct keys) are at most max_inflight
#     per worker per failure: a crash or the service going away fails every
#     worker once, a stream that ended fails one worker once (counted by
#     zb_metrics.reconnects).
# The duplicates measured are printed (diag) as a table at the end.
use strict;
use warnings;

use JSON::PP;
use Test::More;
use Time::HiRes qw(time);
use ZerobusEmulator;
use ZerobusNode;

my $DEFAULT_MI = 50000;
my @streams = (
	{ name => 'small1', mi => 1000, workers => 1, format => 'proto', batch => 250 },
	{ name => 'small3', mi => 1000, workers => 3, format => 'json', batch => 250 },
	{ name => 'dflt1', mi => $DEFAULT_MI, workers => 1, format => 'json', batch => 5000 },
	{ name => 'dflt2', mi => $DEFAULT_MI, workers => 2, format => 'proto', batch => 5000 },
);

my $emu = ZerobusEmulator->new;
my $node = ZerobusNode::create('dups', $emu,
	conf => "zerobus.poll_interval = '200ms'\nrestart_after_crash = on");

for my $s (@streams)
{
	my $n = $s->{name};
	$emu->create_table("main.default.$n", [
		{ name => 'id', type => 'BIGINT', nullable => JSON::PP::false },
		{ name => 'payload', type => 'STRING' },
		{ name => 'zb_key', type => 'STRING', nullable => JSON::PP::false } ]);
	# max_inflight left out for the default streams: the default is what is tested
	my $mi = $s->{mi} == $DEFAULT_MI ? '' : ", max_inflight => $s->{mi}";
	$node->safe_psql('postgres', qq{
		CREATE TABLE q_$n (id bigint NOT NULL, payload text);
		SELECT zerobus.create_stream('$n', 'q_$n', 'emu', 'main.default.$n',
		    record_format => '$s->{format}', workers => $s->{workers}, batch_rows => $s->{batch},
		    ack_timeout => '60s', dedup_column => 'zb_key' $mi);
	});
	$s->{next_id} = 1;
}
is($node->safe_psql('postgres', q{SELECT string_agg(name || ':' || max_inflight, ' ' ORDER BY name) FROM zerobus.streams}),
	'dflt1:50000 dflt2:50000 small1:1000 small3:1000', 'the streams have the max_inflight under test');

my %case_first;			# per stream: the first id of the current case
my %reconnects_before;
my @report;

sub metric
{
	my ($s, $col) = @_;
	return $node->safe_psql('postgres', "SELECT $col FROM zb_metrics WHERE stream = '$s->{name}'");
}

# Insert rows into each stream's queue, one statement per stream (so that a
# worker finds a whole transaction's worth at once); $count->($s) says how
# many.  $poison->{name}, if given, is the id whose payload is 'POISON'.
sub insert_rows
{
	my ($count, $poison) = @_;
	my $sql = '';
	for my $s (@streams)
	{
		my $n = $count->($s);
		my ($lo, $hi) = ($s->{next_id}, $s->{next_id} + $n - 1);
		my $p = $poison ? $poison->{ $s->{name} } : -1;
		$sql .= "INSERT INTO q_$s->{name} SELECT i, CASE WHEN i = $p THEN 'POISON' ELSE repeat('x', 100) || i END"
		  . " FROM generate_series($lo, $hi) i;\n";
		$s->{next_id} = $hi + 1;
	}
	$node->safe_psql('postgres', $sql);
}

# Light: a few transactions per worker.  Heavy: more than every worker can
# have in flight (a default stream's workers each get more than 50,000 rows of
# their share), so that a failure finds full transactions to repeat.
sub light { my ($s) = @_; return $s->{mi} == $DEFAULT_MI ? 12000 : 6 * $s->{mi} * $s->{workers}; }

sub heavy
{
	my ($s) = @_;
	return $s->{mi} == $DEFAULT_MI ? ($s->{mi} + 10000) * $s->{workers} : $s->{mi} * $s->{workers} + 10000;
}

# The queues are filled while the streams are stopped, and the streams start
# with acks slowed down to 30 s: the first transactions of the new workers
# (no history of the queue) are in flight, and the default streams' are full.
# (An ack's delay is fixed when its request arrives: clearing the fault
# before the failure speeds up only the re-sent requests.)
sub heavy_start
{
	my ($case) = @_;
	restart_all($case, { ack_delay_ms => 30000 }, undef, sub { insert_rows(\&heavy) });
}

sub flush_all
{
	my ($case) = @_;
	for my $s (@streams)
	{
		# the cluster may be restarting: retry until flush answers
		ok($node->poll_query_until('postgres', "SELECT zerobus.flush('$s->{name}', '180s') >= 0", 't'),
			"$case: $s->{name} flushed");
	}
}

# Every stream (or those named) has rows sent and not yet acknowledged.
sub wait_in_flight
{
	my ($case, @names) = @_;
	@names = map { $_->{name} } @streams unless @names;
	my $list = join(', ', map { "'$_'" } @names);
	ok($emu->wait_for(sub {
		$node->safe_psql('postgres',
			"SELECT count(*) FILTER (WHERE rows_in_flight > 0) FROM zb_metrics WHERE stream IN ($list)") == @names
	}, 60), "$case: rows in flight in " . join(', ', @names));
}

# The service has stored every row of a full transaction of each worker of
# the default streams (max_inflight each), in this case: acks are slow, so
# none of those transactions has committed yet.  A failure now repeats
# max_inflight rows per worker, the most it may; a claim larger than
# max_inflight would repeat more.
sub wait_full_transactions_stored
{
	my ($case) = @_;
	for my $s (grep { $_->{mi} == $DEFAULT_MI } @streams)
	{
		my $want = $s->{mi} * $s->{workers};
		ok($emu->wait_for(sub {
			$emu->sql(qq{SELECT count(*) FROM "main.default.$s->{name}" WHERE id >= $case_first{$s->{name}}})->{rows}[0][0] >= $want
		}, 120), "$case: $s->{name}: the service stored $want rows, none acknowledged yet");
	}
}

sub worker_pids
{
	my ($s) = @_;
	return split /\n/, $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE application_name = 'zerobus_fdw stream $s->{name}'");
}

# SIGKILL one of a stream's workers: the postmaster restarts every process.
# Returns once the cluster has reinitialized and every worker runs again.
sub crash
{
	my ($case, $s) = @_;
	my $offset = -s $node->logfile;
	kill 'KILL', (worker_pids($s))[0];
	$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
	ok($node->poll_query_until('postgres',
		q{SELECT count(*) FILTER (WHERE workers_running = workers) FROM zb_metrics}, scalar @streams),
		"$case: the cluster restarted, every stream's workers are back");
}

# Every stream stopped (started): one transaction, so one rescan of the
# database.  (The launcher runs a scan worker per rescan request without
# waiting for the one already running; an older scan that finishes last can
# undo a newer one's change.)
sub stop_all
{
	my ($case) = @_;
	$node->safe_psql('postgres', 'SELECT count(zerobus.stop_stream(name)) FROM zerobus.streams');
	ok($emu->wait_for(sub { $node->safe_psql('postgres', 'SELECT sum(workers_running) FROM zb_metrics') == 0 }),
		"$case: every worker stopped");
}

sub start_all
{
	$node->safe_psql('postgres', 'SELECT count(zerobus.start_stream(name)) FROM zerobus.streams');
}

# Stop every stream, set the emulator's faults (they apply to streams opened
# after them) and the streams' ack_timeout if given, start again.
sub restart_all
{
	my ($case, $faults, $ack_timeout, $while_stopped) = @_;
	stop_all($case);
	$emu->clear_faults;
	$emu->faults($faults) if $faults;
	$node->safe_psql('postgres',
		"SELECT count(zerobus.alter_stream(name, ack_timeout => '$ack_timeout')) FROM zerobus.streams")
	  if $ack_timeout;
	$while_stopped->() if $while_stopped;
	start_all();
}


sub start_case
{
	for my $s (@streams)
	{
		$case_first{ $s->{name} } = $s->{next_id};
		$reconnects_before{ $s->{name} } = metric($s, 'reconnects');
	}
}

# The end state of a case.  every_worker => n: every worker failed n times
# (crashes, the service going away); crashed => 1: the metrics started again
# from zero (a crash), so every reconnect they count is a failure of the case;
# dead => { stream => id }: that row was refused, and is a dead letter instead.
sub check_case
{
	my ($case, %opt) = @_;
	my $every = $opt{every_worker} || 0;
	my @line = ($case);
	for my $s (@streams)
	{
		my $n = $s->{name};
		my ($lo, $hi) = ($case_first{$n}, $s->{next_id} - 1);
		my $r = $emu->sql(qq{
			SELECT count(*), count(DISTINCT id), count(DISTINCT zb_key),
			       (SELECT count(*) FROM (SELECT id FROM "main.default.$n" WHERE id BETWEEN $lo AND $hi
			                               GROUP BY id HAVING count(DISTINCT zb_key) > 1))
			  FROM "main.default.$n" WHERE id BETWEEN $lo AND $hi})->{rows}[0];
		my ($rows, $ids, $keys, $ids_two_keys) = @$r;
		my $reconnects = metric($s, 'reconnects');
		my $failures = $every * $s->{workers} +
		  ($opt{crashed} ? $reconnects : $reconnects - $reconnects_before{$n});
		my $dups = $rows - $keys;
		my $dead = $opt{dead} ? $opt{dead}{$n} : undef;
		is($ids, $hi - $lo + 1 - ($dead ? 1 : 0), "$case: $n: every row inserted arrived" . ($dead ? ' but the refused one' : ''));
		if ($dead)
		{
			is($node->safe_psql('postgres', "SELECT string_agg(record->>'id', ',') FROM zerobus.dead_letters WHERE stream = '$n'"),
				$dead, "$case: $n: the refused row, and only it, is a dead letter");
			is($emu->sql(qq{SELECT count(*) FROM "main.default.$n" WHERE id = $dead})->{rows}[0][0], 0,
				"$case: $n: the refused row is not in the table");
		}
		is($node->safe_psql('postgres', "SELECT count(*) FROM q_$n"), '0', "$case: $n: the queue is empty");
		is($ids_two_keys, 0, "$case: $n: a re-sent row carries the key it had");
		is($keys, $ids, "$case: $n: different rows have different keys");
		cmp_ok($dups, '<=', $s->{mi} * $failures,
			"$case: $n: $dups duplicates, at most max_inflight ($s->{mi}) x $failures failure(s)");
		push @line, sprintf('%d/%d', $dups, $failures);
	}
	push @report, \@line;
	start_case();
}

start_case();

# --- no failure, no duplicate
my $t0 = time;
insert_rows(\&light);
flush_all('baseline');
check_case('baseline');
note(sprintf('baseline: %.1f s', time - $t0));

# --- a worker killed with SIGKILL while every stream waits for acks: the
# postmaster restarts every process, every worker's transaction rolls back,
# and every row the service stored for them is sent again
$t0 = time;
heavy_start('kill -9');
wait_in_flight('kill -9');
wait_full_transactions_stored('kill -9');
$emu->clear_faults;
crash('kill -9', $streams[3]);
flush_all('kill -9');
check_case('worker kill -9 mid-batch', every_worker => 1, crashed => 1);
note(sprintf('kill -9: %.1f s', time - $t0));

# --- postmaster immediate stop and start
$t0 = time;
heavy_start('immediate stop');
wait_in_flight('immediate stop');
wait_full_transactions_stored('immediate stop');
$emu->clear_faults;
$node->stop('immediate');
$node->start;
flush_all('immediate stop');
check_case('postmaster immediate stop', every_worker => 1, crashed => 1);
note(sprintf('immediate stop: %.1f s', time - $t0));

# --- the service is killed while rows wait for acks, and comes back.
# Meanwhile the streams stop and VACUUM FREEZE freezes the rows they had
# sent: a frozen row keeps its key (freezing keeps the inserting xid).
$t0 = time;
heavy_start('service restart');
wait_in_flight('service restart');
wait_full_transactions_stored('service restart');
$emu->stop('KILL');
ok($emu->wait_for(sub {
	$node->safe_psql('postgres', q{SELECT bool_and(state IN ('backoff', 'connecting', 'error')) FROM zb_metrics}) eq 't' }, 30),
	'service restart: every stream backs off');
stop_all('service restart');
$node->safe_psql('postgres', "CREATE EXTENSION IF NOT EXISTS pageinspect");
for my $s (@streams)
{
	$node->safe_psql('postgres', "VACUUM (FREEZE) q_$s->{name}");
	# the rows on the page of the first queued row: HEAP_XMIN_FROZEN (0x0300)
	is($node->safe_psql('postgres', qq{
		SELECT count(*) > 0 AND bool_and(t_infomask & 768 = 768)
		  FROM heap_page_items(get_raw_page('q_$s->{name}',
		         (SELECT (ctid::text::point)[0]::int FROM q_$s->{name} LIMIT 1)))
		 WHERE lp_flags = 1}),
		't', "service restart: $s->{name}: the queued rows are frozen");
}
$emu->start;
start_all();
flush_all('service restart');
check_case('service restart, rows frozen', every_worker => 1);
note(sprintf('service restart: %.1f s', time - $t0));

# --- streams end with UNAVAILABLE after three requests (each worker's first)
$t0 = time;
restart_all('UNAVAILABLE', { end_stream => { after_requests => 3, status => 'UNAVAILABLE', message => 'going away', streams => 7 } });
insert_rows(\&light);
flush_all('UNAVAILABLE');
check_case('UNAVAILABLE mid-stream');
$emu->clear_faults;
note(sprintf('UNAVAILABLE: %.1f s', time - $t0));

# --- acknowledgements withheld past ack_timeout: nothing was stored, so
# nothing is repeated, however often the workers retry
$t0 = time;
restart_all('withheld acks', { withhold_acks => JSON::PP::true }, '2s');
insert_rows(\&light);
ok($emu->wait_for(sub {
	$node->safe_psql('postgres', q{SELECT bool_and(last_error LIKE '%no durable acknowledgement within 2000 ms%') FROM zb_metrics}) eq 't' }, 60),
	'withheld acks: every stream times out');
$emu->clear_faults;
flush_all('withheld acks');
check_case('acks withheld past the timeout');
restart_all('withheld acks', undef, '60s');
note(sprintf('withheld acks: %.1f s', time - $t0));

# --- CloseStreamSignal whose deadline passes before the acks (acks take
# 1.5 s, the signal gives 0.5 s): unacknowledged requests move to a new stream
# (acks take less than ack_timeout, 60 s, as everywhere in this test)
$t0 = time;
my $signals = $emu->stats->{close_signals_sent};
restart_all('close signal', { close_signal => { after_requests => 2, duration_ms => 500, streams => 7 }, ack_delay_ms => 1500 });
insert_rows(\&light);
ok($emu->wait_for(sub { $emu->stats->{close_signals_sent} >= $signals + 4 }, 60), 'close signal: the signals were sent');
$emu->clear_faults;
flush_all('close signal');
check_case('CloseStreamSignal');
note(sprintf('close signal: %.1f s', time - $t0));

# --- a refused record while the requests sent before it wait for their
# acks: the service ends the stream without acknowledging them, so which
# request held the record is not known, and the worker sends one request at
# a time until a refusal names it; only the refused row becomes a dead letter
$t0 = time;
restart_all('refused record', { ack_delay_ms => 500, reject_record => { contains => 'POISON' } });
my %poison = map { ($_->{name} => $_->{next_id} + int(light($_) / 2) + 123) } @streams;
insert_rows(\&light, \%poison);
flush_all('refused record');
$emu->clear_faults;
check_case('refused record, earlier acks pending', dead => \%poison);
note(sprintf('refused record: %.1f s', time - $t0));

# --- three crashes in a row during a large drain with slow (30 ms) acks
# (the small streams may have drained before the last crashes)
$t0 = time;
$emu->faults({ ack_delay_ms => 30 });
insert_rows(sub { my ($s) = @_; return 2 * heavy($s); });
for my $crash (1 .. 3)
{
	wait_in_flight("crash $crash", 'dflt1', 'dflt2');
	crash("crash $crash", $streams[2 + $crash % 2]);
}
$emu->clear_faults;
flush_all('three crashes');
check_case('three crashes in a row, 30 ms acks', every_worker => 3, crashed => 1);
note(sprintf('three crashes: %.1f s', time - $t0));

# The duplicates measured, per stream: duplicates/failures of each case.
diag(sprintf("%-38s %s", 'duplicates/failures', join(' ', map {
	sprintf('%16s', "$_->{name} (mi $_->{mi}, w$_->{workers})") } @streams)));
diag(sprintf("%-38s %s", $_->[0], join(' ', map { sprintf('%16s', $_) } @{$_}[ 1 .. $#$_ ]))) for @report;

$node->stop;
done_testing();
