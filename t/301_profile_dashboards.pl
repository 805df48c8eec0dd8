# The sensors, orders and weblogs dashboards (dashboards/sensors.json,
# orders.json, weblogs.json) against a live server with all three profiles
# streaming at once through ZeroBus (the emulator): every panel target,
# annotation and template variable query is expanded as Grafana would
# (GrafanaBoard.pm) and run as a role holding only pg_monitor and SELECT on
# the history schema; each must return rows of the shape its panel type needs
# (geomap: latitude and longitude; time series: a time column first, sorted;
# single-value stat: one row; tables and charts: rows, with the columns
# listed here). Then, with the traffic stopped, what the panels say is
# checked against the data: the map's latest positions against every
# reading, the per-minute orders against the total, the latency percentiles
# from the warehouse's histogram against exact ones, the anomaly panels
# against an injected incident; and what each history panel sends to the
# SQL warehouse (EXPLAIN VERBOSE), as dashboards/README.md says.
use strict;
use warnings;
use utf8;

use File::Basename qw(dirname);
use File::Spec;
use PostgreSQL::Test::Utils;
use Test::More;
use GrafanaBoard;
use ZerobusEmulator;
use ZerobusNode;

my $root = File::Spec->rel2abs(dirname(__FILE__) . '/..');
my $DS_TYPE = 'grafana-postgresql-datasource';
my $node;

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

# profile => [ stream, Delta table (and foreign table), dashboard, throttle ]
my %profiles = (
	sensors => [ 'sensors', 'sensor_readings', 'sensors', 40 ],
	orders => [ 'orders', 'orders', 'orders', 35 ],
	weblogs => [ 'weblogs', 'web_logs', 'weblogs', 40 ],
);
my @profiles = sort keys %profiles;

# ------------------------------------------------------------------
# The JSON models
# ------------------------------------------------------------------
open(my $fh, '<', "$root/dashboards/provisioning/datasources/zerobus.yaml") or die;
my ($ds_uid) = do { local $/; <$fh> } =~ /^\s+uid:\s*(\S+)\s*$/m;
close $fh;
my %board = map { $_ => GrafanaBoard->load("$root/dashboards/$profiles{$_}[2].json") } @profiles;
for my $p (@profiles)
{
	my $b = $board{$p};
	is(join("\n", $b->model_problems($DS_TYPE, $ds_uid)), '',
		"$p: every panel is on the grid, with raw SQL targets on the data source $ds_uid");
	ok($b->dash->{schemaVersion} >= 36 && $b->dash->{schemaVersion} <= 38 && !defined $b->dash->{id}
		  && $b->dash->{uid} eq "zerobus-$p", "$p: uid zerobus-$p, schemaVersion for Grafana 10.2, no id");
	my @rows = map { $_->{title} } $b->rows;
	ok((grep { /^Pipeline/ } @rows) && (grep { /history\.$profiles{$p}[1]\b/ } @rows),
		"$p: a pipeline row and a history.$profiles{$p}[1] row");
	is(join(', ', grep { /history\./ && !/history\.$profiles{$p}[1]\b/ }
		  map { $_->{sql} } $b->targets), '', "$p: its panels read history.$profiles{$p}[1] only");
}
my ($geomap) = grep { $_->{type} eq 'geomap' } $board{sensors}->panels;
ok($geomap && (grep { $_->{filterData}{options} eq 'A' && $_->{location}{latitude} eq 'latitude' }
		@{ $geomap->{options}{layers} })
	  && (grep { $_->{filterData}{options} eq 'B' && $_->{location}{longitude} eq 'longitude' }
		@{ $geomap->{options}{layers} }),
	'sensors: the geomap has a layer for the positions (A) and one for the tracks (B)');

