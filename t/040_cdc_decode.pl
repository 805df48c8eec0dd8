# Change capture, decoding (docs/DESIGN.md, "Change capture"): what the
# output plugin makes of committed changes, through the in-process driver
# (zerobus.peek_changes, waiting for commits) and through PostgreSQL's SQL
# interface (pg_logical_slot_get_*changes with the plugin), which must agree
# byte for byte.  Every supported column type in every change type (insert,
# update pre/postimage, delete, a key change), TOASTed values, rolled-back
# transactions and subtransactions, interleaved concurrent transactions in
# commit order (the log replayed by key in _seq order gives the table), a
# transaction larger than logical_decoding_work_mem, ADD COLUMN mid-stream,
# a partitioned table as its root, TRUNCATE, changes no record can carry,
# the wal_level and output_plugin_libraries refusals.  Delivery by the
# stream worker: t/042_cdc_stream.pl and t/043_cdc_crash.pl.
use strict;
use warnings;

use File::Basename qw(dirname);
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusEmulator;
use ZerobusNode;

my $emu = ZerobusEmulator->new;
my $json = JSON::PP->new->canonical;

# ------------------------------------------------------------------
# wal_level: a server without logical decoding says what to change
# ------------------------------------------------------------------
my $replica = ZerobusNode::create('cdc_replica', $emu);
$replica->safe_psql('postgres', 'CREATE TABLE t (id int PRIMARY KEY)');
my ($ret, $out, $err) = $replica->psql('postgres', "\\set VERBOSITY verbose\n"
	  . "SELECT zerobus.create_stream('s', source => 't', server => 'emu', target => 'main.default.t')");
like($err, qr/ERROR:  55000: change capture needs wal_level = logical/, 'wal_level replica: refused (55000)');
like($err, qr/HINT:  ALTER SYSTEM SET wal_level = logical; then restart the server/, 'wal_level: the hint says how');
$replica->stop;

my $node = ZerobusNode::create('cdc_decode', $emu, conf => join("\n",
	"wal_level = logical", "max_replication_slots = 20", "max_wal_senders = 10",
	"logical_decoding_work_mem = '64kB'", "zerobus.poll_interval = '200ms'"));
sub sql { return $node->safe_psql('postgres', $_[0]); }

# output_plugin_libraries (minor releases from 2026 on): refused until named
$node->safe_psql('postgres', 'CREATE TABLE t (id int PRIMARY KEY)');
if (sql(q{SELECT count(*) FROM pg_settings WHERE name = 'output_plugin_libraries'}) eq '1')
{
	($ret, $out, $err) = $node->psql('postgres',
		"SELECT zerobus.create_stream('s', source => 't', server => 'emu', target => 'main.default.t')");
	like($err, qr/output_plugin_libraries does not name zerobus_fdw/, 'output_plugin_libraries: refused until named');
	like($err, qr/HINT:  ALTER SYSTEM SET output_plugin_libraries = 'pgoutput', 'test_decoding', 'zerobus_fdw'/,
		'output_plugin_libraries: the hint keeps the list');
}
ZerobusNode::enable_cdc($node);

# ------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------

