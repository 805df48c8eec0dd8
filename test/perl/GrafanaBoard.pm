# GrafanaBoard: a Grafana dashboard (dashboards/*.json) as the TAP tests see
# it: its panels, targets and template variables; the SQL of a target
# expanded the way Grafana and its PostgreSQL data source expand it (template
# variables and Grafana's own $__ variables in the browser, then the data
# source's macros on the server); the query run through psql with its
# column names and types; and the checks of a result's shape against what
# the panel type needs.
#
#   my $board = GrafanaBoard->load("$root/dashboards/orders.json");
#   my @problems = $board->model_problems('grafana-postgresql-datasource', 'zerobus-pg');
#   $board->set_range($from_epoch, $to_epoch);
#   my $sql = $board->expand($target, \%variables);
#   my $r = GrafanaBoard::run_query($node, $connstr, $sql);   # {cols, types, kinds, rows}
#   my @shape = $board->shape_problems($target, $r);
#
# Grafana's code this follows: rangeutil.calculateInterval and roundInterval
# (the interval), the SQL data sources' variable formatting (multi-value and
# include-All variables become quoted, comma-separated lists; a custom All
# value goes in as written), pkg/tsdb/grafana-postgresql-datasource/macros.go
# (the macros).
package GrafanaBoard;

use strict;
use warnings;

use Encode qw(decode encode);
use JSON::PP;
use POSIX qw(strftime);

sub load
{
	my ($class, $path) = @_;
	open(my $fh, '<:raw', $path) or die "$path: $!";
	local $/;
	my $dash = JSON::PP->new->utf8->decode(<$fh>);    # text as characters
	close $fh;
	my $self = bless { path => $path, dash => $dash, panels => [], targets => [] }, $class;

	# every panel, rows' nested panels included
	for my $p (@{ $dash->{panels} || [] })
	{
		push @{ $self->{panels} }, $p;
		push @{ $self->{panels} }, @{ $p->{panels} || [] } if $p->{type} eq 'row';
	}
	for my $p (@{ $self->{panels} })
	{
		next if $p->{type} eq 'row';
		my @t = @{ $p->{targets} || [] };
		for my $t (@t)
		{
			push @{ $self->{targets} }, {
				label => @t > 1 ? "$p->{title}/$t->{refId}" : $p->{title},
				panel => $p,
				format => $t->{format} // '',
				sql => $t->{rawSql},
				target => $t,
			};
		}
	}
	for my $a (@{ $dash->{annotations}{list} || [] })
	{
		next if $a->{builtIn};
		push @{ $self->{targets} }, {
			label => "annotation $a->{name}",
			panel => { type => 'annotation', title => $a->{name} },
			format => $a->{target}{format} // '',
			sql => $a->{target}{rawSql},
			target => $a->{target},
			annotation => $a,
		};
	}
	$self->{var_def} = { map { $_->{name} => $_ } @{ $dash->{templating}{list} || [] } };
	$self->set_range(time - 15 * 60, time + 1);
	return $self;
}

sub dash { return $_[0]{dash}; }
sub panels { return grep { $_->{type} ne 'row' } @{ $_[0]{panels} }; }
sub rows { return grep { $_->{type} eq 'row' } @{ $_[0]{panels} }; }
sub targets { return @{ $_[0]{targets} }; }
sub variables { return @{ $_[0]{dash}{templating}{list} || [] }; }
sub variable { return $_[0]{var_def}{ $_[1] }; }

sub target
{
	my ($self, $label) = @_;
	my ($t) = grep { $_->{label} eq $label } @{ $self->{targets} };
	die "no target $label in $self->{path}\n" unless $t;
	return $t;
}

# The time range, in epoch seconds
sub set_range
{
	my ($self, $from, $to) = @_;
	$self->{range} = { from => $from, to => $to };
}

sub range { return $_[0]{range}; }