# What each table-format target returns (name:kind; time series are checked
# generically). Kinds: num, text, time, bool.
my @STREAM_COLS = ('stream:text', 'state:text');
my %expect = (
	# the pipeline row of every board
	'State' => [@STREAM_COLS],
	'Rows ingested' => ['rows ingested:num'],
	'Rows/s' => ['rows/s:num'],
	'Success rate' => ['success rate:num'],
	'Queued / in flight' => [ 'queued:num', 'in flight:num' ],
	'Last error' => [ 'stream:text', 'last_error_at:time', 'last_error:text' ],
	'annotation Stream errors' => [ 'time:time', 'text:text', 'tags:text' ],
	# sensors
	'Devices active' => ['devices active:num'],
	'Readings/s' => ['readings/s:num'],
	'Average speed' => ['average speed:num'],
	'Low battery' => ['low battery:num'],
	'Average temperature' => ['average temperature:num'],
	'Average signal' => ['average signal:num'],
	'Where the devices are/A' => [
		qw(device_id:text latitude:num longitude:num battery_pct:num speed_kmh:num signal_dbm:num
		  temperature_c:num last_seen:time) ],
	'Where the devices are/B' =>
	  [qw(time:time device_id:text latitude:num longitude:num speed_kmh:num epoch:num)],
	'Devices' => [
		qw(device_id:text latitude:num longitude:num battery_pct:num speed_kmh:num signal_dbm:num
		  temperature_c:num last_seen:time) ],
	# orders
	'Orders in the time range' =>
	  [ 'orders:num', 'revenue:num', 'average order:num', 'units:num', 'customers:num', 'cancelled:num' ],
	'By status' => [ 'status:text', 'orders:num' ],
	'By region' => [ 'region:text', 'revenue:num', 'orders:num' ],
	'Top products' => [ 'product:text', 'revenue:num', 'units:num' ],
	'Recent orders' => [
		qw(ordered_at:time order_id:text customer_id:text product:text quantity:num unit_price:num
		  total:num status:text region:text) ],
	# weblogs
	'Requests in the time range' => [
		'requests:num', 'requests/s:num', '5xx:num', '4xx:num', 'mean latency:num', 'bytes:num',
		'clients:num' ],
	'Paths' => [ 'path:text', 'requests:num', '5xx %:num', 'mean:num', 'p50:num', 'p95:num', 'p99:num' ],
	'Log lines' => [
		qw(logged_at:time client_ip:text method:text path:text status:num response_bytes:num
		  latency_ms:num user_agent:text) ],
);
for my $p (@profiles)
{
	my @missing = grep { $_->{format} eq 'table' && !$expect{ $_->{label} } } $board{$p}->targets;
	is(join(', ', map { $_->{label} } @missing), '', "$p: every table target has its columns listed here");
}