# Run SQL in a session of its own, in the background.
my $runs = 0;
sub start_psql
{
	my ($sql) = @_;
	my %q = (app => 'cdc' . ++$runs, out => '', err => '');
	$q{h} = IPC::Run::start(
		[ 'psql', '-X', '-At', '-F', "\t", '-v', 'ON_ERROR_STOP=1',
		  '-d', $node->connstr('postgres') . " application_name=$q{app}", '-c', $sql ],
		'>', \$q{out}, '2>', \$q{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return \%q;
}

sub finish_psql
{
	my ($q) = @_;
	$q->{h}->finish or diag("session $q->{app} failed: $q->{err}");
	return $q->{out};
}

# A peek that waits for commits: returns once its session sleeps in the
# extension's wait (the ephemeral slot exists, the copy is done).
sub start_peek
{
	my ($stream, $n) = @_;
	my $q = start_psql("SELECT seq, change_type, record::text, encode(data, 'hex')"
		  . " FROM zerobus.peek_changes('$stream', $n, '180 s')");
	# (a stream not established yet is read by a helper process the session
	# starts, which names the session's PID in its application_name)
	$node->poll_query_until('postgres', qq{
		SELECT count(*) = 1 FROM pg_stat_activity s
		  LEFT JOIN pg_stat_activity h
		    ON h.application_name = 'zerobus_fdw peek_changes for PID ' || s.pid
		 WHERE s.application_name = '$q->{app}'
		   AND 'Extension' IN (s.wait_event_type, h.wait_event_type)})
	  or die "peek of $stream never waited for commits: $q->{err}";
	return $q;
}

# [ { seq, type, rec (decoded JSON), hex } ] from a peek's output
sub parse_peek
{
	my ($out) = @_;
	my @r;
	for (split /\n/, $out)
	{
		my ($seq, $type, $rec, $hex) = split /\t/;
		push @r, { seq => $seq, type => $type, rec => decode_json($rec), hex => $hex };
	}
	return \@r;
}

sub strip_meta
{
	my ($rec) = @_;
	my %r = %$rec;
	delete @r{qw(_change_type _commit_lsn _commit_timestamp _seq)};
	return \%r;
}

# Deep comparison of decoded JSON; floats within 1e-6 (a real's text and
# its double differ in the last digits).
sub same
{
	my ($a, $b) = @_;
	return 0 if ref $a ne ref $b;
	if (ref $a eq 'HASH')
	{
		return 0 if join(',', sort keys %$a) ne join(',', sort keys %$b);
		for (keys %$a) { return 0 unless same($a->{$_}, $b->{$_}); }
		return 1;
	}
	if (ref $a eq 'ARRAY')
	{
		return 0 if @$a != @$b;
		for (0 .. $#$a) { return 0 unless same($a->[$_], $b->[$_]); }
		return 1;
	}
	return 1 if !defined $a && !defined $b;
	return 0 if !defined $a || !defined $b;
	if (JSON::PP::is_bool($a) || JSON::PP::is_bool($b)) { return ($a ? 1 : 0) == ($b ? 1 : 0); }
	if ($a =~ /^-?[0-9.]+(?:e[-+]?\d+)?$/i && $b =~ /^-?[0-9.]+(?:e[-+]?\d+)?$/i && ($a =~ /[.e]/i || $b =~ /[.e]/i))
	{
		return 1 if $a == $b;
		return abs($a - $b) <= 1e-6 * (abs($a) > abs($b) ? abs($a) : abs($b));
	}
	return "$a" eq "$b";
}

# ------------------------------------------------------------------
# every type, every change, both formats, both paths
# ------------------------------------------------------------------
sql(q{
	CREATE TABLE types (id int PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, b boolean,
	    f4 real, f8 double precision, t text, vc varchar(20), c char(3), js json, jb jsonb,
	    u uuid, n numeric(12,2), nx numeric, d date, ts timestamp, tstz timestamptz, by bytea,
	    ai int[], ab bigint[], at text[], atz timestamptz[]);
	ALTER TABLE types REPLICA IDENTITY FULL;
	-- what a record of a row holds, computed by PostgreSQL (docs/DESIGN.md, type map)
	CREATE FUNCTION expect(r types) RETURNS jsonb LANGUAGE sql AS $$
	  SELECT jsonb_strip_nulls(jsonb_build_object(
	    'id', r.id, 'i2', r.i2, 'i4', r.i4, 'i8', r.i8, 'b', r.b, 'f4', r.f4, 'f8', r.f8,
	    't', r.t, 'vc', r.vc, 'c', to_jsonb(r.c), 'js', r.js::text, 'jb', r.jb::text,
	    'u', r.u::text, 'n', r.n::text, 'nx', r.nx::text, 'd', r.d - date '1970-01-01',
	    'ts', (extract(epoch FROM r.ts) * 1000000)::bigint,
	    'tstz', (extract(epoch FROM r.tstz) * 1000000)::bigint,
	    'by', translate(encode(r.by, 'base64'), E'\n', ''),
	    'ai', to_jsonb(r.ai), 'ab', to_jsonb(r.ab), 'at', to_jsonb(r.at),
	    'atz', CASE WHEN r.atz IS NOT NULL THEN COALESCE(
	      (SELECT jsonb_agg((extract(epoch FROM x) * 1000000)::bigint ORDER BY o)
	         FROM unnest(r.atz) WITH ORDINALITY AS a(x, o)), '[]') END))
	$$;
	SELECT zerobus.create_stream('tp', source => 'types', server => 'emu',
	    target => 'main.default.types_changes', snapshot => false, update_preimage => true,
	    start => false);
	SELECT zerobus.create_stream('tj', source => 'types', server => 'emu',
	    target => 'main.default.types_changes', record_format => 'json', snapshot => false,
	    start => false);
	SELECT 1 FROM pg_create_logical_replication_slot('sql_tp', 'zerobus_fdw');
	SELECT 1 FROM pg_create_logical_replication_slot('sql_tj', 'zerobus_fdw');
});

my $peek_tp = start_peek('tp', 12);
my $peek_tj = start_peek('tj', 10);

my %state;    # after each step: id => expected record of the row
sub snap_state
{
	my %s;
	for (split /\n/, sql('SELECT id, expect(x)::text FROM types x'))
	{
		my ($id, $rec) = split /\|/, $_, 2;
		$s{$id} = decode_json($rec);
	}
	return \%s;
}

# 1: five rows, extremes, NULLs, a TOASTed text
sql(q{
	INSERT INTO types VALUES
	  (1, -32768, -2147483648, -9223372036854775808, false, -3.4028235e38, -1.7976931348623157e308,
	   '', '', '', '[]', '{}', '00000000-0000-0000-0000-000000000000', -9999999999.99,
	   '-99999999999999999999999999999999999999.99999999999999999999', '0001-01-01',
	   '0001-01-01 00:00:00', '0001-01-01 00:00:00+00', '\x00', '{-2147483648}',
	   '{-9223372036854775808}', '{""}', '{"0001-01-01 00:00:00+00"}'),
	  (2, 32767, 2147483647, 9223372036854775807, true, 3.4028235e38, 1.7976931348623157e308,
	   E'Gr\u00fc\u00dfe \u65e5\u672c \U0001F389 "q" \\ line\nbreak\ttab', 'varchar', 'ab', '{"a": [1, 2.5, null]}',
	   '{"k": {"nested": "v\u00e9"}}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 9999999999.99,
	   '0.00000000000000000000000000000000000001', '9999-12-31', '9999-12-31 23:59:59.999999',
	   '2024-02-29 23:59:59.999999+05:30', '\xdeadbeef00ff', '{2147483647,0,-1}',
	   '{9223372036854775807,0}', '{"a","","\u00fc","x,y"}', '{"2024-01-01 00:00:00+00","1969-12-31 23:59:59.999999+00"}'),
	  (3, 0, 0, 0, false, 0, 0, '0', '0', '0', '0', '0', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 0, 0,
	   '1970-01-01', '1970-01-01 00:00:00', '1970-01-01 00:00:00+00', '', '{0}', '{0}', '{0}',
	   '{"1970-01-01 00:00:00+00"}'),
	  (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	   NULL, NULL, NULL, NULL, NULL, NULL, NULL),
	  (5, 1, 1, 1, true, 1.5, -2.25e-300, (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 5000) i),
	   'y', 'z', 'true', 'false', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
	   -0.01, '-1e-10', '1969-12-31', '1969-12-31 23:59:59.999999', '1969-12-31 23:59:59.999999+00',
	   '\x01', '{}', '{}', '{}', '{}');
});
my $s1 = snap_state();
ok(sql(q{SELECT pg_relation_size(reltoastrelid) > 0 FROM pg_class WHERE relname = 'types'}) eq 't',
	'row 5 holds a TOASTed text');
# 2: rolled back
sql(q{BEGIN; INSERT INTO types (id, t) VALUES (100, 'rolled back'); ROLLBACK;});
# 3: a subtransaction rolled back inside a committed one; row 5's TOASTed text unchanged
sql(q{
	BEGIN;
	UPDATE types SET t = 'two', i4 = 22 WHERE id = 2;
	SAVEPOINT s;
	INSERT INTO types (id, t) VALUES (101, 'rolled back to the savepoint');
	DELETE FROM types WHERE id = 3;
	ROLLBACK TO s;
	UPDATE types SET i2 = 2 WHERE id = 5;
	COMMIT;
});
my $s3 = snap_state();
# 4: a delete; 5: a key change
sql(q{DELETE FROM types WHERE id = 1});
sql(q{UPDATE types SET id = 40 WHERE id = 4});
my $s5 = snap_state();

my $tp = parse_peek(finish_psql($peek_tp));
my $tj = parse_peek(finish_psql($peek_tj));

my @want = (
	[ 'insert', $s1->{1} ], [ 'insert', $s1->{2} ], [ 'insert', $s1->{3} ], [ 'insert', $s1->{4} ],
	[ 'insert', $s1->{5} ],
	[ 'update_preimage', $s1->{2} ], [ 'update_postimage', $s3->{2} ],
	[ 'update_preimage', $s1->{5} ], [ 'update_postimage', $s3->{5} ],
	[ 'delete', $s1->{1} ],
	[ 'delete', $s1->{4} ], [ 'insert', $s5->{40} ]);
my @want_j = grep { $_->[0] ne 'update_preimage' } @want;

sub check_changes
{
	my ($name, $got, $want) = @_;
	is(scalar @$got, scalar @$want, "$name: the records of committed changes only")
	  or diag(join("\n", map { "$_->{type} $_->{rec}{id}" } @$got));
	my ($bad, $seq_ok) = (0, 1);
	for my $i (0 .. $#$want)
	{
		my $g = $got->[$i] or last;
		$seq_ok = 0 if $i > 0 && $g->{seq} != $got->[$i - 1]{seq} + 1;
		$seq_ok = 0 if $g->{rec}{_seq} != $g->{seq};
		if ($g->{type} ne $want->[$i][0] || $g->{rec}{_change_type} ne $want->[$i][0]
			|| !same(strip_meta($g->{rec}), $want->[$i][1]))
		{
			diag("$name record $i: got $g->{type} " . $json->encode(strip_meta($g->{rec}))
				  . "\n  want $want->[$i][0] " . $json->encode($want->[$i][1]));
			$bad++;
		}
	}
	is($bad, 0, "$name: each record has the change's type and the row's values (every column type)");
	ok($seq_ok, "$name: _seq consecutive, in commit and change order");
	my %lsn_of_seq = map { $_->{seq} => $_->{rec}{_commit_lsn} } @$got;
	ok(!(grep { $_ > 0 && $got->[$_]{rec}{_commit_lsn} < $got->[$_ - 1]{rec}{_commit_lsn} } 0 .. $#$got),
		"$name: _commit_lsn never goes back");
}
check_changes('proto stream with update_preimage', $tp, \@want);
check_changes('json stream', $tj, \@want_j);

# the first records _seq: the stream's base
is($tj->[0]{seq}, sql(q{SELECT seq_base FROM zerobus.stream_settings WHERE name = 'tj'}),
	'json stream: _seq starts at the stream\'s base');

# the same records through PostgreSQL's SQL interface, byte for byte
my @sql_tp = split /\n/, sql(q{SELECT encode(data, 'hex')
	FROM pg_logical_slot_get_binary_changes('sql_tp', NULL, NULL, 'stream', 'tp')});
is_deeply(\@sql_tp, [ map { $_->{hex} } @$tp ],
	'pg_logical_slot_get_binary_changes with the plugin: the same PROTO records as the driver');
my @sql_tj = split /\n/, sql(q{SELECT encode(convert_to(data, 'UTF8'), 'hex')
	FROM pg_logical_slot_get_changes('sql_tj', NULL, NULL, 'stream', 'tj')});
is_deeply(\@sql_tj, [ map { $_->{hex} } @$tj ],
	'pg_logical_slot_get_changes with the plugin: the same JSON records as the driver');

# PROTO records decode with the stream's descriptor into the JSON records' values
my $desc = sql(q{SELECT encode(zerobus.record_descriptor('tp'), 'hex')});
my ($decoded, $derr);
IPC::Run::run([ '/usr/bin/python3', dirname(__FILE__) . '/../test/cdc_proto.py' ],
	'<', \$json->encode({ descriptor => $desc, records => [ map { $_->{hex} } @$tp ] }),
	'>', \$decoded, '2>', \$derr) or die "cdc_proto.py: $derr";
$decoded = decode_json($decoded);
# (an empty repeated field is absent in protobuf, [] in JSON)
sub no_empty { my %r = %{ $_[0] }; delete @r{ grep { ref $r{$_} eq 'ARRAY' && !@{ $r{$_} } } keys %r }; return \%r; }
my $pbad = grep { !same($decoded->[$_], no_empty($tp->[$_]{rec})) } 0 .. $#$tp;
diag(join("\n", map { "proto: " . $json->encode($decoded->[$_]) . "\njson:  " . $json->encode($tp->[$_]{rec}) }
	grep { !same($decoded->[$_], no_empty($tp->[$_]{rec})) } 0 .. $#$tp)) if $pbad;
is($pbad, 0, 'PROTO records decode with zerobus.record_descriptor() into the same values');

# ------------------------------------------------------------------
# the SQL path: interleaved concurrent transactions, replayed by key
# ------------------------------------------------------------------
sql(q{
	CREATE TABLE acct (id int PRIMARY KEY, balance bigint NOT NULL, note text);
	INSERT INTO acct SELECT i, 100, 'start' FROM generate_series(1, 50) i;
	SELECT 1 FROM pg_create_logical_replication_slot('sql_acct', 'zerobus_fdw');
});
my %replay = map { $_ => { id => $_, balance => 100, note => 'start' } } 1 .. 50;
my @sessions = map { $node->background_psql('postgres') } 0 .. 2;
# each session keeps to rows of its own (no lock waits between them)
my @own_new = ([], [], []);
my $next_id = 1000;
srand(11);
for my $round (1 .. 40)
{
	$_->query_safe('BEGIN') for @sessions;
	for my $step (1 .. 3)
	{
		for my $k (0 .. 2)
		{
			my $s = $sessions[$k];
			my $r = rand;
			if ($r < 0.6)
			{
				my $id = 3 * int(rand(16)) + $k + 1;
				$s->query_safe("UPDATE acct SET balance = balance + 1, note = 'r$round' WHERE id = $id");
			}
			elsif ($r < 0.8 || !@{ $own_new[$k] })
			{
				my $id = $next_id++;
				$s->query_safe("INSERT INTO acct VALUES ($id, $round, 'new')");
				push @{ $own_new[$k] }, $id;
			}
			else
			{
				my $id = shift @{ $own_new[$k] };
				$s->query_safe("DELETE FROM acct WHERE id = $id");
			}
		}
	}
	# interleaved transactions end in a shuffled order, a few roll back
	for my $k (sort { rand() <=> 0.5 } 0 .. 2)
	{
		$sessions[$k]->query_safe(rand() < 0.1 ? 'ROLLBACK' : 'COMMIT');
	}
}
$_->quit for @sessions;
my @log = map { decode_json($_) } split /\n/, sql(q{SELECT data FROM pg_logical_slot_get_changes('sql_acct', NULL, NULL,
	'source', 'acct', 'format', 'json')});
my ($seq_up, $lsn_up) = (1, 1);
for my $i (1 .. $#log)
{
	$seq_up = 0 if $log[$i]{_seq} <= $log[$i - 1]{_seq};
	$lsn_up = 0 if $log[$i]{_commit_lsn} < $log[$i - 1]{_commit_lsn};
}
ok($seq_up && $lsn_up, 'interleaved transactions: _seq strictly increasing, in commit order (' . scalar(@log) . ' records)');
for my $r (sort { $a->{_seq} <=> $b->{_seq} } @log)
{
	if ($r->{_change_type} eq 'delete') { delete $replay{ $r->{id} }; }
	else { $replay{ $r->{id} } = { id => $r->{id}, balance => $r->{balance}, note => $r->{note} }; }
}
my %table = map { my ($id, $b, $n) = split /\|/; ($id => { id => $id, balance => $b, note => $n }) }
  split /\n/, sql('SELECT id, balance, note FROM acct');
ok(same(\%replay, \%table), 'the change log replayed by key in _seq order gives exactly the table');

# ------------------------------------------------------------------
# a transaction larger than logical_decoding_work_mem spills and comes whole
# ------------------------------------------------------------------
sql(q{
	CREATE TABLE big (id int PRIMARY KEY, pad text);
	SELECT 1 FROM pg_create_logical_replication_slot('sql_big', 'zerobus_fdw');
	INSERT INTO big SELECT i, repeat('p', 150) FROM generate_series(1, 20000) i;
});
is(sql(q{SELECT count(*) || ' ' || (max((data::jsonb->>'_seq')::bigint) - min((data::jsonb->>'_seq')::bigint) + 1)
	|| ' ' || count(DISTINCT data::jsonb->>'id')
	FROM pg_logical_slot_peek_changes('sql_big', NULL, NULL, 'source', 'big', 'format', 'json')}),
	'20000 20000 20000', 'a 20,000-row transaction: every row, once, _seq consecutive');
cmp_ok(sql(q{SELECT spill_txns FROM pg_stat_replication_slots WHERE slot_name = 'sql_big'}), '>', 0,
	'it was larger than logical_decoding_work_mem (spilled to disk)');
sql(q{SELECT pg_drop_replication_slot('sql_big')});

# ------------------------------------------------------------------
# ADD COLUMN mid-stream, partitions as the root, TRUNCATE
# ------------------------------------------------------------------
sql(q{
	CREATE TABLE evolve (id int PRIMARY KEY, a text);
	SELECT 1 FROM pg_create_logical_replication_slot('sql_evolve', 'zerobus_fdw');
	INSERT INTO evolve VALUES (1, 'before');
	BEGIN;
	INSERT INTO evolve VALUES (2, 'same transaction, before the ALTER');
	ALTER TABLE evolve ADD COLUMN b int DEFAULT 7;
	INSERT INTO evolve VALUES (3, 'same transaction, after', 8);
	COMMIT;
	INSERT INTO evolve VALUES (4, 'after', 9);
	UPDATE evolve SET a = 'updated' WHERE id = 1;
});
my @ev = map { strip_meta(decode_json($_)) } split /\n/, sql(q{SELECT data
	FROM pg_logical_slot_get_changes('sql_evolve', NULL, NULL, 'source', 'evolve', 'format', 'json')});
ok(same(\@ev, [ { id => 1, a => 'before' }, { id => 2, a => 'same transaction, before the ALTER' },
	{ id => 3, a => 'same transaction, after', b => 8 }, { id => 4, a => 'after', b => 9 },
	{ id => 1, a => 'updated', b => 7 } ]),
	'ADD COLUMN: the new column appears from the first change made after it, even inside its transaction')
  or diag($json->encode(\@ev));

sql(q{
	CREATE TABLE parted (id int, region text, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
	CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
	-- a leaf whose columns are in another order than the root's
	CREATE TABLE parted_us (v int, region text NOT NULL, id int NOT NULL);
	ALTER TABLE parted ATTACH PARTITION parted_us FOR VALUES IN ('us');
	SELECT 1 FROM pg_create_logical_replication_slot('sql_parted', 'zerobus_fdw');
	INSERT INTO parted VALUES (1, 'eu', 10), (2, 'us', 20);
	UPDATE parted SET region = 'us' WHERE id = 1;
	UPDATE parted SET v = 21 WHERE id = 2;
	DELETE FROM parted WHERE id = 2;
	TRUNCATE parted;
});
my @pt = map { my $r = decode_json($_); [ $r->{_change_type}, strip_meta($r) ] } split /\n/, sql(q{SELECT data
	FROM pg_logical_slot_get_changes('sql_parted', NULL, NULL, 'source', 'parted', 'format', 'json')});
ok(same(\@pt, [ [ 'insert', { id => 1, region => 'eu', v => 10 } ], [ 'insert', { id => 2, region => 'us', v => 20 } ],
	[ 'delete', { id => 1, region => 'eu' } ], [ 'insert', { id => 1, region => 'us', v => 10 } ],
	[ 'update_postimage', { id => 2, region => 'us', v => 21 } ], [ 'delete', { id => 2, region => 'us' } ],
	[ 'truncate', {} ] ]),
	'a partitioned table as its root: leaves in the root\'s columns, a moved row as delete + insert, TRUNCATE of the root')
  or diag($json->encode(\@pt));
sql(q{INSERT INTO parted VALUES (3, 'eu', 30); TRUNCATE parted_eu;});
($ret, $out, $err) = $node->psql('postgres', q{SELECT data
	FROM pg_logical_slot_get_changes('sql_parted', NULL, NULL, 'source', 'parted', 'format', 'json')});
like($err, qr/a TRUNCATE of partition "parted_eu" of table "parted" cannot be captured/,
	'TRUNCATE of one partition: refused with the reason, not dropped');
sql(q{SELECT pg_drop_replication_slot('sql_parted')});

sql(q{
	CREATE TABLE plain (id int PRIMARY KEY, t text);
	SELECT 1 FROM pg_create_logical_replication_slot('sql_plain', 'zerobus_fdw');
	INSERT INTO plain VALUES (1, 'x');
	TRUNCATE plain;
});
is(sql(q{SELECT string_agg(data::jsonb->>'_change_type', ',' ORDER BY lsn) || ' ' || (array_agg(data::jsonb - '{_change_type,_commit_lsn,_commit_timestamp,_seq}'::text[] ORDER BY lsn DESC))[1]
	FROM pg_logical_slot_get_changes('sql_plain', NULL, NULL, 'source', 'plain', 'format', 'json')}),
	'insert,truncate {}', 'TRUNCATE of a table: a truncate record without values');

# ------------------------------------------------------------------
# changes no record can carry: an error with the reason, never a silent gap
# ------------------------------------------------------------------
sql(q{
	CREATE TABLE toasty (id int PRIMARY KEY, big text, n int);
	INSERT INTO toasty SELECT 1, string_agg(md5(i::text), ''), 0 FROM generate_series(1, 5000) i;
	SELECT 1 FROM pg_create_logical_replication_slot('sql_toasty', 'zerobus_fdw');
	UPDATE toasty SET n = 1;
});
($ret, $out, $err) = $node->psql('postgres', q{SELECT count(*)
	FROM pg_logical_slot_peek_changes('sql_toasty', NULL, NULL, 'source', 'toasty', 'format', 'json')});
like($err, qr/column "big" kept a value stored out of line, which the WAL does not repeat/,
	'an unchanged TOASTed value without REPLICA IDENTITY FULL: refused with the reason');
like($err, qr/HINT:  ALTER TABLE toasty REPLICA IDENTITY FULL/, '... and the fix');

sql(q{
	CREATE TABLE morph (id int PRIMARY KEY);
	SELECT 1 FROM pg_create_logical_replication_slot('sql_morph', 'zerobus_fdw');
	ALTER TABLE morph ADD COLUMN p point;
	INSERT INTO morph VALUES (1, '(1,2)');
});
($ret, $out, $err) = $node->psql('postgres', q{SELECT count(*)
	FROM pg_logical_slot_peek_changes('sql_morph', NULL, NULL, 'source', 'morph', 'format', 'json')});
like($err, qr/change capture of table "morph" cannot go on: column "p" of table "morph" has type point/,
	'a column no record can carry, added mid-stream: the decoding stops with the reason');
sql(q{SELECT pg_drop_replication_slot(s) FROM unnest(ARRAY['sql_toasty', 'sql_morph', 'sql_tp', 'sql_tj', 'sql_acct', 'sql_evolve', 'sql_plain']) s});

is(sql(q{SELECT count(*) FROM pg_replication_slots}), '0', 'no slot left behind');

done_testing();
