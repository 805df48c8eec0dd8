# The Grafana dashboard (dashboards/zerobus.json) against a live server: the
# JSON model and the provisioning files agree (data source type and uid,
# targets, variables); then, with a generator streaming transactions through
# ZeroBus (the emulator), every panel target, annotation and template
# variable query is expanded the way Grafana would (template variables, then
# $__interval, then the PostgreSQL data source's macros: GrafanaBoard.pm) and
# run as a read-only role holding only pg_monitor; each must succeed and
# return rows of the shape its panel needs: time series with a "time" column
# first, sorted, numeric values and text labels; single-value stats one row;
# tables with the expected columns. (t/301_profile_dashboards.pl does the
# same for the sensors, orders and weblogs dashboards.)
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use GrafanaBoard;
use ZerobusEmulator;
use ZerobusNode;

# The History row reads the Delta table through a foreign table: 'foreign'
# imports the real one (the history FDW over the emulator's SQL API); 'local'
# stands in a plain table holding a copy of the emulator's Delta table.
my $HISTORY = 'foreign';

my $root = File::Spec->rel2abs(dirname(__FILE__) . '/..');
my $DS_TYPE = 'grafana-postgresql-datasource';

my $node;    # the cluster, started below

# Poll a query until it returns 't' (at most $secs seconds)
sub wait_until
{
	my ($secs, $sql) = @_;
	my $deadline = time + $secs;
	while (time < $deadline)
	{
		return 1 if $node->safe_psql('postgres', $sql) eq 't';
		sleep 1;
	}
	return 0;
}

sub slurp
{
	my ($path) = @_;
	open(my $fh, '<', $path) or die "$path: $!";
	local $/;
	my $s = <$fh>;
	close $fh;
	return $s;
}

# ------------------------------------------------------------------
# The JSON model and the provisioning files
# ------------------------------------------------------------------
my $board = GrafanaBoard->load("$root/dashboards/zerobus.json");
my $dash = $board->dash;
my $ds_yaml = slurp("$root/dashboards/provisioning/datasources/zerobus.yaml");
my $db_yaml = slurp("$root/dashboards/provisioning/dashboards/zerobus.yaml");

my ($ds_uid) = $ds_yaml =~ /^\s+uid:\s*(\S+)\s*$/m;
like($ds_yaml, qr/^\s+type:\s*\Q$DS_TYPE\E\s*$/m, "the provisioned data source is of type $DS_TYPE");
ok(defined $ds_uid, "the provisioned data source has a fixed uid");
like($ds_yaml, qr/^\s+jsonData:\n(?:\s{6}.*\n)*?\s{6}database:\s*\S+/m, 'the database is under jsonData');
like($ds_yaml, qr/^\s+secureJsonData:\n\s{6}password:\s*\S+/m, 'the password is under secureJsonData');
like($db_yaml, qr/^\s+type:\s*file\s*$/m, 'the dashboard provider is a file provider');
like($db_yaml, qr/^\s+path:\s*\S+/m, 'the dashboard provider has a path');

ok($dash->{schemaVersion} >= 36 && $dash->{schemaVersion} <= 38,
	"schemaVersion $dash->{schemaVersion} is one Grafana 10.2 writes or migrates");
ok($dash->{uid} && length($dash->{uid}) <= 40, 'the dashboard has a fixed uid');
ok(!defined $dash->{id}, 'no database id in the model (provisioning assigns one)');

# unique ids and titles, the 24-column grid, the data source {type, uid} on
# every panel, target and annotation, raw SQL targets of format time_series
# (time series panels) or table
is(join("\n", $board->model_problems($DS_TYPE, $ds_uid)), '',
	"every panel fits the grid and has raw SQL targets on the data source {type, uid: $ds_uid}");
my @rows = map { $_->{title} } $board->rows;
is(scalar(@rows), 2, 'two rows: ' . join(' / ', @rows));