# What each history target sends to the warehouse (dashboards/README.md):
# a pattern its EXPLAIN VERBOSE must match
my $AGG = qr/Relations: Aggregate on/;
my $BUCKETS = qr/Relations: Aggregate on .*Remote SQL: SELECT \(`epoch` - \(`epoch` % :p\d+\)\)/s;
my %pushdown = (
	'Devices active' => qr/Remote SQL: SELECT count\(DISTINCT `device_id`\)/,
	'Readings/s' => $AGG,
	'Average speed' => $AGG,
	'Low battery' => qr/Remote SQL: SELECT count\(DISTINCT CASE WHEN/,
	'Average temperature' => $AGG,
	'Average signal' => $AGG,
	# one statement: the stalest device's latest reading; a second: the readings since then
	'Where the devices are/A' =>
	  qr/GROUP BY 2 ORDER BY max\(`recorded_at`\) ASC NULLS LAST LIMIT 1.*Remote SQL: SELECT `device_id`, `latitude`/s,
	'Where the devices are/B' => qr/WHERE .*\(`device_id` IN \(/,
	'Devices' => qr/LIMIT 1\b/,
	'Battery' => $BUCKETS,
	'Temperature' => $BUCKETS,
	'Signal' => $BUCKETS,
	'Fleet' => $BUCKETS,
	'Readings per second' => $BUCKETS,
	'Orders in the time range' => qr/count\(DISTINCT `customer_id`\)/,
	'Orders and revenue per minute' => $BUCKETS,
	'By status' => qr/GROUP BY 1/,
	'Average order value by region' => $BUCKETS,
	'By region' => qr/GROUP BY 1/,
	'Top products' => qr/GROUP BY 1 ORDER BY sum\(.*\) DESC NULLS FIRST LIMIT 10/,
	'Recent orders' => qr/ORDER BY `ordered_at` DESC NULLS FIRST LIMIT 100/,
	'Requests in the time range' => qr/count\(DISTINCT `client_ip`\)/,
	'Requests per second by status class' => $BUCKETS,
	'Error rate' => $BUCKETS,
	'Latency anomalies' => $BUCKETS,
	'Error-rate anomalies' => $BUCKETS,
	'Latency p50 and p95 by path' => qr/min\(`latency_ms`\), max\(`latency_ms`\) .*GROUP BY 1, 2, 3/s,
	'Paths' => qr/GROUP BY 1, 2 ORDER BY/,
	'Log lines' => qr/ORDER BY `logged_at` DESC NULLS FIRST LIMIT 200/,
);
for my $p (@profiles)
{
	my @missing = grep { $_->{sql} =~ /history\./ && !$pushdown{ $_->{label} } } $board{$p}->targets;
	is(join(', ', map { $_->{label} } @missing), '', "$p: every history target has its remote SQL listed here");
}

# ------------------------------------------------------------------
# A live server: three Delta tables, three streams fed by generators, each
# stream ended once with UNAVAILABLE (errors, reconnects, the annotation)
# ------------------------------------------------------------------
my $emu = ZerobusEmulator->new;
$node = ZerobusNode::create('boards', $emu, conf => 'track_commit_timestamp = on');
for my $p (@profiles)
{
	my ($stream, $table) = @{ $profiles{$p} };
	$node->safe_psql('postgres', qq{
		SELECT zerobus.execute_remote('emu', 'CREATE TABLE main.default.$table (' || delta_columns || ')')
		  FROM zerobus.generator_profiles() WHERE profile = '$p';
		SELECT zerobus.generator_create_queue('$p', '${stream}_queue');
	});
}
$emu->faults({ end_stream => { after_requests => 100, status => 'UNAVAILABLE', streams => 3 } });
for my $p (@profiles)
{
	my ($stream, $table, undef, $throttle) = @{ $profiles{$p} };
	$node->safe_psql('postgres', qq{
		SELECT zerobus.create_stream('$stream', '${stream}_queue', 'emu', 'main.default.$table');
		SELECT zerobus.generator_start('$stream', '$p', throttle => $throttle);
	});
}
ok(wait_until(90, q{
	SELECT count(DISTINCT stream) = 3 AND bool_and(n >= 15) AND bool_and(r > 0)
	  FROM (SELECT stream, count(*) FILTER (WHERE rows_per_sec > 0) AS n, sum(reconnects) AS r
	          FROM zb_metrics_history GROUP BY stream) s}),
	'data flows on the three streams, each reconnected once');

# The foreign tables, as dashboards/README.md has them made, and Grafana's role
open($fh, '<', "$root/dashboards/history.sql") or die;
my $history_sql = do { local $/; <$fh> };
close $fh;
my ($rc, $out, $err) = $node->psql('postgres', $history_sql,
	extra_params => [ '-v', 'server=emu', '-v', 'delta_schema=main.default' ]);
is($rc, 0, 'dashboards/history.sql creates the foreign tables') or diag($err);
$node->safe_psql('postgres', q{
	ANALYZE history.sensor_readings;
	ANALYZE history.orders;
	ANALYZE history.web_logs;
	CREATE ROLE grafana_reader LOGIN;
	GRANT pg_monitor TO grafana_reader;
	GRANT USAGE ON SCHEMA history TO grafana_reader;
	GRANT SELECT ON ALL TABLES IN SCHEMA history TO grafana_reader;
	CREATE USER MAPPING FOR grafana_reader SERVER emu
	  OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
});
is($node->safe_psql('postgres', q{
	SELECT string_agg(b.rolname, ',') FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid
	 WHERE m.member = 'grafana_reader'::regrole}), 'pg_monitor', 'grafana_reader holds pg_monitor only');
my $reader = $node->connstr('postgres') . ' user=grafana_reader';

# ------------------------------------------------------------------
# Template variables, in order: query variables run as Grafana's role
# ------------------------------------------------------------------
sub variables_of
{
	my ($p) = @_;
	my $b = $board{$p};
	my %vars;
	for my $v ($b->variables)
	{
		my @values;
		if ($v->{type} eq 'query')
		{
			my $sql = $b->expand({ sql => $v->{query}, panel => {} }, \%vars);
			my $r = eval { GrafanaBoard::run_query($node, $reader, $sql) };
			is($@, '', "$p: variable $v->{name}: its query runs") or diag("SQL:\n$sql");
			@values = map { $_->[0] } @{ $r ? $r->{rows} : [] };
			ok(@values >= 1 && (!$r || ($r->{kinds}[0] eq 'text' && @{ $r->{cols} } == 1)),
				"$p: variable $v->{name}: one text column, " . scalar(@values) . ' values');
		}
		elsif ($v->{type} eq 'custom')
		{
			@values = map { s/^\s+|\s+$//gr } split /,/, $v->{query};
		}
		else
		{
			fail("$p: variable $v->{name}: type $v->{type} not handled by this test");
		}
		$b->set_options($v->{name}, \@values);
		my $cur = $v->{current}{value};
		my @cur = ref $cur ? @$cur : ($cur);
		ok((@cur == 1 && $cur[0] eq '$__all') || !(grep { my $c = $_; !grep { $_ eq $c } @values } @cur),
			"$p: variable $v->{name}: its current value (@cur) is one of its values");
		$vars{ $v->{name} } = $cur;
	}
	return \%vars;
}

# Every target of a board with these variables: runs, and has its shape
sub run_board
{
	my ($p, $scenario, $vars) = @_;
	my $b = $board{$p};
	my %results;
	for my $t ($b->targets)
	{
		my $sql = eval { $b->expand($t, $vars) };
		my @problems;
		my $r;
		if (!defined $sql) { @problems = ("expansion: $@"); }
		else
		{
			$r = eval { GrafanaBoard::run_query($node, $reader, $sql) };
			@problems = $@ ? ($@) : $b->shape_problems($t, $r, $expect{ $t->{label} });
		}
		is(join('; ', @problems), '', "$p, $scenario: $t->{label} ($t->{panel}{type}, $t->{format})")
		  or diag("SQL:\n" . ($sql // $t->{sql}));
		$results{ $t->{label} } = $r;
	}
	return \%results;
}

my %vars;
for my $p (@profiles)
{
	$board{$p}->set_range(time - 15 * 60, time + 1);    # the dashboards' default: the last 15 minutes
	$vars{$p} = variables_of($p);
	is_deeply($board{$p}{options}{stream}, [ $profiles{$p}[0] ],
		"$p: the stream variable lists the board's stream only (of three)");
	run_board($p, 'as saved', $vars{$p});
}

# Narrowed by the variables, as a user would
run_board('sensors', 'two devices', { %{ $vars{sensors} }, device => [ 'sensor-0007', 'sensor-0420' ] });
run_board('orders', 'paid, us-east', { %{ $vars{orders} }, status => ['paid'], region => ['us-east'] });
run_board('weblogs', 'GET /api/cart 2xx',
	{ %{ $vars{weblogs} }, status_class => ['2xx'], method => ['GET'], path => ['/api/cart'] });

# ------------------------------------------------------------------
# An incident in the web logs: 1,500 slow 503s in one second, after at
# least 15 seconds of ordinary traffic; with a 3-minute range the anomaly
# panels have one-second intervals, and that second must be flagged
# ------------------------------------------------------------------
my $incident = $node->safe_psql('postgres', q{
	INSERT INTO weblogs_queue (client_ip, method, path, status, response_bytes, latency_ms, user_agent)
	SELECT '10.66.0.' || i % 256, 'GET', '/api/cart', 503, 512, 2000 + random() * 1500, 'curl/7.88.1'
	  FROM generate_series(1, 1500) i;
	SELECT floor(extract(epoch FROM now()))::bigint;
});
sleep 2;    # ordinary traffic after the incident, so that it is not the last interval

# Stop the traffic so that the Delta tables hold still, then read everything
for my $p (@profiles)
{
	$node->safe_psql('postgres', "SELECT zerobus.generator_stop('$profiles{$p}[0]')");
}
ok(wait_until(30, q{SELECT bool_and(NOT running) FROM zerobus.generator_status()}), 'generators stopped');
for my $p (@profiles)
{
	$node->safe_psql('postgres', "SELECT zerobus.flush('$profiles{$p}[0]', '60s')");
}
my $now = time;
$_->set_range($now - 15 * 60, $now + 1) for values %board;

my %res;
$res{$_} = run_board($_, 'traffic stopped', $vars{$_}) for @profiles;

# The anomaly panels over the last 3 minutes
my $wb = $board{weblogs};
$wb->set_range($now - 180, $now + 1);
for my $label ('Latency anomalies', 'Error-rate anomalies')
{
	my $t = $wb->target($label);
	is(($wb->grafana_interval($t->{panel}))[1], 1000, "$label: one-second intervals over 3 minutes");
	my $r = GrafanaBoard::run_query($node, $reader, $wb->expand($t, $vars{weblogs}));
	my $anomaly = GrafanaBoard::column($r, 'anomaly');
	my $time = GrafanaBoard::column($r, 'time');
	my @flagged = map { $time->[$_] } grep { $anomaly->[$_] ne '\N' } 0 .. $#$time;
	ok((grep { $_ == $incident } @flagged), "$label: the incident's second ($incident) is flagged")
	  or diag("flagged: @flagged; rows:\n" . join("\n", map { join(' | ', @$_) } @{ $r->{rows} }));
	my ($before) = grep { $time->[$_] == $incident - 1 } 0 .. $#$time;
	ok(defined $before && GrafanaBoard::column($r, 'mean + 3σ')->[$before] ne '\N',
		"$label: the second before it has a threshold (enough history)");
}
$wb->set_range($now - 15 * 60, $now + 1);

# ------------------------------------------------------------------
# What the panels say, against the data
# ------------------------------------------------------------------
my $range_to = GrafanaBoard::rfc3339($now + 1);
my $range_from = GrafanaBoard::rfc3339($now - 15 * 60);

# The map's latest positions: every device of the last 5 minutes, with its newest reading
my $truth = $node->safe_psql('postgres', qq{
	SELECT string_agg(device_id || '=' || to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), ',' ORDER BY device_id)
	  FROM (SELECT DISTINCT ON (device_id) device_id, recorded_at FROM history.sensor_readings
	         WHERE recorded_at BETWEEN '$range_from' AND '$range_to'
	           AND recorded_at > '$range_to'::timestamptz - interval '5 minutes'
	         ORDER BY device_id, recorded_at DESC) l});
my $pos = $res{sensors}{'Where the devices are/A'};
my $ids = GrafanaBoard::column($pos, 'device_id');
my $seen = GrafanaBoard::column($pos, 'last_seen');
my $panel = join(',', map {
	my ($ts) = $seen->[$_] =~ /^(\S+ \S+?)(?:\+00)?$/;
	$ts .= '.000000' unless $ts =~ /\./;
	$ts =~ s/\.(\d+)$/'.' . substr($1 . '000000', 0, 6)/e;
	"$ids->[$_]=$ts" } sort { $ids->[$a] cmp $ids->[$b] } 0 .. $#$ids);
is($panel, $truth, 'sensors: the map has every device of the last 5 minutes at its newest reading ('
	  . scalar(@$ids) . ' devices)');
cmp_ok(scalar(@$ids), '>', 400, 'sensors: most of the 500 devices reported');

# Orders per minute add up to the orders in the range
my $summary = $res{orders}{'Orders in the time range'};
my $per_min = $res{orders}{'Orders and revenue per minute'};
my $bucket_s = ($board{orders}->grafana_interval($board{orders}->target('Orders and revenue per minute')->{panel}))[1] / 1000;
my ($n, $revenue) = (0, 0);
for my $row (@{ $per_min->{rows} })
{
	$n += $row->[1] * $bucket_s / 60;
	$revenue += $row->[2] * $bucket_s / 60;
}
is(sprintf('%.0f', $n), GrafanaBoard::column($summary, 'orders')->[0],
	"orders: the orders per minute ($bucket_s-second intervals) add up to the orders in the range");
my $rev = GrafanaBoard::column($summary, 'revenue')->[0];
ok(abs($revenue - $rev) < 0.01 + $rev * 1e-9, "orders: and the revenue per minute to the revenue ($rev)");
is(GrafanaBoard::column($summary, 'orders')->[0],
	$node->safe_psql('postgres', "SELECT count(*) FROM history.orders WHERE ordered_at BETWEEN '$range_from' AND '$range_to'"),
	'orders: the summary counts every order of the range');

# Latency percentiles of the warehouse's histogram: in the same bucket as
# the exact ones (percentile_disc over every row)
my @BOUNDS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000, 1500, 2000, 3000, 5000, 7000, 10000);
sub bucket_of { my ($v) = @_; for my $i (0 .. $#BOUNDS) { return $i if $v <= $BOUNDS[$i]; } return scalar @BOUNDS; }
my %exact = map { my @f = split /\|/; $f[0] => [ @f[ 1 .. 3 ] ] } split /\n/, $node->safe_psql('postgres', qq{
	SELECT endpoint, percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms),
	       percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_ms),
	       percentile_disc(0.99) WITHIN GROUP (ORDER BY latency_ms)
	  FROM history.web_logs WHERE logged_at BETWEEN '$range_from' AND '$range_to' GROUP BY endpoint});
my $paths = $res{weblogs}{'Paths'};
my @off;
for my $row (@{ $paths->{rows} })
{
	my ($path, @est) = @{$row}[ 0, 4, 5, 6 ];
	for my $i (0 .. 2)
	{
		push @off, "$path p" . (50, 95, 99)[$i] . " $est[$i] vs $exact{$path}[$i]"
		  if !$exact{$path} || bucket_of($est[$i]) != bucket_of($exact{$path}[$i]);
	}
}
is(scalar(@{ $paths->{rows} }), scalar(keys %exact), 'weblogs: Paths has every path');
is(join('; ', @off), '', 'weblogs: p50, p95, p99 of every path are in the exact percentile\'s bucket');

# What runs on the warehouse
for my $p (@profiles)
{
	my $b = $board{$p};
	for my $t (grep { $_->{sql} =~ /history\./ } $b->targets)
	{
		my ($prc, $plan, $perr) = $node->psql('postgres', 'EXPLAIN (VERBOSE, COSTS OFF) ' . $b->expand($t, $vars{$p}),
			connstr => $reader);
		like($plan, $pushdown{ $t->{label} }, "$p: $t->{label}: the warehouse runs what README says")
		  or diag($perr);
	}
}

$node->stop;
$emu->stop;
done_testing();
