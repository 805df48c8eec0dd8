# The Grafana dashboard (dashboards/zerobus.json) against a live server: the
# JSON model and the provisioning files agree (data source type and uid,
# targets, variables); then, with a generator streaming transactions through
# ZeroBus (the emulator), every panel target, annotation and template
# variable query is expanded the way Grafana would (template variables, then
# $__interval, then the PostgreSQL data source's macros) and run as a
# read-only role holding only pg_monitor; each must succeed and return rows of
# the shape its panel needs: time series with a "time" column first, sorted,
# numeric values and text labels; tables with the expected columns.
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use JSON::PP;
use POSIX qw(strftime);
use PostgreSQL::Test::Utils;
use Test::More;
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
my $dash = JSON::PP->new->decode(slurp("$root/dashboards/zerobus.json"));
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

# every panel, rows' nested panels included
my @panels;
for my $p (@{ $dash->{panels} })
{
	push @panels, $p;
	push @panels, @{ $p->{panels} || [] } if $p->{type} eq 'row';
}
my (%ids, %titles, @grid_errors, @ds_errors);
for my $p (@panels)
{
	$ids{ $p->{id} }++;
	next if $p->{type} eq 'row';
	$titles{ $p->{title} }++;
	my $g = $p->{gridPos};
	push @grid_errors, $p->{title}
	  unless $g && $g->{w} > 0 && $g->{h} > 0 && $g->{x} >= 0 && $g->{x} + $g->{w} <= 24;
	for my $d ($p->{datasource}, map { $_->{datasource} } @{ $p->{targets} || [] })
	{
		push @ds_errors, $p->{title}
		  unless $d && $d->{type} eq $DS_TYPE && $d->{uid} eq $ds_uid;
	}
}
is(scalar(grep { $_ > 1 } values %ids), 0, 'panel ids are unique');
is(scalar(grep { $_ > 1 } values %titles), 0, 'panel titles are unique');
is(join(', ', @grid_errors), '', 'every panel fits the 24-column grid');
is(join(', ', @ds_errors), '', "every panel and target refers to the data source as {type, uid: $ds_uid}");
my @rows = map { $_->{title} } grep { $_->{type} eq 'row' } @panels;
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

