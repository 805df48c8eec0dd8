# Change capture, delivered (docs/DESIGN.md, "Change capture"): a stream
# with source => a table, driven by its worker through the batch engine, to
# the emulator's ZeroBus.  The change log the emulator received, replayed
# by key in _seq order, must equal the table, after: the initial copy;
# every change type (insert, update, a key change, delete, TRUNCATE);
# rolled-back transactions and subtransactions; interleaved concurrent
# transactions; a transaction larger than logical_decoding_work_mem and
# than max_inflight (delivered in several batches from inside its replay);
# ADD COLUMN mid-stream (a new ZeroBus stream with the new descriptor);
# stop/start (the slot is kept, its lag shown); resync (a new slot, a new
# copy); a change no record can carry (the stream pauses with the reason);
# an invalidated slot; an unprivileged capture role; drop_stream and DROP
# EXTENSION (their slots go).
use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusEmulator;
use ZerobusNode;

my $MAX_INFLIGHT = 300;

my $emu = ZerobusEmulator->new;
my @cdc_cols = (
	{ name => '_change_type', type => 'STRING', nullable => JSON::PP::false },
	{ name => '_commit_lsn', type => 'BIGINT', nullable => JSON::PP::false },
	{ name => '_commit_timestamp', type => 'TIMESTAMP', nullable => JSON::PP::false },
	{ name => '_seq', type => 'BIGINT', nullable => JSON::PP::false });
# "note" comes with an ADD COLUMN mid-stream: nullable, so that records
# without it are accepted too
$emu->create_table('main.default.acc_changes', [
	{ name => 'id', type => 'BIGINT' }, { name => 'owner', type => 'STRING' },
	{ name => 'balance', type => 'BIGINT' }, { name => 'note', type => 'STRING' }, @cdc_cols ]);

my $node = ZerobusNode::create('cdc_stream', $emu, conf => join("\n",
	"wal_level = logical", "max_replication_slots = 10", "max_wal_senders = 10",
	"logical_decoding_work_mem = '64kB'", "zerobus.poll_interval = '200ms'",
	"restart_after_crash = on"));
ZerobusNode::enable_cdc($node);
sub sql { return $node->safe_psql('postgres', $_[0]); }

# ------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------

# The table as "id|owner|balance[|note]" lines, in id order.
sub table_state
{
	my ($table, $with_note) = @_;
	my $note = $with_note ? q{, coalesce(note, 'NULL')} : '';
	return sql(qq{SELECT coalesce(string_agg(concat_ws('|', id, coalesce(owner, 'NULL'),
	                                 coalesce(balance::text, 'NULL') $note), E'\\n' ORDER BY id), '')
	                FROM $table});
}