# ------------------------------------------------------------------
# What each target must return. Columns are name:kind, kind one of
# num (a number Grafana can plot), text, time (timestamptz), bool, any.
# Time series are checked generically (time first, sorted; numbers; labels).
# ------------------------------------------------------------------
my %expect = (
	'Rows ingested' => [ 'rows ingested:num' ],
	'Data volume' => [ 'bytes acknowledged:num' ],
	'Rows/s' => [ 'rows/s:num' ],
	'Success rate' => [ 'success rate:num' ],
	'Queued / in flight' => [ 'queued:num', 'in flight:num' ],
	'Runtime' => [ 'uptime:num' ],
	'State' => [ 'stream:text', 'state:text' ],
	'In-flight window used' => [ 'stream:text', 'utilisation:num' ],
	'Generated / ingested' => [ 'generated:num', 'ingested:num' ],
	'Last error' => [ 'stream:text', 'state:text', 'last_error_at:time', 'last_error:text' ],
	'Streams' => [
		qw(stream:text database:text state:text workers:text rows_acked:num rows_per_sec:num
		  generated_per_sec:num queue_depth:num rows_in_flight:num ack_latency_p50_ms:num
		  ack_latency_p99_ms:num commit_to_ack_p99_ms:num success_rate:num
		  rows_dead_lettered:num reconnects:num) ],
	'Generators' => [
		qw(stream:text profile:text running:bool throttle:num target_rate:num actual_rate:num
		  rows_generated:num) ],
	'Transactions in the time range' => [
		'transactions:num', 'volume:num', 'average amount:num', 'anomalies:num', 'anomaly rate:num' ],
	'By type' => [ 'txn_type:text', 'transactions:num', 'volume:num' ],
	'By status' => [ 'status:text', 'transactions:num' ],
	'By currency' => [ 'currency:text', 'volume:num', 'transactions:num' ],
	'Transactions' => [
		qw(created_at:time txn_id:text sender_account:text receiver_account:text amount:num
		  currency:text txn_type:text status:text risk_score:num is_anomaly:bool) ],
	# annotations: Grafana wants time, text and tags
	'annotation Stream errors' => [ 'time:time', 'text:text', 'tags:text' ],
	# template variables
	'variable stream' => [ 'stream:text' ],
	'variable offset' => [ '__text:text', '__value:num' ],
);

my @targets = $board->targets;
my @unexpected = grep { $_->{format} eq 'table' && !$expect{ $_->{label} } } @targets;
is(join(', ', map { $_->{label} } @unexpected), '', 'every table target has expected columns in this test');

my %var_def = map { $_->{name} => $_ } $board->variables;
ok($var_def{stream} && $var_def{stream}{type} eq 'query'
	  && $var_def{stream}{query} eq 'SELECT DISTINCT stream FROM zb_metrics ORDER BY 1',
	'the stream variable lists zb_metrics\' streams');
ok($var_def{page_size} && $var_def{offset}, 'the page_size and offset variables exist');

# ------------------------------------------------------------------
# A live server: the emulator, a cluster, a transactions stream fed by the
# generator, with one UNAVAILABLE stream end so that errors show
# ------------------------------------------------------------------
my $emu = ZerobusEmulator->new;
$node = ZerobusNode::create('dash', $emu, conf => 'track_commit_timestamp = on');

# The Delta table, with the transactions profile's columns
my $delta = $node->safe_psql('postgres',
	q{SELECT delta_columns FROM zerobus.generator_profiles() WHERE profile = 'transactions'});
my @delta_cols;
for my $c (split /,\s+(?=\w+\s)/, $delta)
{
	my ($name, $type, $notnull) = $c =~ /^(\w+)\s+(\S+)(\s+NOT NULL)?$/ or die "column $c";
	push @delta_cols, { name => $name, type => $type, nullable => $notnull ? JSON::PP::false : JSON::PP::true };
}
is(join(',', map { $_->{name} } @delta_cols),
	'txn_id,sender_account,receiver_account,amount,currency,txn_type,status,risk_score,is_anomaly,created_at',
	'the transactions profile has the columns the History panels read');
$emu->create_table('main.default.financial_transactions', \@delta_cols);