# ------------------------------------------------------------------
# The model: what every panel and target must be for the tests to run them
# ------------------------------------------------------------------
sub model_problems
{
	my ($self, $ds_type, $ds_uid) = @_;
	my @p;
	my (%ids, %titles);
	for my $panel (@{ $self->{panels} })
	{
		$ids{ $panel->{id} // 'none' }++;
		next if $panel->{type} eq 'row';
		$titles{ $panel->{title} }++;
		my $g = $panel->{gridPos};
		push @p, "$panel->{title}: outside the 24-column grid"
		  unless $g && $g->{w} > 0 && $g->{h} > 0 && $g->{x} >= 0 && $g->{x} + $g->{w} <= 24;
		push @p, "$panel->{title}: no targets" unless @{ $panel->{targets} || [] };
		for my $d ($panel->{datasource}, map { $_->{datasource} } @{ $panel->{targets} || [] })
		{
			push @p, "$panel->{title}: data source is not {type: $ds_type, uid: $ds_uid}"
			  unless $d && ($d->{type} // '') eq $ds_type && ($d->{uid} // '') eq $ds_uid;
		}
		for my $t (@{ $panel->{targets} || [] })
		{
			push @p, "$panel->{title}: format " . ($t->{format} // 'none')
			  unless ($t->{format} // '') =~ /^(time_series|table)$/;
			push @p, "$panel->{title}: not a raw SQL query in code mode"
			  unless $t->{rawQuery} && ($t->{editorMode} // '') eq 'code' && $t->{rawSql} && $t->{refId};
			push @p, "$panel->{title}: a time series panel with a table target"
			  if $panel->{type} eq 'timeseries' && ($t->{format} // '') ne 'time_series';
			push @p, "$panel->{title}: a $panel->{type} panel with a time_series target"
			  if $panel->{type} =~ /^(geomap|table|barchart|piechart|bargauge)$/
			  && ($t->{format} // '') ne 'table';
		}
	}
	push @p, map { "panel id $_ is not unique" } grep { $ids{$_} > 1 } sort keys %ids;
	push @p, map { "panel title \"$_\" is not unique" } grep { $titles{$_} > 1 } sort keys %titles;
	for my $a (@{ $self->{dash}{annotations}{list} || [] })
	{
		next if $a->{builtIn};
		push @p, "annotation $a->{name}: data source"
		  unless ($a->{datasource}{type} // '') eq $ds_type && ($a->{datasource}{uid} // '') eq $ds_uid;
	}
	return @p;
}

# ------------------------------------------------------------------
# Grafana's interpolation
# ------------------------------------------------------------------
sub rfc3339 { return strftime('%Y-%m-%dT%H:%M:%SZ', gmtime($_[0])); }

# gtime.ParseInterval: 500ms, 1s, 5m, 1h, 1d, 1w, in milliseconds
sub interval_ms
{
	my ($s) = @_;
	my ($n, $u) = $s =~ /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)$/ or die "interval $s\n";
	return $n * { ms => 1, s => 1000, m => 60000, h => 3600000, d => 86400000, w => 604800000,
		y => 31536000000 }->{$u};
}

# rangeutil.roundInterval
my @ROUND = (
	[ 15, 10 ], [ 35, 20 ], [ 75, 50 ], [ 150, 100 ], [ 350, 200 ], [ 750, 500 ], [ 1500, 1000 ],
	[ 3500, 2000 ], [ 7500, 5000 ], [ 12500, 10000 ], [ 17500, 15000 ], [ 25000, 20000 ],
	[ 45000, 30000 ], [ 90000, 60000 ], [ 210000, 120000 ], [ 450000, 300000 ],
	[ 750000, 600000 ], [ 1050000, 900000 ], [ 1500000, 1200000 ], [ 2700000, 1800000 ],
	[ 5400000, 3600000 ], [ 9000000, 7200000 ], [ 16200000, 10800000 ], [ 32400000, 21600000 ],
	[ 86400000, 43200000 ], [ 604800000, 86400000 ]);

sub round_interval
{
	my ($ms) = @_;
	for my $r (@ROUND) { return $r->[1] if $ms < $r->[0]; }
	return 604800000;
}

# rangeutil.secondsToHms, for whole intervals
sub ms_text
{
	my ($ms) = @_;
	for my $u ([ 604800000, 'w' ], [ 86400000, 'd' ], [ 3600000, 'h' ], [ 60000, 'm' ], [ 1000, 's' ])
	{
		return int($ms / $u->[0]) . $u->[1] if $ms >= $u->[0];
	}
	return int($ms) . 'ms';
}

# $__interval of a panel: the range over its data points (maxDataPoints, or
# about a panel's width in pixels), rounded, at least the panel's (or the
# data source's: provisioning sets timeInterval 1s) minimum interval
sub grafana_interval
{
	my ($self, $panel) = @_;
	my $points = $panel->{maxDataPoints} || 1000;
	my $ms = round_interval(($self->{range}{to} - $self->{range}{from}) * 1000 / $points);
	my $low = interval_ms($panel->{interval} || '1s');
	$ms = $low if $low > $ms;
	return (ms_text($ms), $ms);
}

# The macros of Grafana's PostgreSQL data source
sub expand_macros
{
	my ($self, $sql) = @_;
	my %r = %{ $self->{range} };
	my $orig = $sql;
	my $err;
	my $evaluate;
	$evaluate = sub {
		my ($name, @args) = @_;
		return "$args[0] AS \"time\"" if $name eq '__time';
		return "extract(epoch from $args[0]) as \"time\"" if $name eq '__timeEpoch';
		return sprintf("%s BETWEEN '%s' AND '%s'", $args[0], rfc3339($r{from}), rfc3339($r{to}))
		  if $name eq '__timeFilter';
		return "'" . rfc3339($r{from}) . "'" if $name eq '__timeFrom';
		return "'" . rfc3339($r{to}) . "'" if $name eq '__timeTo';
		if ($name eq '__timeGroup')
		{
			die "$name needs a column and an interval\n" if @args < 2;
			(my $i = $args[1]) =~ s/^'|'$//g;
			my $s = interval_ms($i) / 1000;
			return "floor(extract(epoch from $args[0])/$s)*$s";
		}
		return $evaluate->('__timeGroup', @args) . ' AS "time"' if $name eq '__timeGroupAlias';
		return "$args[0] >= $r{from} AND $args[0] <= $r{to}" if $name eq '__unixEpochFilter';
		return "$r{from}" if $name eq '__unixEpochFrom';
		return "$r{to}" if $name eq '__unixEpochTo';
		die "unknown macro \$$name\n";
	};
	$sql =~ s{\$([_a-zA-Z0-9]+)\(([^\)]*)\)}{
		my ($name, $args, $whole) = ($1, $2, $&);
		# Grafana: $__timeGroup directly followed by a comma means $__timeGroupAlias
		$name = '__timeGroupAlias'
		  if $name eq '__timeGroup' && substr($orig, index($orig, $whole) + length($whole), 1) eq ',';
		my $v = eval { $evaluate->($name, map { s/^\s+|\s+$//gr } split(/,/, $args, -1)) };
		$err //= $@ unless defined $v;
		defined $v ? $v : 'macro_error()';
	}ge;
	die $err if $err;
	return $sql;
}

# Template variables as the SQL data sources format them, and Grafana's own
# $__interval, $__interval_ms, $__range_s, $__range_ms
sub expand_variables
{
	my ($self, $sql, $vars, $panel) = @_;
	my ($iv, $ivms) = $self->grafana_interval($panel || {});
	my $range_s = $self->{range}{to} - $self->{range}{from};
	$sql =~ s/\$__interval_ms\b/$ivms/g;
	$sql =~ s/\$__interval\b/$iv/g;
	$sql =~ s/\$__range_ms\b/$range_s * 1000/ge;
	$sql =~ s/\$__range_s\b/$range_s/g;
	my $subst = sub {
		my ($name, $whole) = @_;
		return $whole if $name =~ /^__/;    # macros
		die "unknown template variable \$$name\n" unless exists $vars->{$name};
		my $def = $self->{var_def}{$name} || {};
		my $v = $vars->{$name};
		if (ref $v eq 'ARRAY' || $def->{multi} || $def->{includeAll})
		{
			my @v = ref $v ? @$v : ($v);
			if (@v == 1 && $v[0] eq '$__all')
			{
				return $def->{allValue} if $def->{allValue};
				@v = @{ $self->{options}{$name} || die "\$$name = All, but no options known\n" };
			}
			return join(',', map { "'" . s/'/''/gr . "'" } @v);
		}
		return $v =~ s/'/''/gr;
	};
	$sql =~ s/\$\{(\w+)\}/$subst->($1, $&)/ge;
	$sql =~ s/\$(\w+)/$subst->($1, $&)/ge;
	return $sql;
}

# The options of a variable (what "All" stands for when it has no allValue)
sub set_options
{
	my ($self, $name, $values) = @_;
	$self->{options}{$name} = $values;
}

sub expand
{
	my ($self, $target, $vars) = @_;
	return $self->expand_macros($self->expand_variables($target->{sql}, $vars, $target->{panel}));
}

# ------------------------------------------------------------------
# Running SQL as Grafana's role
# ------------------------------------------------------------------
my $FS = "\x1f";
my $RS = "\x1e";
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

# { cols => [names], types => [types], kinds => [kinds], rows => [[values]] }
# (NULL is \N; text as characters), or dies with psql's error
sub run_query
{
	my ($node, $connstr, $sql) = @_;
	local $ENV{PGTZ} = 'UTC';
	local $ENV{PGCLIENTENCODING} = 'UTF8';
	my @fmt = ('-P', 'tuples_only=off', '-P', 'footer=off', '-F', $FS, '-R', $RS, '-P', 'null=\N');
	my ($out, $err) = ('', '');
	my $rc = $node->psql('postgres', encode('UTF-8', "$sql\n\\gdesc\n"), connstr => $connstr,
		stdout => \$out, stderr => \$err, extra_params => \@fmt);
	($out, $err) = (decode('UTF-8', $out), decode('UTF-8', $err));
	die "describe failed: $err\n" if $rc != 0 || $err ne '';
	my @desc = map { [ split /$FS/, $_, -1 ] } grep { length } split /$RS/, $out;
	shift @desc;    # Column|Type header
	($out, $err) = ('', '');
	$rc = $node->psql('postgres', encode('UTF-8', "$sql;\n"), connstr => $connstr, stdout => \$out,
		stderr => \$err, extra_params => \@fmt);
	($out, $err) = (decode('UTF-8', $out), decode('UTF-8', $err));
	die "query failed: $err\n" if $rc != 0 || $err ne '';
	$out =~ s/\n\z//;
	my @lines = split /$RS/, $out, -1;
	pop @lines if @lines && $lines[-1] eq '';
	my @names = split /$FS/, (shift @lines) // '', -1;
	my @types = map { $_->[1] } @desc;
	return {
		cols => [ map { $_->[0] } @desc ],
		types => \@types,
		kinds => [ map { kind_of($_) } @types ],
		rows => [ map { [ split /$FS/, $_, -1 ] } @lines ],
		names => \@names,
	};
}

sub is_number
{
	return $_[0] eq '\N' || $_[0] =~ /^-?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i
	  || $_[0] =~ /^(NaN|-?Infinity)$/;
}

# A comparable key for a time value: epoch numbers, or UTC timestamps as text
sub time_key
{
	my ($v) = @_;
	return sprintf('%020.6f', $v) if $v =~ /^-?[\d.]+$/;
	my ($d, $t, $f) = $v =~ /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d+))?\+00$/ or return undef;
	return "$d $t." . substr(($f // '') . '000000', 0, 6);
}

# The column of a result, by name
sub column
{
	my ($r, $name) = @_;
	my ($i) = grep { $r->{cols}[$_] eq $name } 0 .. $#{ $r->{cols} };
	return undef unless defined $i;
	return [ map { $_->[$i] } @{ $r->{rows} } ];
}

# What the panel type needs of a target's result (a list of problems).
# $expect: optional [ 'name:kind', ... ], the exact columns of a table result.
sub shape_problems
{
	my ($self, $target, $r, $expect) = @_;
	my @p;
	my ($cols, $kinds, $rows) = ($r->{cols}, $r->{kinds}, $r->{rows});
	my $type = $target->{panel}{type};
	push @p, 'result columns differ from the description'
	  unless join($FS, @$cols) eq join($FS, @{ $r->{names} });
	push @p, 'no rows' unless @$rows;

	if ($target->{format} eq 'time_series')
	{
		push @p, "first column is \"$cols->[0]\", not \"time\"" unless @$cols && $cols->[0] eq 'time';
		push @p, "time column is $r->{types}[0]" unless ($kinds->[0] // '') =~ /^(time|num)$/;
		my @labels = grep { $kinds->[$_] eq 'text' } 1 .. $#$cols;
		my @values = grep { $kinds->[$_] eq 'num' } 1 .. $#$cols;
		my @other = grep { $kinds->[$_] !~ /^(text|num)$/ } 1 .. $#$cols;
		push @p, 'no numeric value column' unless @values;
		push @p, "columns neither numbers nor labels: @{$cols}[@other]" if @other;
		my ($prev, $prev_raw, %seen);
		for my $row (@$rows)
		{
			my $k = time_key($row->[0]);
			if (!defined $k || $row->[0] eq '\N') { push @p, "time value $row->[0]"; last; }
			if (defined $prev && $k lt $prev) { push @p, "not sorted by time: $row->[0] after $prev_raw"; last; }
			($prev, $prev_raw) = ($k, $row->[0]);
			my $series = join($FS, $k, @{$row}[@labels]);
			if ($seen{$series}++) { push @p, "two rows for one time and series: $row->[0] @{$row}[@labels]"; last; }
			my @bad = grep { !is_number($row->[$_]) } @values;
			if (@bad) { push @p, "not a number: $row->[$bad[0]] in $cols->[$bad[0]]"; last; }
		}
		return @p;
	}

	if (($type eq 'stat' || $type eq 'gauge') && !$target->{panel}{options}{reduceOptions}{values})
	{
		# one value per field: the panel reduces the rows, so it needs one
		push @p, scalar(@$rows) . ' rows, a single-value panel needs one' if @$rows > 1;
	}
	if ($type eq 'geomap')
	{
		for my $c ([ 'latitude', 90 ], [ 'longitude', 180 ])
		{
			my ($name, $limit) = @$c;
			my $v = column($r, $name);
			if (!$v) { push @p, "no $name column"; next; }
			my ($i) = grep { $cols->[$_] eq $name } 0 .. $#$cols;
			push @p, "$name is $r->{types}[$i], not a number" unless $kinds->[$i] eq 'num';
			my @bad = grep { !is_number($_) || $_ eq '\N' || abs($_) > $limit } @$v;
			push @p, "$name out of range: $bad[0]" if @bad;
		}
	}
	if ($type =~ /^(barchart|piechart|bargauge)$/)
	{
		push @p, 'no numeric column to draw' unless grep { $_ eq 'num' } @$kinds;
	}
	if ($expect)
	{
		my $want = join(', ', @$expect);
		my $got = join(', ', map { "$cols->[$_]:$kinds->[$_]" } 0 .. $#$cols);
		push @p, "columns $got, want $want" unless $got eq $want;
	}
	for my $i (grep { $kinds->[$_] eq 'num' } 0 .. $#$cols)
	{
		my @bad = grep { !is_number($_->[$i]) } @$rows;
		push @p, "not a number in $cols->[$i]: $bad[0][$i]" if @bad;
	}
	return @p;
}

1;