# Replay the emulator's change log by key in _seq order.  Returns the state
# (as table_state), the number of duplicates (a _seq seen before: its
# record must be the same), and problems.
sub replay
{
	my ($target, $with_note) = @_;
	my $note = $with_note ? ', note' : '';
	my $r = $emu->sql(qq{SELECT _seq, _change_type, id, owner, balance $note
	                       FROM "$target" ORDER BY _seq, rowid});
	my (%state, %seen, @problems);
	my $dups = 0;
	for my $row (@{ $r->{rows} })
	{
		my ($seq, $type, $id, @vals) = @$row;
		my $text = join('|', map { $_ // 'NULL' } ($type, $id, @vals));
		if (exists $seen{$seq})
		{
			push @problems, "_seq $seq twice with different records: $seen{$seq} / $text"
			  if $seen{$seq} ne $text;
			$dups++;
			next;
		}
		$seen{$seq} = $text;
		if ($type eq 'truncate') { %state = (); }
		elsif ($type eq 'delete')
		{
			push @problems, "_seq $seq: delete of id $id, which the log does not hold"
			  unless exists $state{$id};
			delete $state{$id};
		}
		elsif ($type eq 'insert' || $type eq 'update_postimage')
		{
			push @problems, "_seq $seq: update of id $id, which the log does not hold"
			  if $type eq 'update_postimage' && !exists $state{$id};
			$state{$id} = join('|', map { $_ // 'NULL' } ($id, @vals));
		}
		else { push @problems, "_seq $seq: unexpected $type"; }
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

# Everything committed so far is delivered (zerobus.flush of a
# change-capture stream waits for the slot's confirmed position).
sub flush
{
	my ($stream) = @_;
	sql("SELECT zerobus.flush('$stream', '120s')");
}

sub check_replay
{
	my ($name, $stream, $table, $target, %o) = @_;
	flush($stream);
	my ($got, $dups, $problems) = replay($target, $o{note});
	is(scalar(@$problems), 0, "$name: the change log is consistent")
	  or diag(join("\n", @$problems[0 .. ($#$problems < 10 ? $#$problems : 10)]));
	my $want = table_state($table, $o{note});
	is(first_difference($got, $want), 'same', "$name: the change log replayed by key in _seq order is the table");
	is($dups, $o{dups} // 0, "$name: no record twice") if !$o{any_dups};
	return $dups;
}

sub metric
{
	my ($stream, $col) = @_;
	return sql("SELECT $col FROM zb_metrics WHERE stream = '$stream'");
}

# ------------------------------------------------------------------
# the initial copy, then every change type
# ------------------------------------------------------------------
sql(q{
	CREATE TABLE acc (id bigint PRIMARY KEY, owner text NOT NULL, balance bigint);
	INSERT INTO acc SELECT i, 'owner ' || i, i * 10 FROM generate_series(1, 2000) i;
});
sql(qq{SELECT zerobus.create_stream('acc', source => 'acc', server => 'emu',
                                    target => 'main.default.acc_changes',
                                    max_inflight => $MAX_INFLIGHT, batch_rows => 100)});
ok($node->poll_query_until('postgres',
	q{SELECT cdc_started_at IS NOT NULL FROM zerobus.streams WHERE name = 'acc'}),
	'the initial copy is delivered and the stream established');
my $log = $emu->sql(q{SELECT _change_type, count(*), min(_seq), max(_seq) FROM "main.default.acc_changes"
                      GROUP BY 1 ORDER BY 1})->{rows};
is_deeply([ map { "$_->[0]:$_->[1]" } @$log ], [ 'insert:2000', 'truncate:1' ],
	'the copy: a truncate, then every row as an insert');
my ($trunc) = grep { $_->[0] eq 'truncate' } @$log;
my ($ins) = grep { $_->[0] eq 'insert' } @$log;
cmp_ok($trunc->[2], '<', $ins->[2], 'the truncate comes first');
check_replay('initial copy', 'acc', 'acc', 'main.default.acc_changes');
like(sql(q{SELECT slot_name FROM zerobus.streams WHERE name = 'acc'}), qr/^zerobus_\d+_\d+$/, 'the slot is named');
is(sql(q{SELECT active FROM pg_replication_slots s JOIN zerobus.streams z USING (slot_name) WHERE z.name = 'acc'}),
	't', 'the worker holds its slot');

sql(q{
	INSERT INTO acc VALUES (5001, 'new', 1), (5002, 'new', 2);
	UPDATE acc SET balance = balance + 1 WHERE id BETWEEN 1 AND 50;
	UPDATE acc SET id = 6001 WHERE id = 51;          -- a key change: delete + insert
	DELETE FROM acc WHERE id BETWEEN 100 AND 120;
	BEGIN; INSERT INTO acc VALUES (7777, 'rolled back', 0); UPDATE acc SET owner = 'rolled back' WHERE id = 1; ROLLBACK;
	BEGIN;
	  INSERT INTO acc VALUES (7001, 'kept', 1);
	  SAVEPOINT a; INSERT INTO acc VALUES (7002, 'rolled back', 2); UPDATE acc SET owner = 'rolled back' WHERE id = 2; ROLLBACK TO a;
	  SAVEPOINT b; UPDATE acc SET owner = 'subxact kept' WHERE id = 3; RELEASE b;
	COMMIT;
});
check_replay('every change type', 'acc', 'acc', 'main.default.acc_changes');
my $types = $emu->sql(q{SELECT group_concat(DISTINCT _change_type) FROM "main.default.acc_changes"})->{rows}[0][0];
is(join(',', sort split /,/, $types), 'delete,insert,truncate,update_postimage', 'insert, update, delete, truncate records');
is($emu->sql(q{SELECT count(*) FROM "main.default.acc_changes" WHERE owner = 'rolled back' OR id IN (7777, 7002)})->{rows}[0][0],
	0, 'rolled-back transactions and subtransactions sent nothing');
is($emu->sql(q{SELECT count(*) FROM "main.default.acc_changes" WHERE id = 51 AND _change_type = 'delete'})->{rows}[0][0],
	1, 'a key change is a delete of the old key');

# _seq strictly increasing in commit order: each transaction's records are
# consecutive and its commit LSN grows with _seq
my $order = $emu->sql(q{SELECT count(*) FROM "main.default.acc_changes" a JOIN "main.default.acc_changes" b
                          ON b._seq > a._seq AND b._commit_lsn < a._commit_lsn})->{rows}[0][0];
is($order, 0, '_seq follows the commit order');

# ------------------------------------------------------------------
# interleaved concurrent transactions, and one larger than
# logical_decoding_work_mem and max_inflight
# ------------------------------------------------------------------
sql(q{
	CREATE PROCEDURE churn(secs float8, seed float8) LANGUAGE plpgsql AS $$
	DECLARE
	  t0 timestamptz := clock_timestamp();
	  r float8;
	  x bigint;
	  n int := 0;
	BEGIN
	  PERFORM setseed(seed);
	  WHILE clock_timestamp() < t0 + secs * interval '1 second' LOOP
	    n := n + 1;
	    -- a few rows in id order (two writers never wait for each other in a cycle)
	    FOR x IN SELECT DISTINCT 1 + (random() * 3000)::bigint FROM generate_series(0, (random() * 5)::int) ORDER BY 1 LOOP
	      r := random();
	      IF r < 0.5 THEN
	        UPDATE acc SET balance = balance + 1 WHERE id = x;
	      ELSIF r < 0.75 THEN
	        INSERT INTO acc VALUES (x, 'churn', 0) ON CONFLICT (id) DO UPDATE SET owner = 'upserted';
	      ELSE
	        DELETE FROM acc WHERE id = x;
	      END IF;
	    END LOOP;
	    IF n % 7 = 0 THEN ROLLBACK; ELSE COMMIT; END IF;
	  END LOOP;
	END $$;
});
my @writers;
for my $seed (0.1, 0.2, 0.3)
{
	my ($out, $err) = ('', '');
	push @writers, [ IPC::Run::start(
		[ 'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
		  '-c', "CALL churn(6, $seed)" ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(300)), \$err ];
}
# meanwhile one transaction of 30,000 changes (spills to disk, and is
# delivered in batches of max_inflight from inside its replay), of rows the
# writers do not touch
sql(q{INSERT INTO acc SELECT i, 'big', i FROM generate_series(100001, 110000) i;
      UPDATE acc SET owner = owner || '.' WHERE id > 100000;
      UPDATE acc SET balance = -balance WHERE id > 100000});
for my $w (@writers)
{
	$w->[0]->finish;
	is(${ $w->[1] }, '', 'a concurrent writer ran without errors') or diag(${ $w->[1] });
}
check_replay('concurrent transactions and a large one', 'acc', 'acc', 'main.default.acc_changes');
cmp_ok(metric('acc', 'batches'), '>', 30000 / $MAX_INFLIGHT,
	'the large transaction went out in several batches');
is(metric('acc', 'rows_dead_lettered'), '0', 'nothing was dead-lettered');
# batches do not re-open anything: one ZeroBus stream, one decoding context
cmp_ok(metric('acc', 'streams_opened'), '<=', 2, 'the ZeroBus stream stays open across batches');
my $contexts = () = slurp_file($node->logfile) =~ /starting logical decoding for slot "zerobus_/g;
cmp_ok($contexts, '<=', 5, "the worker keeps its decoding context across batches ($contexts)");
ok($node->poll_query_until('postgres', q{SELECT slot_lag_bytes = 0 AND oldest_unacked_age_ms IS NULL
	AND slot_status = 'in use' FROM zb_metrics WHERE stream = 'acc'}),
	'caught up: no slot lag, no unacknowledged change');

# ------------------------------------------------------------------
# ADD COLUMN mid-stream: a new ZeroBus stream with the new descriptor
# ------------------------------------------------------------------
my $opened = metric('acc', 'streams_opened');
sql(q{
	UPDATE acc SET balance = 1 WHERE id = 1;
	ALTER TABLE acc ADD COLUMN note text;
	UPDATE acc SET note = 'noted ' || id WHERE id BETWEEN 1 AND 10;
	INSERT INTO acc VALUES (8001, 'with note', 1, 'a note');
});
check_replay('ADD COLUMN', 'acc', 'acc', 'main.default.acc_changes', note => 1);
cmp_ok(metric('acc', 'streams_opened'), '>', $opened, 'ADD COLUMN: the stream was re-opened');
is($emu->sql(q{SELECT count(*) FROM "main.default.acc_changes" WHERE note IS NOT NULL})->{rows}[0][0],
	sql(q{SELECT count(*) FROM acc WHERE note IS NOT NULL}), 'ADD COLUMN: the changes after it carry the new column');
ok($node->log_contains('the columns of the captured table changed; re-opening the ZeroBus stream'),
	'ADD COLUMN: the worker says so');

# ------------------------------------------------------------------
# stop keeps the slot (and so WAL); start resumes where it stopped
# ------------------------------------------------------------------
sql(q{SELECT zerobus.stop_stream('acc')});
ok($node->poll_query_until('postgres', q{SELECT workers_running = 0 FROM zb_metrics WHERE stream = 'acc'}),
	'stop: the worker left');
is(sql(q{SELECT count(*) FROM pg_replication_slots s JOIN zerobus.streams z USING (slot_name) WHERE z.name = 'acc'}),
	'1', 'stop: the slot is kept');
sql(q{UPDATE acc SET balance = balance + 100 WHERE id <= 500});
cmp_ok(metric('acc', 'slot_lag_bytes'), '>', 0, 'stopped: the slot lag grows');
like(metric('acc', 'slot_status'), qr/stopped.*keeps.*WAL/, 'stopped: the state says that the slot keeps WAL');
sql(q{SELECT zerobus.start_stream('acc')});
check_replay('stop and start', 'acc', 'acc', 'main.default.acc_changes', note => 1);

# ------------------------------------------------------------------
# TRUNCATE: a truncate record
# ------------------------------------------------------------------
sql(q{CREATE TABLE small (id bigint PRIMARY KEY, owner text, balance bigint);
      INSERT INTO small VALUES (1, 'a', 1), (2, 'b', 2)});
$emu->create_table('main.default.small_changes', [
	{ name => 'id', type => 'BIGINT' }, { name => 'owner', type => 'STRING' },
	{ name => 'balance', type => 'BIGINT' }, { name => 'doc', type => 'STRING' }, @cdc_cols ]);
sql(q{SELECT zerobus.create_stream('small', source => 'small', server => 'emu',
                                   target => 'main.default.small_changes', record_format => 'json')});
ok($node->poll_query_until('postgres', q{SELECT cdc_started_at IS NOT NULL FROM zerobus.streams WHERE name = 'small'}),
	'small: established');
sql(q{TRUNCATE small; INSERT INTO small VALUES (3, 'c', 3)});
check_replay('TRUNCATE (JSON records)', 'small', 'small', 'main.default.small_changes');
is($emu->sql(q{SELECT count(*) FROM "main.default.small_changes" WHERE _change_type = 'truncate'})->{rows}[0][0],
	2, 'TRUNCATE: a truncate record (after the copy\'s own)');

# ------------------------------------------------------------------
# a partitioned table, captured as its root (a row moving between
# partitions is a delete and an insert)
# ------------------------------------------------------------------
sql(q{CREATE TABLE parts (id bigint, owner text, balance bigint, PRIMARY KEY (id, owner)) PARTITION BY LIST (owner);
      CREATE TABLE parts_a PARTITION OF parts FOR VALUES IN ('a');
      CREATE TABLE parts_b (balance bigint, owner text NOT NULL, id bigint NOT NULL);  -- other column order
      ALTER TABLE parts ATTACH PARTITION parts_b FOR VALUES IN ('b');
      INSERT INTO parts VALUES (1, 'a', 1), (2, 'b', 2), (3, 'a', 3)});
$emu->create_table('main.default.parts_changes', [
	{ name => 'id', type => 'BIGINT' }, { name => 'owner', type => 'STRING' },
	{ name => 'balance', type => 'BIGINT' }, @cdc_cols ]);
sql(q{SELECT zerobus.create_stream('parts', source => 'parts', server => 'emu',
                                   target => 'main.default.parts_changes')});
ok($node->poll_query_until('postgres', q{SELECT cdc_started_at IS NOT NULL FROM zerobus.streams WHERE name = 'parts'}),
	'parts: established');
sql(q{UPDATE parts SET owner = 'b' WHERE id = 1; UPDATE parts SET balance = 20 WHERE id = 2;
      DELETE FROM parts WHERE id = 3; INSERT INTO parts VALUES (4, 'b', 4)});
check_replay('a partitioned table', 'parts', 'parts', 'main.default.parts_changes');

# ------------------------------------------------------------------
# a change no record can carry: paused, with the reason; resync goes on
# ------------------------------------------------------------------
sql(q{ALTER TABLE small ADD COLUMN doc text; ALTER TABLE small ALTER COLUMN doc SET STORAGE EXTERNAL;
      UPDATE small SET doc = repeat('x', 10000) WHERE id = 3});
flush('small');
sql(q{UPDATE small SET balance = 30 WHERE id = 3});   # leaves doc, stored out of line, unchanged
ok($node->poll_query_until('postgres', q{SELECT state = 'paused' FROM zb_metrics WHERE stream = 'small'}),
	'a change no record can carry pauses the stream');
like(metric('small', 'last_error'), qr/kept a value stored out of line/, 'paused: the reason');
sql(q{ALTER TABLE small REPLICA IDENTITY FULL; SELECT zerobus.resync_stream('small')});
ok($node->poll_query_until('postgres', q{SELECT state <> 'paused' AND cdc_started_at IS NOT NULL
	FROM zb_metrics m JOIN zerobus.streams s ON s.name = m.stream WHERE m.stream = 'small'}),
	'resync: a new copy, and the stream goes on');
sql(q{UPDATE small SET balance = 31 WHERE id = 3});
flush('small');
is($emu->sql(q{SELECT balance FROM "main.default.small_changes" ORDER BY _seq DESC LIMIT 1})->{rows}[0][0],
	31, 'resync: changes after it are delivered');

# a column of a type no record can carry, added mid-stream: the changes
# before it are delivered, the stream pauses at the first change after it
$emu->create_table('main.default.morph_changes', [ { name => 'id', type => 'BIGINT' }, @cdc_cols ]);
sql(q{CREATE TABLE morph (id bigint PRIMARY KEY);
      SELECT zerobus.create_stream('morph', source => 'morph', server => 'emu',
                                   target => 'main.default.morph_changes')});
ok($node->poll_query_until('postgres', q{SELECT cdc_started_at IS NOT NULL FROM zerobus.streams WHERE name = 'morph'}),
	'morph: established');
sql(q{SELECT zerobus.stop_stream('morph')});
sql(q{INSERT INTO morph VALUES (1); ALTER TABLE morph ADD COLUMN p point; INSERT INTO morph VALUES (2, '(1,2)')});
sql(q{SELECT zerobus.start_stream('morph')});
ok($node->poll_query_until('postgres', q{SELECT state = 'paused' FROM zb_metrics WHERE stream = 'morph'}),
	'an unsupported column added mid-stream pauses the stream');
like(metric('morph', 'last_error'), qr/column "p" of table "morph" has type point/, 'paused: the reason names the column');
is($emu->sql(q{SELECT group_concat(id) FROM "main.default.morph_changes" WHERE _change_type = 'insert'})->{rows}[0][0],
	'1', 'paused: the change before the ALTER was delivered, not the one after');
sql(q{SELECT zerobus.drop_stream('morph')});

# ------------------------------------------------------------------
# an invalidated slot: reported, resync starts over
# ------------------------------------------------------------------
sql(q{SELECT zerobus.stop_stream('small')});
ok($node->poll_query_until('postgres', q{SELECT workers_running = 0 FROM zb_metrics WHERE stream = 'small'}),
	'invalidation: the stream is stopped');
sql(q{ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'; SELECT pg_reload_conf()});
for (1 .. 6)
{
	sql(q{CREATE TEMP TABLE filler AS SELECT repeat('w', 1000) FROM generate_series(1, 2000);
	      DROP TABLE filler; SELECT pg_switch_wal(); CHECKPOINT});
	last if sql(q{SELECT wal_status FROM pg_replication_slots s JOIN zerobus.streams z USING (slot_name)
	              WHERE z.name = 'small'}) eq 'lost';
}
is(sql(q{SELECT wal_status FROM pg_replication_slots s JOIN zerobus.streams z USING (slot_name) WHERE z.name = 'small'}),
	'lost', 'invalidation: the slot lost its WAL');
sql(q{SELECT zerobus.start_stream('small')});
ok($node->poll_query_until('postgres', q{SELECT state = 'error' FROM zb_metrics WHERE stream = 'small'}),
	'invalidated slot: state error');
like(metric('small', 'last_error'), qr/was invalidated.*resync_stream\('small'\)/, 'invalidated slot: the fix is named');
sql(q{ALTER SYSTEM RESET max_slot_wal_keep_size; SELECT pg_reload_conf()});
sql(q{SELECT zerobus.resync_stream('small')});
check_replay('resync after invalidation', 'small', 'small', 'main.default.small_changes', any_dups => 1);

# ------------------------------------------------------------------
# an unprivileged capture role: REPLICATION and SELECT, no superuser
# ------------------------------------------------------------------
sql(q{
	CREATE ROLE capturer LOGIN REPLICATION;
	CREATE TABLE other (id bigint PRIMARY KEY, owner text, balance bigint);
	INSERT INTO other VALUES (1, 'x', 1);
	GRANT SELECT ON other TO capturer;
	GRANT USAGE ON FOREIGN SERVER emu TO capturer;
	CREATE USER MAPPING FOR capturer SERVER emu OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
	GRANT EXECUTE ON FUNCTION zerobus.create_stream TO capturer;
});
$emu->create_table('main.default.other_changes', [
	{ name => 'id', type => 'BIGINT' }, { name => 'owner', type => 'STRING' },
	{ name => 'balance', type => 'BIGINT' }, @cdc_cols ]);
$node->safe_psql('postgres', q{SELECT zerobus.create_stream('other', source => 'other', server => 'emu',
                                  target => 'main.default.other_changes')}, extra_params => [ '-U', 'capturer' ]);
sql(q{INSERT INTO other VALUES (2, 'y', 2)});
check_replay('capture role with REPLICATION', 'other', 'other', 'main.default.other_changes');
sql(q{REVOKE SELECT ON other FROM capturer});
sql(q{INSERT INTO other VALUES (3, 'z', 3)});
ok($node->poll_query_until('postgres', q{SELECT state = 'error' FROM zb_metrics WHERE stream = 'other'}),
	'a revoked SELECT stops the stream');
like(metric('other', 'last_error'), qr/no SELECT privilege on table/, 'revoked: the reason');
sql(q{GRANT SELECT ON other TO capturer});
check_replay('the grant back', 'other', 'other', 'main.default.other_changes');

# ------------------------------------------------------------------
# drop_stream drops the slot; DROP EXTENSION drops them all
# ------------------------------------------------------------------
my $small_slot = sql(q{SELECT slot_name FROM zerobus.streams WHERE name = 'small'});
sql(q{SELECT zerobus.drop_stream('small')});
ok($node->poll_query_until('postgres', qq{SELECT count(*) = 0 FROM pg_replication_slots WHERE slot_name = '$small_slot'}),
	'drop_stream: its slot is dropped');
sql(q{DROP EXTENSION zerobus_fdw CASCADE});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM pg_replication_slots WHERE slot_name LIKE 'zerobus%'}),
	'DROP EXTENSION: every slot of the extension is dropped');

done_testing();
