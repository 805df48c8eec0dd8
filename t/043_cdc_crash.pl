# Change capture under failures (docs/DESIGN.md, "Durability: the progress
# record"): with writers committing all along, the stream worker killed
# with SIGKILL in the middle of a batch, the postmaster stopped with -m
# immediate, the service killed and restarted, the ZeroBus stream ended by
# the service in the middle of a transaction larger than max_inflight, the
# worker killed in the middle of such a transaction's replay after part of
# it was acknowledged, and a crash in the middle of the initial copy.  After
# each: the change log the emulator received, replayed by key in _seq order,
# is the table (nothing lost), and the records sent twice (the same _seq)
# are no more than max_inflight per failure.
use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusEmulator;
use ZerobusNode;

my $MAX_INFLIGHT = 500;
my $target = 'main.default.crash_changes';

my $emu = ZerobusEmulator->new;
my @cdc_cols = (
	{ name => '_change_type', type => 'STRING', nullable => JSON::PP::false },
	{ name => '_commit_lsn', type => 'BIGINT', nullable => JSON::PP::false },
	{ name => '_commit_timestamp', type => 'TIMESTAMP', nullable => JSON::PP::false },
	{ name => '_seq', type => 'BIGINT', nullable => JSON::PP::false });
$emu->create_table($target, [ { name => 'id', type => 'BIGINT' }, { name => 'v', type => 'BIGINT' },
	{ name => 'pad', type => 'STRING' }, @cdc_cols ]);

my $node = ZerobusNode::create('cdc_crash', $emu, conf => join("\n",
	"wal_level = logical", "max_replication_slots = 10", "max_wal_senders = 10",
	"logical_decoding_work_mem = '64kB'", "zerobus.poll_interval = '200ms'",
	"restart_after_crash = on"));
ZerobusNode::enable_cdc($node);
sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{
	CREATE TABLE t (id bigint PRIMARY KEY, v bigint NOT NULL, pad text);
	INSERT INTO t SELECT i, 0, 'p' FROM generate_series(1, 1000) i;
	-- short transactions that change known rows for a while
	CREATE PROCEDURE churn(secs float8) LANGUAGE plpgsql AS $$
	DECLARE
	  t0 timestamptz := clock_timestamp();
	  x bigint;
	BEGIN
	  WHILE clock_timestamp() < t0 + secs * interval '1 second' LOOP
	    x := 1 + (random() * 2000)::bigint;
	    INSERT INTO t VALUES (x, 0, 'churn') ON CONFLICT (id) DO UPDATE SET v = t.v + 1;
	    IF random() < 0.2 THEN DELETE FROM t WHERE id = 1 + (random() * 2000)::bigint; END IF;
	    COMMIT;
	  END LOOP;
	END $$;
});
sql(qq{SELECT zerobus.create_stream('c', source => 't', server => 'emu', target => '$target',
                                    max_inflight => $MAX_INFLIGHT, batch_rows => 100, ack_timeout => '5s')});

sub table_state
{
	return sql(q{SELECT coalesce(string_agg(concat_ws('|', id, v, coalesce(pad, 'NULL')), E'\n' ORDER BY id), '') FROM t});
}