# the first ZeroBus stream ends with UNAVAILABLE after 300 requests (a few
# seconds in): the worker reconnects, and the errors, reconnects and
# annotation panels have data
$emu->faults({ end_stream => { after_requests => 300, status => 'UNAVAILABLE' } });
$node->safe_psql('postgres', q{
	SELECT zerobus.generator_create_queue('transactions', 'tx_queue');
	SELECT zerobus.create_stream('tx', 'tx_queue', 'emu', 'main.default.financial_transactions');
	SELECT zerobus.generator_start('tx', 'transactions', throttle => 40);
});
ok(wait_until(60, q{
	SELECT count(*) FILTER (WHERE rows_per_sec > 0) >= 5 AND sum(reconnects) > 0
	  FROM zb_metrics_history}),
	'data flows: samples with acknowledged rows and a reconnect in zb_metrics_history');
is($node->safe_psql('postgres', q{SELECT last_error IS NOT NULL AND rows_acked > 0 FROM zb_metrics}),
	't', 'zb_metrics has acknowledged rows and the last error');

# ------------------------------------------------------------------
# History: history.financial_transactions
# ------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE SCHEMA history');
if ($HISTORY eq 'local')
{
	# STAND-IN for the foreign table: a plain table with the Delta table's
	# columns and a copy of what the emulator's Delta table holds now.
	my $copy = $emu->sql('SELECT txn_id, sender_account, receiver_account, amount, currency, txn_type, '
		  . 'status, risk_score, is_anomaly, created_at FROM "main.default.financial_transactions"');
	my $json = JSON::PP->new->encode($copy->{rows});
	$node->safe_psql('postgres', qq{
		CREATE TABLE history.financial_transactions (
		    txn_id text NOT NULL, sender_account text NOT NULL, receiver_account text NOT NULL,
		    amount numeric(12,2) NOT NULL, currency text NOT NULL, txn_type text NOT NULL,
		    status text NOT NULL, risk_score double precision NOT NULL, is_anomaly boolean NOT NULL,
		    created_at timestamptz NOT NULL);
		INSERT INTO history.financial_transactions
		SELECT r->>0, r->>1, r->>2, (r->>3)::numeric(12,2), r->>4, r->>5, r->>6, (r->>7)::float8,
		       (r->>8) IN ('1', 'true'), 'epoch'::timestamptz + (r->>9)::bigint * interval '1 microsecond'
		  FROM jsonb_array_elements(\$rows\$$json\$rows\$::jsonb) r;
	});
}
else
{
	$node->safe_psql('postgres', q{
		IMPORT FOREIGN SCHEMA "main.default" LIMIT TO (financial_transactions)
		  FROM SERVER emu INTO history;
	});
}
ok($node->safe_psql('postgres', 'SELECT count(*) FROM history.financial_transactions') > 100,
	"history.financial_transactions ($HISTORY) has rows");

# Grafana's role: pg_monitor, and reading the history schema
$node->safe_psql('postgres', q{
	CREATE ROLE grafana_reader LOGIN;
	GRANT pg_monitor TO grafana_reader;
	GRANT USAGE ON SCHEMA history TO grafana_reader;
	GRANT SELECT ON ALL TABLES IN SCHEMA history TO grafana_reader;
});
if ($HISTORY ne 'local')
{
	# the foreign table reads Databricks with the querying role's user mapping
	$node->safe_psql('postgres', q{
		CREATE USER MAPPING FOR grafana_reader SERVER emu
		  OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
	});
}
my $reader = $node->connstr('postgres') . ' user=grafana_reader';

my $now = time;
$board->set_range($now - 15 * 60, $now + 1);    # the dashboard's default: now-15m .. now

sub run_query { return GrafanaBoard::run_query($node, $reader, $_[0]); }

sub expand
{
	my ($sql, $vars, $panel) = @_;
	return $board->expand({ sql => $sql, panel => $panel || {} }, $vars);
}

