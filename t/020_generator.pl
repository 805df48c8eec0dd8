# The generator's life: it fills its stream's queue through the same path
# as any application, stops on request and with its stream, resumes after
# a restart; the metrics history records the traffic; reset_metrics clears
# it.  (The rates it achieves are measured by bench/, not asserted here.)
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusEmulator;
use ZerobusNode;

my $emu = ZerobusEmulator->new;
my $node = ZerobusNode::create('generator', $emu, conf => 'track_commit_timestamp = on');

# the Delta table, from the profile's own description
my $delta = $node->safe_psql('postgres',
	q{SELECT delta_columns FROM zerobus.generator_profiles() WHERE profile = 'transactions'});
my @cols = map {
	my ($name, $type, $nn) = /^\s*(\w+)\s+(\S+)(\s+NOT NULL)?/;
	{ name => $name, type => $type, nullable => $nn ? JSON::PP::false : JSON::PP::true }
} split /,(?![^(]*\))/, $delta;
$emu->create_table('main.default.financial_transactions', \@cols);

$node->safe_psql('postgres', q{
	SELECT zerobus.generator_create_queue('transactions', 'tx_queue');
	SELECT zerobus.create_stream('tx', 'tx_queue', 'emu', 'main.default.financial_transactions');
	SELECT zerobus.generator_start('tx', 'transactions', throttle => 30);
});

sub generated
{
	return $node->safe_psql('postgres', q{SELECT coalesce(sum(rows_generated), 0) FROM zerobus.generator_status()});
}

sub running
{
	return $node->safe_psql('postgres', q{SELECT running FROM zerobus.generator_status()});
}

ok($emu->wait_for(sub { generated() > 300 }, 60), 'the generator makes rows');
is(running(), 't', 'and says it runs');
# a few seconds of traffic in the per-second history
ok($emu->wait_for(sub {
	$node->safe_psql('postgres', q{SELECT count(*) FROM zb_metrics_history WHERE stream = 'tx' AND rows_per_sec > 0}) >= 4 }, 60),
	'the history records the traffic second by second');

# the rows go through the stream like any application's
$node->safe_psql('postgres', q{SELECT zerobus.generator_stop('tx')});
ok($emu->wait_for(sub { running() eq 'f' }, 30), 'generator_stop stops it');
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name LIKE 'zerobus_fdw generator%'}),
	'its process is gone');
my $made = generated();
$node->safe_psql('postgres', q{SELECT zerobus.flush('tx', '60s')});
is(generated(), $made, 'no rows after the stop (the count did not move while the queue drained)');
is($node->safe_psql('postgres', 'SELECT count(*) FROM tx_queue'), '0', 'the queue drained');
is($emu->count('main.default.financial_transactions'), $made, 'every generated row reached the table');
my $anomalies = $emu->sql(q{SELECT sum(is_anomaly), min(amount) >= 1, max(amount) <= 50000,
	count(DISTINCT currency) FROM "main.default.financial_transactions"})->{rows}[0];
ok($anomalies->[1] && $anomalies->[2], 'amounts between $1 and $50,000');
cmp_ok($anomalies->[3], '>=', 4, 'several currencies');

# the history has the traffic, per second
my $hist = $node->safe_psql('postgres', q{
	SELECT count(*) > 3, max(generated_per_sec) > 0, max(rows_per_sec) > 0,
	       bool_and("time" IS NOT NULL), max(ack_latency_p99_ms) > 0, max(commit_to_ack_p99_ms) > 0
	  FROM zb_metrics_history WHERE stream = 'tx'});
is($hist, 't|t|t|t|t|t', 'zb_metrics_history: per-second rates and latency percentiles');
is($node->safe_psql('postgres', q{
	SELECT bool_and("time" >= lag) FROM (SELECT "time", lag("time", 1, "time") OVER () FROM zb_metrics_history) x}),
	't', 'zb_metrics_history is sorted by time');
like($node->safe_psql('postgres', q{SELECT "last 30 s" FROM zb_dashboard}), qr/^[▁▂▃▄▅▆▇█]+$/,
	'zb_dashboard draws a sparkline');

# it restarts with its stream: stopped with it, back with it
$node->safe_psql('postgres', q{SELECT zerobus.generator_start('tx')});
ok($emu->wait_for(sub { running() eq 't' }, 30), 'started again (same profile)');
$node->safe_psql('postgres', q{SELECT zerobus.stop_stream('tx')});
ok($emu->wait_for(sub { running() eq 'f' }, 30), 'stopping the stream stops its generator');
$node->safe_psql('postgres', q{SELECT zerobus.start_stream('tx')});
ok($emu->wait_for(sub { running() eq 't' }, 30), 'starting the stream starts it again');

# and after a server restart
$node->restart;
ok($emu->wait_for(sub { running() eq 't' }, 60), 'the generator resumes after a restart');
my $before = generated();
ok($emu->wait_for(sub { generated() > $before }, 30), 'and makes rows');

# reset_metrics clears counters and history
$node->safe_psql('postgres', q{SELECT zerobus.generator_stop('tx')});
ok($emu->wait_for(sub { running() eq 'f' }, 30), 'stopped for the reset');
is($node->safe_psql('postgres', q{SELECT zerobus.reset_metrics('tx')}), '1', 'reset one stream');
is($node->safe_psql('postgres', q{SELECT rows_acked, rows_generated FROM zb_metrics}), '0|0', 'counters are zero');
cmp_ok($node->safe_psql('postgres', q{SELECT count(*) FROM zb_metrics_history}), '<=', 2, 'history restarted');

# dropping the stream takes the generator away
$node->safe_psql('postgres', q{SELECT zerobus.generator_start('tx')});
ok($emu->wait_for(sub { running() eq 't' }, 30), 'running before the drop');
$node->safe_psql('postgres', q{SELECT zerobus.drop_stream('tx')});
ok($emu->wait_for(sub {
	$node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'zerobus_fdw generator%'}) eq '0' }, 30),
	'no generator process after drop_stream');

$node->stop;
done_testing();