# Replay by key in _seq order: (state, records sent twice, problems).
sub replay
{
	my $r = $emu->sql(qq{SELECT _seq, _change_type, id, v, pad FROM "$target" ORDER BY _seq, rowid});
	my (%state, %seen, @problems);
	my $dups = 0;
	for my $row (@{ $r->{rows} })
	{
		my ($seq, $type, $id, @vals) = @$row;
		my $text = join('|', map { $_ // 'NULL' } ($type, $id, @vals));
		if (exists $seen{$seq})
		{
			push @problems, "_seq $seq twice, different: $seen{$seq} / $text" if $seen{$seq} ne $text;
			$dups++;
			next;
		}
		$seen{$seq} = $text;
		if ($type eq 'truncate') { %state = (); }
		elsif ($type eq 'delete') { delete $state{$id}; }
		else { $state{$id} = join('|', map { $_ // 'NULL' } ($id, @vals)); }
	}
	return (join("\n", map { $state{$_} } sort { $a <=> $b } keys %state), $dups, \@problems);
}

sub first_difference
{
	my ($got, $want) = @_;
	my @g = split /\n/, $got;
	my @w = split /\n/, $want;
	for my $i (0 .. ($#g > $#w ? $#g : $#w))
	{
		my ($a, $b) = ($g[$i] // '(none)', $w[$i] // '(none)');
		return "line $i: got '$a', want '$b'" if $a ne $b;
	}
	return 'same';
}

my $dups_before = 0;

sub check_case
{
	my ($name, $failures) = @_;
	# the cluster may be restarting: retry the flush until it answers
	ok($node->poll_query_until('postgres', q{SELECT zerobus.flush('c', '120s') >= 0}, 't'),
		"$name: flush returned");
	my ($got, $dups, $problems) = replay();
	is(scalar(@$problems), 0, "$name: the change log is consistent")
	  or diag(join("\n", @$problems[0 .. ($#$problems < 10 ? $#$problems : 10)]));
	is(first_difference($got, table_state()), 'same', "$name: nothing lost (the log replayed is the table)");
	my $new = $dups - $dups_before;
	cmp_ok($new, '<=', $MAX_INFLIGHT * $failures,
		"$name: records sent twice ($new) within max_inflight per failure ($failures)");
	note("$name: $new record(s) sent twice");
	$dups_before = $dups;
}

sub start_writers
{
	my ($secs, $n) = @_;
	my @w;
	for (1 .. $n)
	{
		my ($out, $err) = ('', '');
		push @w, [ IPC::Run::start(
			[ 'psql', '-X', '-d', $node->connstr('postgres'), '-c', "CALL churn($secs)" ],
			'>', \$out, '2>', \$err, IPC::Run::timeout(300)), \$err ];
	}
	return \@w;
}

# writers are killed with the server in some cases: their errors are expected then
sub finish_writers
{
	my ($w) = @_;
	$_->[0]->finish for @$w;
}

sub worker_pid
{
	return sql(q{SELECT pid FROM pg_stat_activity WHERE application_name = 'zerobus_fdw stream c'});
}

sub wait_inflight
{
	return $node->poll_query_until('postgres', q{SELECT rows_in_flight > 0 FROM zb_metrics WHERE stream = 'c'});
}

ok($node->poll_query_until('postgres', q{SELECT cdc_started_at IS NOT NULL FROM zerobus.streams WHERE name = 'c'}),
	'the stream is established');
check_case('baseline', 0);

# --- the worker killed with SIGKILL in the middle of a batch (the
# postmaster restarts every process: a crash)
$emu->faults({ ack_delay_ms => 1000 });
my $w = start_writers(4, 2);
ok(wait_inflight(), 'kill -9: a batch is in flight');
kill 'KILL', worker_pid();    # the test's own kill: not a crash (ZerobusCrashCheck)
finish_writers($w);
$emu->clear_faults;
check_case('kill -9 of the worker mid-batch', 1);

# --- the postmaster stopped with -m immediate and started again
$emu->faults({ ack_delay_ms => 1000 });
$w = start_writers(3, 2);
ok(wait_inflight(), 'immediate stop: a batch is in flight');
$node->stop('immediate');
finish_writers($w);
$emu->clear_faults;
$node->start;
check_case('postmaster -m immediate', 1);

# --- the service killed and started again while changes are committed
$w = start_writers(4, 2);
ok(wait_inflight(), 'service restart: a batch is in flight');
$emu->stop('KILL');
ok($node->poll_query_until('postgres', q{SELECT state IN ('backoff', 'connecting', 'error') FROM zb_metrics WHERE stream = 'c'}),
	'while the service is down the stream backs off');
finish_writers($w);
cmp_ok(sql(q{SELECT slot_lag_bytes FROM zb_metrics WHERE stream = 'c'}), '>', 0,
	'while the service is down the slot lag grows');
ok($node->poll_query_until('postgres', q{SELECT oldest_unacked_age_ms > 1000 FROM zb_metrics WHERE stream = 'c'}),
	'while the service is down the oldest unacknowledged change ages');
$emu->start;
check_case('the service gone and back', 2);

# --- the service ends the stream in the middle of a transaction larger
# than max_inflight: the batches of its replay fail, and it is decoded again
sql(q{SELECT zerobus.stop_stream('c')});
$emu->wait_for(sub { sql(q{SELECT workers_running FROM zb_metrics WHERE stream = 'c'}) eq '0' });
$emu->faults({ end_stream => { after_requests => 12, status => 'UNAVAILABLE', message => 'restarting', streams => 2 } });
sql(q{UPDATE t SET v = v + 1000, pad = repeat('b', 50)});
sql(q{INSERT INTO t SELECT i, 1, 'big' FROM generate_series(10001, 14000) i});
my $reconnects = sql(q{SELECT reconnects FROM zb_metrics WHERE stream = 'c'});
sql(q{SELECT zerobus.start_stream('c')});
check_case('the stream ended in the middle of a large transaction',
	2);
cmp_ok(sql(q{SELECT reconnects FROM zb_metrics WHERE stream = 'c'}), '>', $reconnects,
	'large transaction: the worker opened new streams');
$emu->clear_faults;

# --- the worker killed in the middle of a large transaction's replay,
# after part of it was acknowledged: the progress record says how much
$emu->faults({ ack_delay_ms => 300 });
sql(q{SELECT zerobus.stop_stream('c')});
$emu->wait_for(sub { sql(q{SELECT workers_running FROM zb_metrics WHERE stream = 'c'}) eq '0' });
sql(q{UPDATE t SET v = v + 1});
my $acked = sql(q{SELECT rows_acked FROM zb_metrics WHERE stream = 'c'});
sql(q{SELECT zerobus.start_stream('c')});
ok($node->poll_query_until('postgres', qq{SELECT rows_acked > $acked + 2 * $MAX_INFLIGHT FROM zb_metrics WHERE stream = 'c'}),
	'large transaction: part of it is acknowledged');
kill 'KILL', worker_pid();
$emu->clear_faults;
check_case('kill -9 in the middle of a large transaction', 1);

# --- a crash in the middle of the initial copy: the copy starts over
# (with a truncate first, and _seq above the first attempt's)
sql(q{SELECT zerobus.stop_stream('c')});
$emu->wait_for(sub { sql(q{SELECT workers_running FROM zb_metrics WHERE stream = 'c'}) eq '0' });
sql(q{INSERT INTO t SELECT i, 2, 'copy' FROM generate_series(20001, 60000) i});
$emu->faults({ ack_delay_ms => 200 });
sql(q{SELECT zerobus.resync_stream('c')});
sql(q{SELECT zerobus.start_stream('c')});
# the records after the latest truncate: the new copy's
my $copied = sub {
	return $emu->sql(qq{SELECT count(*) FROM "$target"
		WHERE _seq > (SELECT max(_seq) FROM "$target" WHERE _change_type = 'truncate')})->{rows}[0][0];
};
ok($emu->wait_for(sub {
		$emu->sql(qq{SELECT count(*) FROM "$target" WHERE _change_type = 'truncate'})->{rows}[0][0] == 2
		  && $copied->() > 2 * $MAX_INFLIGHT }, 60),
	'copy: part of it delivered');
cmp_ok($copied->(), '<', 50000, 'copy: not all of it yet');
$node->stop('immediate');
$emu->clear_faults;
$node->start;
ok($node->poll_query_until('postgres', q{SELECT cdc_started_at IS NOT NULL FROM zerobus.streams WHERE name = 'c'}),
	'copy: established after the restart');
check_case('a crash in the middle of the copy', 0);
is($emu->sql(qq{SELECT count(*) FROM "$target" WHERE _change_type = 'truncate'})->{rows}[0][0], 3,
	'copy: each copy (the first, the interrupted one, the new one) starts with a truncate');

done_testing();