# Collect the targets: [ label, format, rawSql, panel interval ]
my @targets;
my @model_errors;
for my $p (@panels)
{
	next if $p->{type} eq 'row';
	push @model_errors, "$p->{title}: no targets" unless @{ $p->{targets} || [] };
	for my $t (@{ $p->{targets} || [] })
	{
		push @model_errors, "$p->{title}: format $t->{format}"
		  unless ($t->{format} // '') =~ /^(time_series|table)$/;
		push @model_errors, "$p->{title}: not a raw SQL query in code mode"
		  unless $t->{rawQuery} && ($t->{editorMode} // '') eq 'code' && $t->{rawSql} && $t->{refId};
		push @model_errors, "$p->{title}: a time series panel with a table target"
		  if $p->{type} eq 'timeseries' && $t->{format} ne 'time_series';
		push @targets, [ $p->{title}, $t->{format}, $t->{rawSql}, $p->{interval} ];
	}
}
for my $a (@{ $dash->{annotations}{list} })
{
	next if $a->{builtIn};
	push @model_errors, "annotation $a->{name}: data source"
	  unless $a->{datasource}{type} eq $DS_TYPE && $a->{datasource}{uid} eq $ds_uid;
	push @targets, [ "annotation $a->{name}", $a->{target}{format}, $a->{target}{rawSql}, undef ];
}
is(join("\n", @model_errors), '', 'every panel has raw SQL targets of format time_series or table');
my @unexpected = grep { $_->[1] eq 'table' && !$expect{ $_->[0] } } @targets;
is(join(', ', map { $_->[0] } @unexpected), '', 'every table target has expected columns in this test');

my %var_def = map { $_->{name} => $_ } @{ $dash->{templating}{list} };
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

# ------------------------------------------------------------------
# Grafana's interpolation
# ------------------------------------------------------------------
my $now = time;
my %range = (from => $now - 15 * 60, to => $now + 1);    # the dashboard's default: now-15m .. now

sub rfc3339 { return strftime('%Y-%m-%dT%H:%M:%SZ', gmtime($_[0])); }

# gtime.ParseInterval: 500ms, 1s, 5m, 1h, 1d, 1w
sub interval_seconds
{
	my ($s) = @_;
	my ($n, $u) = $s =~ /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)$/ or die "interval $s";
	return $n * { ms => 0.001, s => 1, m => 60, h => 3600, d => 86400, w => 604800, y => 31536000 }->{$u};
}

# $__interval as Grafana computes it: the range over the panel's data points,
# at least the panel's (or the data source's) minimum interval
sub grafana_interval
{
	my ($min) = @_;
	my $s = ($range{to} - $range{from}) / 1000;
	my $m = interval_seconds($min || '1s');
	$s = $m if $s < $m;
	$s = int($s + 0.5) if $s >= 1;
	return ($s >= 1 ? "${s}s" : int($s * 1000) . 'ms', int($s * 1000));
}

# The macros of Grafana's PostgreSQL data source (pkg/tsdb/grafana-postgresql-datasource/macros.go)
sub expand_macros
{
	my ($sql) = @_;
	my $err;
	my $orig = $sql;
	my $evaluate;
	$evaluate = sub {
		my ($name, @args) = @_;
		if ($name eq '__time') { return "$args[0] AS \"time\""; }
		if ($name eq '__timeEpoch') { return "extract(epoch from $args[0]) as \"time\""; }
		if ($name eq '__timeFilter')
		{
			return sprintf("%s BETWEEN '%s' AND '%s'", $args[0], rfc3339($range{from}), rfc3339($range{to}));
		}
		if ($name eq '__timeFrom') { return "'" . rfc3339($range{from}) . "'"; }
		if ($name eq '__timeTo') { return "'" . rfc3339($range{to}) . "'"; }
		if ($name eq '__timeGroup')
		{
			die "$name needs a column and an interval\n" if @args < 2;
			(my $i = $args[1]) =~ s/^'|'$//g;
			my $s = interval_seconds($i);
			return "floor(extract(epoch from $args[0])/$s)*$s";
		}
		if ($name eq '__timeGroupAlias') { return $evaluate->('__timeGroup', @args) . ' AS "time"'; }
		if ($name eq '__unixEpochFilter')
		{
			return "$args[0] >= $range{from} AND $args[0] <= $range{to}";
		}
		die "unknown macro \$$name\n";
	};
	$sql =~ s{\$([_a-zA-Z0-9]+)\(([^\)]*)\)}{
		my ($name, $args, $whole) = ($1, $2, $&);
		# Grafana: $__timeGroup directly followed by a comma means $__timeGroupAlias
		$name = '__timeGroupAlias' if $name eq '__timeGroup' && substr($orig, index($orig, $whole) + length($whole), 1) eq ',';
		my $r = eval { $evaluate->($name, map { s/^\s+|\s+$//gr } split(/,/, $args, -1)) };
		$err //= $@ unless defined $r;
		defined $r ? $r : 'macro_error()';
	}ge;
	die $err if $err;
	return $sql;
}

# Template variables as the SQL data sources format them: a multi-value or
# include-all variable becomes a list of quoted literals (a custom all value
# goes in as it is); any other variable its value, quotes doubled.
sub expand_variables
{
	my ($sql, $vars, $interval) = @_;
	my ($iv, $ivms) = grafana_interval($interval);
	$sql =~ s/\$__interval_ms\b/$ivms/g;
	$sql =~ s/\$__interval\b/$iv/g;
	$sql =~ s/\$__unixEpochFrom\(\)/$range{from}/g;
	$sql =~ s/\$__unixEpochTo\(\)/$range{to}/g;
	my $subst = sub {
		my ($name, $whole) = @_;
		return $whole if $name =~ /^__/;    # macros and Grafana's own variables
		die "unknown template variable \$$name\n" unless exists $vars->{$name};
		my $def = $var_def{$name};
		my $v = $vars->{$name};
		if (ref $v eq 'ARRAY' || $def->{multi} || $def->{includeAll})
		{
			return $def->{allValue} if !ref $v && $v eq '$__all' && $def->{allValue};
			return join(',', map { "'" . s/'/''/gr . "'" } (ref $v ? @$v : ($v)));
		}
		return $v =~ s/'/''/gr;
	};
	$sql =~ s/\$\{(\w+)\}/$subst->($1, $&)/ge;
	$sql =~ s/\$(\w+)/$subst->($1, $&)/ge;
	return $sql;
}

sub expand
{
	my ($sql, $vars, $interval) = @_;
	return expand_macros(expand_variables($sql, $vars, $interval));
}

# ------------------------------------------------------------------
# Running SQL as Grafana's role
# ------------------------------------------------------------------
my $FS = "\x1f";
my $RS = "\x1e";

# ([column names], [types], [[row values]]) or dies with psql's error
sub run_query
{
	my ($sql) = @_;
	local $ENV{PGTZ} = 'UTC';
	my ($out, $err) = ('', '');
	my @fmt = ('-P', 'tuples_only=off', '-P', 'footer=off', '-F', $FS, '-R', $RS, '-P', 'null=\N');
	my $rc = $node->psql('postgres', "$sql\n\\gdesc\n", connstr => $reader, stdout => \$out,
		stderr => \$err, extra_params => \@fmt);
	die "describe failed: $err\n" if $rc != 0 || $err ne '';
	my @desc = map { [ split /$FS/, $_, -1 ] } grep { length } split /$RS/, $out;
	shift @desc;    # Column|Type header
	($out, $err) = ('', '');
	$rc = $node->psql('postgres', "$sql;\n", connstr => $reader, stdout => \$out, stderr => \$err,
		extra_params => \@fmt);
	die "query failed: $err\n" if $rc != 0 || $err ne '';
	$out =~ s/\n\z//;
	my @lines = split /$RS/, $out, -1;
	pop @lines if @lines && $lines[-1] eq '';
	my $header = shift @lines;
	my @names = split /$FS/, $header // '', -1;
	my @data = map { [ split /$FS/, $_, -1 ] } @lines;
	return ([ map { $_->[0] } @desc ], [ map { $_->[1] } @desc ], \@data, \@names);
}

my $NUM = qr/^(smallint|integer|bigint|numeric(\(\d+,\d+\))?|real|double precision)$/;
my $TEXT = qr/^(text|character varying|character|name)\b/;
my $TIME = qr/^timestamp(\(\d\))? with(out)? time zone$/;

sub kind_of
{
	my ($type) = @_;
	return 'num' if $type =~ $NUM;
	return 'text' if $type =~ $TEXT;
	return 'time' if $type =~ $TIME;
	return 'bool' if $type eq 'boolean';
	return $type;
}

sub is_number { return $_[0] eq '\N' || $_[0] =~ /^-?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i || $_[0] =~ /^(NaN|-?Infinity)$/; }

# A comparable key for a time value: epoch numbers, or UTC timestamps as text
sub time_key
{
	my ($v) = @_;
	return sprintf('%020.6f', $v) if $v =~ /^-?[\d.]+$/;
	my ($d, $t, $f) = $v =~ /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d+))?\+00$/ or return undef;
	return "$d $t." . substr(($f // '') . '000000', 0, 6);
}

# The checks of one target's result; returns a list of problems
sub check_result
{
	my ($label, $format, $cols, $types, $data, $names) = @_;
	my @p;
	push @p, 'result columns differ from the description' unless join($FS, @$cols) eq join($FS, @$names);
	push @p, 'no rows' unless @$data;
	my @kinds = map { kind_of($_) } @$types;
	if ($format eq 'time_series')
	{
		push @p, "first column is \"$cols->[0]\", not \"time\"" unless @$cols && $cols->[0] eq 'time';
		push @p, "time column is $types->[0]" unless $kinds[0] =~ /^(time|num)$/;
		my @labels = grep { $kinds[$_] eq 'text' } 1 .. $#$cols;
		my @values = grep { $kinds[$_] eq 'num' } 1 .. $#$cols;
		my @other = grep { $kinds[$_] !~ /^(text|num)$/ } 1 .. $#$cols;
		push @p, 'no numeric value column' unless @values;
		push @p, "columns neither numbers nor labels: @{$cols}[@other]" if @other;
		my ($prev, $prev_raw, %seen);
		for my $r (@$data)
		{
			my $k = time_key($r->[0]);
			if (!defined $k || $r->[0] eq '\N') { push @p, "time value $r->[0]"; last; }
			if (defined $prev && $k lt $prev) { push @p, "not sorted by time: $r->[0] after $prev_raw"; last; }
			($prev, $prev_raw) = ($k, $r->[0]);
			my $series = join($FS, $k, @{$r}[@labels]);
			if ($seen{$series}++) { push @p, "two rows for one time and series: $r->[0] @{$r}[@labels]"; last; }
			my @bad = grep { !is_number($r->[$_]) } @values;
			if (@bad) { push @p, "not a number: $r->[$bad[0]] in $cols->[$bad[0]]"; last; }
		}
	}
	else
	{
		my $want = join(', ', @{ $expect{$label} || [] });
		my $got = join(', ', map { "$cols->[$_]:$kinds[$_]" } 0 .. $#$cols);
		push @p, "columns $got, want $want" unless $got eq $want;
		for my $i (grep { $kinds[$_] eq 'num' } 0 .. $#$cols)
		{
			my @bad = grep { !is_number($_->[$i]) } @$data;
			push @p, "not a number in $cols->[$i]: $bad[0][$i]" if @bad;
		}
	}
	return @p;
}

# ------------------------------------------------------------------
# Template variables, in their order (a later one may use an earlier one)
# ------------------------------------------------------------------
my %vars;
my %var_values;
for my $v (@{ $dash->{templating}{list} })
{
	if ($v->{type} eq 'query')
	{
		my $label = "variable $v->{name}";
		my $sql = eval { expand(ref $v->{query} ? $v->{query}{rawSql} : $v->{query}, \%vars, undef) };
		my @r = $sql ? eval { run_query($sql) } : ();
		my $error = $@;
		my @problems = $error ? ($error) : check_result($label, 'table', @r);
		is(join('; ', @problems), '', "$label: its query runs and returns " . join(', ', @{ $expect{$label} }))
		  or diag("SQL:\n" . ($sql // $v->{query}));
		my ($cols, $types, $data) = @r;
		my ($vi) = grep { $cols->[$_] eq '__value' } 0 .. $#{ $cols || [] };
		$var_values{ $v->{name} } = [ map { $_->[ $vi // 0 ] } @{ $data || [] } ];
		$vars{ $v->{name} } = $v->{current}{value};
		$vars{ $v->{name} } = $v->{current}{value}[0] if ref $vars{ $v->{name} } eq 'ARRAY' && @{ $vars{ $v->{name} } } == 1;
		# a query variable's current value must be one it can take
		$vars{ $v->{name} } = $var_values{ $v->{name} }[0]
		  unless $vars{ $v->{name} } eq '$__all' || grep { $_ eq $vars{ $v->{name} } } @{ $var_values{ $v->{name} } };
	}
	elsif ($v->{type} eq 'custom')
	{
		my @opts = map { s/^\s+|\s+$//gr } split /,/, $v->{query};
		ok((grep { $_ eq $v->{current}{value} } @opts), "variable $v->{name}: current value $v->{current}{value} is one of @opts");
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
		my ($label, $format, $raw, $interval) = @$t;
		my $sql = eval { expand($raw, $vars, $interval) };
		my @problems;
		if (!defined $sql) { @problems = ("expansion: $@"); }
		else
		{
			my @r = eval { run_query($sql) };
			@problems = $@ ? ($@) : check_result($label, $format, @r);
			if (!@problems && $format eq 'time_series')
			{
				# time series panels show data in the range
				my $n = scalar @{ $r[2] };
				@problems = ("only $n rows") if $n < 1;
			}
		}
		is(join('; ', @problems), '', "$name: $label ($format)") or diag("SQL:\n$sql");
	}
}

# The time series keep up with the stream: the last throughput samples are
# the generator's rate
my ($thr) = grep { $_->[0] eq 'Throughput' } @targets;
my (undef, undef, $tdata) = run_query(expand($thr->[2], { %vars }, $thr->[3]));
my $last = $tdata->[-1][2];
ok($last > 50, "the Throughput panel's last point is a live rate ($last rows/s)");

# History panels agree with the table: stop the traffic so that the Delta
# table holds still
$node->safe_psql('postgres', q{SELECT zerobus.generator_stop('tx')});
wait_until(30, q{SELECT NOT running FROM zerobus.generator_status()});
$node->safe_psql('postgres', q{SELECT zerobus.flush('tx', '60s')});
$range{to} = time + 1;    # the time range now covers every row
my ($sum) = grep { $_->[0] eq 'Transactions in the time range' } @targets;
my (undef, undef, $sdata) = run_query(expand($sum->[2], { %vars }, undef));
is($sdata->[0][0], $node->safe_psql('postgres', 'SELECT count(*) FROM history.financial_transactions'),
	'the summary counts every transaction of the time range');
my ($page) = grep { $_->[0] eq 'Transactions' } @targets;
my (undef, undef, $p1) = run_query(expand($page->[2], { %vars, offset => 0 }, undef));
my (undef, undef, $p2) = run_query(expand($page->[2], { %vars, offset => $vars{page_size} }, undef));
is(scalar(@$p1), $vars{page_size}, "a page holds page_size ($vars{page_size}) rows");
ok(time_key($p1->[-1][0]) ge time_key($p2->[0][0]) && $p1->[-1][1] ne $p2->[0][1],
	'the second page follows the first, newest first');

$node->stop;
$emu->stop;
done_testing();