# ------------------------------------------------------------------
# Template variables, in their order (a later one may use an earlier one)
# ------------------------------------------------------------------
my %vars;
my %var_values;
for my $v ($board->variables)
{
	if ($v->{type} eq 'query')
	{
		my $label = "variable $v->{name}";
		my $sql = eval { expand(ref $v->{query} ? $v->{query}{rawSql} : $v->{query}, \%vars) };
		my $r = $sql ? eval { run_query($sql) } : undef;
		my @problems = $r ? $board->shape_problems({ format => 'table', panel => { type => 'variable' } },
			$r, $expect{$label}) : ($@ || 'expansion failed');
		is(join('; ', @problems), '', "$label: its query runs and returns " . join(', ', @{ $expect{$label} }))
		  or diag("SQL:\n" . ($sql // $v->{query}));
		my $value = GrafanaBoard::column($r || { cols => [] }, '__value') // [ map { $_->[0] } @{ $r ? $r->{rows} : [] } ];
		$var_values{ $v->{name} } = $value;
		$board->set_options($v->{name}, $value);
		$vars{ $v->{name} } = $v->{current}{value};
		$vars{ $v->{name} } = $v->{current}{value}[0] if ref $vars{ $v->{name} } eq 'ARRAY' && @{ $vars{ $v->{name} } } == 1;
		# a query variable's current value must be one it can take
		$vars{ $v->{name} } = $value->[0]
		  unless $vars{ $v->{name} } eq '$__all' || grep { $_ eq $vars{ $v->{name} } } @$value;
	}
	elsif ($v->{type} eq 'custom')
	{
		my @opts = map { s/^\s+|\s+$//gr } split /,/, $v->{query};
		ok((grep { $_ eq $v->{current}{value} } @opts), "variable $v->{name}: current value $v->{current}{value} is one of @opts");
		$board->set_options($v->{name}, \@opts);
		$vars{ $v->{name} } = $v->{current}{value};
	}
	else
	{
		fail("variable $v->{name}: type $v->{type} not checked by this test");
	}
}
is_deeply($var_values{stream}, ['tx'], 'the stream variable lists the stream');
ok(@{ $var_values{offset} } >= 1 && $var_values{offset}[0] eq '0', 'the page variable starts at offset 0');

# ------------------------------------------------------------------
# Every target: with stream = All, then with stream = 'tx', and the table on
# its second page
# ------------------------------------------------------------------
my @scenarios = (
	[ 'All streams', { %vars } ],
	[ "stream 'tx'", { %vars, stream => ['tx'], offset => $var_values{offset}[1] // $var_values{offset}[0] } ],
);
for my $s (@scenarios)
{
	my ($name, $vars) = @$s;
	for my $t (@targets)
	{
		my $sql = eval { $board->expand($t, $vars) };
		my @problems;
		if (!defined $sql) { @problems = ("expansion: $@"); }
		else
		{
			my $r = eval { run_query($sql) };
			@problems = $@ ? ($@) : $board->shape_problems($t, $r, $expect{ $t->{label} });
		}
		is(join('; ', @problems), '', "$name: $t->{label} ($t->{format})") or diag("SQL:\n$sql");
	}
}

# The time series keep up with the stream: the last throughput samples are
# the generator's rate
my $tdata = run_query($board->expand($board->target('Throughput'), { %vars }))->{rows};
my $last = $tdata->[-1][2];
ok($last > 50, "the Throughput panel's last point is a live rate ($last rows/s)");

# History panels agree with the table: stop the traffic so that the Delta
# table holds still
$node->safe_psql('postgres', q{SELECT zerobus.generator_stop('tx')});
wait_until(30, q{SELECT NOT running FROM zerobus.generator_status()});
$node->safe_psql('postgres', q{SELECT zerobus.flush('tx', '60s')});
$board->set_range($now - 15 * 60, time + 1);    # the time range now covers every row
my $sdata = run_query($board->expand($board->target('Transactions in the time range'), { %vars }))->{rows};
is($sdata->[0][0], $node->safe_psql('postgres', 'SELECT count(*) FROM history.financial_transactions'),
	'the summary counts every transaction of the time range');
my $page = $board->target('Transactions');
my $p1 = run_query($board->expand($page, { %vars, offset => 0 }))->{rows};
my $p2 = run_query($board->expand($page, { %vars, offset => $vars{page_size} }))->{rows};
is(scalar(@$p1), $vars{page_size}, "a page holds page_size ($vars{page_size}) rows");
ok(GrafanaBoard::time_key($p1->[-1][0]) ge GrafanaBoard::time_key($p2->[0][0]) && $p1->[-1][1] ne $p2->[0][1],
	'the second page follows the first, newest first');

$node->stop;
$emu->stop;
done_testing();
