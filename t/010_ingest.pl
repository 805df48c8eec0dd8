# Delivery through stream workers: rows inserted into a queue reach the
# emulator's table exactly, and leave the queue; wake-up at commit; late
# commits; several workers; JSON; stop/start/drop; queue schema changes;
# DROP DATABASE and DROP EXTENSION; a worker killed with SIGTERM; an unknown
# target table; a row above the request limit.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusEmulator;
use ZerobusNode;

my $emu = ZerobusEmulator->new;
my @cols = (
	{ name => 'id', type => 'BIGINT', nullable => JSON::PP::false },
	{ name => 'currency', type => 'STRING' },
	{ name => 'amount', type => 'DECIMAL(12,2)' },
	{ name => 'ts', type => 'TIMESTAMP' },
	{ name => 'note', type => 'STRING' });
$emu->create_table('main.default.tx', \@cols);

# A long poll interval: only the commit-time wake-up can deliver quickly.
my $node = ZerobusNode::create('ingest', $emu, conf => "zerobus.poll_interval = '10min'");
$node->safe_psql('postgres', q{
	CREATE TABLE tx_queue (id bigint NOT NULL, currency text, amount numeric(12,2),
	                       ts timestamptz, note text);
	SELECT zerobus.create_stream('tx', 'tx_queue', 'emu', 'main.default.tx');
});

sub queue_count { return $node->safe_psql('postgres', 'SELECT count(*) FROM tx_queue'); }

# Expected emulator rows for ids in a range, computed by PostgreSQL.
sub expected_rows
{
	my ($where) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT string_agg(format('%s|%s|%s|%s|%s', id, coalesce(currency, 'NULL'),
		       coalesce(to_char(amount, 'FM9999999990.00'), 'NULL'),
		       coalesce((extract(epoch FROM ts) * 1000000)::bigint::text, 'NULL'),
		       coalesce(note, 'NULL')), E'\n' ORDER BY id)
		  FROM expected WHERE $where});
}

sub emulator_rows
{
	my ($table, $lo, $hi) = @_;
	# the emulator keeps DECIMAL as a double: print it at the column's scale
	my $r = $emu->sql(qq{SELECT id, currency, CASE WHEN amount IS NULL THEN NULL ELSE printf('%.2f', amount) END, ts, note FROM "$table"
		WHERE id BETWEEN $lo AND $hi ORDER BY id});
	return join("\n", map { join('|', map { defined $_ ? $_ : 'NULL' } @$_) } @{ $r->{rows} });
}

# Wait until every row committed so far is delivered (flush's count of rows
# it waited for depends on timing, so it is not checked).
sub flush
{
	my ($stream, $timeout) = @_;
	$timeout ||= '60s';
	$node->safe_psql('postgres', "SELECT zerobus.flush('$stream', '$timeout')");
}

# The first line where two row listings differ, or 'same'.
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

# --- exact delivery, proto
$node->safe_psql('postgres', q{
	CREATE TABLE expected AS
	  SELECT i AS id, (ARRAY['USD','EUR','GBP'])[1 + i % 3] AS currency,
	         CASE WHEN i % 7 = 0 THEN NULL ELSE (i * 1.25)::numeric(12,2) END AS amount,
	         '2024-03-01 12:00:00+00'::timestamptz + i * interval '1 second' AS ts,
	         CASE WHEN i % 5 = 0 THEN NULL ELSE 'note ' || i END AS note
	    FROM generate_series(1, 5000) i;
	INSERT INTO tx_queue SELECT * FROM expected WHERE id <= 5000;
});
flush('tx');
is(queue_count(), '0', 'the queue is empty after flush');
is(first_difference(emulator_rows('main.default.tx', 1, 5000), expected_rows('id <= 5000')), 'same',
	'every row arrived with its values (NULLs, decimals, timestamps)');

# --- wake-up at commit: one row, no poll for ten minutes
$node->safe_psql('postgres', q{INSERT INTO tx_queue VALUES (5001, 'USD', 1, now(), 'single')});
flush('tx', '30s');
is($emu->count('main.default.tx'), 5001, 'a single row is delivered on the commit wake-up');
# a rolled-back insert wakes nobody and delivers nothing
$node->safe_psql('postgres', q{BEGIN; INSERT INTO tx_queue VALUES (5002, 'USD', 1, now(), 'rolled back'); ROLLBACK;});

# --- a long transaction commits rows after later ones
my $long = $node->background_psql('postgres');
$long->query_safe(q{BEGIN; INSERT INTO tx_queue VALUES (6001, 'USD', 1, now(), 'early but late')});
$node->safe_psql('postgres', q{INSERT INTO tx_queue VALUES (6002, 'USD', 2, now(), 'later')});
flush('tx');
is($emu->count('main.default.tx'), 5002, 'flush does not wait for uncommitted rows; the later row went first');
$long->query_safe('COMMIT');
$long->quit;
flush('tx');
is($emu->sql(q{SELECT count(*) FROM "main.default.tx" WHERE id IN (6001, 6002)})->{rows}[0][0], 2,
	'both rows of the long transaction scenario arrived');
is($emu->sql(q{SELECT count(*) FROM "main.default.tx" WHERE id = 5002})->{rows}[0][0], 0,
	'the rolled-back row never arrived');

# --- several workers
$node->safe_psql('postgres', q{SELECT zerobus.alter_stream('tx', workers => 3)});
$emu->wait_for(sub { $node->safe_psql('postgres', q{SELECT workers_running FROM zb_metrics}) == 3 });
is($node->safe_psql('postgres', q{SELECT workers_running FROM zb_metrics}), '3', 'three workers running');
$node->safe_psql('postgres', q{
	INSERT INTO expected SELECT i, 'CHF', i, now(), 'multi' FROM generate_series(10001, 40000) i;
	INSERT INTO tx_queue SELECT * FROM expected WHERE id BETWEEN 10001 AND 40000;
});
flush('tx');
is_deeply($emu->sql(q{SELECT count(*), count(DISTINCT id) FROM "main.default.tx" WHERE id BETWEEN 10001 AND 40000})->{rows}[0],
	[ 30000, 30000 ], 'three workers deliver 30000 rows, each exactly once');

# --- JSON records
$node->safe_psql('postgres', q{SELECT zerobus.alter_stream('tx', workers => 1, record_format => 'json')});
$node->safe_psql('postgres', q{
	INSERT INTO expected SELECT i, 'JPY', i * 0.5, '1999-12-31 23:59:59.999999+00', NULL
	  FROM generate_series(50001, 51000) i;
	INSERT INTO tx_queue SELECT * FROM expected WHERE id BETWEEN 50001 AND 51000;
});
flush('tx');
is(first_difference(emulator_rows('main.default.tx', 50001, 51000), expected_rows('id BETWEEN 50001 AND 51000')),
	'same', 'JSON records carry the same values');
$node->safe_psql('postgres', q{SELECT zerobus.alter_stream('tx', record_format => 'proto')});

# --- stop and start
$node->safe_psql('postgres', q{SELECT zerobus.stop_stream('tx')});
$emu->wait_for(sub { $node->safe_psql('postgres', q{SELECT workers_running FROM zb_metrics}) == 0 });
is($node->safe_psql('postgres', q{SELECT state, workers_running FROM zb_metrics}), 'stopped|0',
	'a stopped stream has no workers');
$node->safe_psql('postgres', q{INSERT INTO tx_queue VALUES (60001, 'USD', 1, now(), 'while stopped')});
is(queue_count(), '1', 'rows wait in the queue while stopped');
$node->safe_psql('postgres', q{SELECT zerobus.start_stream('tx')});
flush('tx');
is(queue_count(), '0', 'started again, the row goes');

# --- the queue's columns change: the schema is sent again
$node->safe_psql('postgres', q{ALTER TABLE tx_queue DROP COLUMN note});
$node->safe_psql('postgres', q{INSERT INTO tx_queue VALUES (60002, 'USD', 1, now())});
flush('tx');
is($emu->sql(q{SELECT count(*) FROM "main.default.tx" WHERE id = 60002})->{rows}[0][0], 1,
	'after DROP COLUMN the stream goes on with the new schema');
is($emu->sql(q{SELECT note IS NULL FROM "main.default.tx" WHERE id = 60002})->{rows}[0][0], 1,
	'the dropped column arrives as NULL');
$node->safe_psql('postgres', q{ALTER TABLE tx_queue ADD COLUMN note text});
$node->safe_psql('postgres', q{INSERT INTO tx_queue VALUES (60003, 'USD', 1, now(), 'back')});
flush('tx');
is($emu->sql(q{SELECT note FROM "main.default.tx" WHERE id = 60003})->{rows}[0][0], 'back',
	'and after ADD COLUMN too');

# --- a column no record can carry: the stream pauses, says why, and resumes
# when the column is gone
$node->safe_psql('postgres', q{ALTER TABLE tx_queue ADD COLUMN spot point});
$node->safe_psql('postgres', q{INSERT INTO tx_queue VALUES (60004, 'USD', 1, now(), 'while paused', '(1,2)')});
ok($emu->wait_for(sub { $node->safe_psql('postgres', q{SELECT state FROM zb_metrics WHERE stream = 'tx'}) eq 'paused' }, 30),
	'an unsupported column pauses the stream');
like($node->safe_psql('postgres', q{SELECT last_error FROM zb_metrics WHERE stream = 'tx'}),
	qr/^paused: column "spot" of table "tx_queue" has type point, which ZeroBus records cannot carry\. Supported types: /,
	'and says why');
is(queue_count(), '1', 'the row waits');
$node->safe_psql('postgres', q{ALTER TABLE tx_queue DROP COLUMN spot});
flush('tx');
is($emu->sql(q{SELECT note FROM "main.default.tx" WHERE id = 60004})->{rows}[0][0], 'while paused',
	'once the column is gone the stream goes on');

# --- a worker terminated by an administrator is restarted; nothing is lost
my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'zerobus_fdw stream tx%'});
ok($pid > 0, 'found the worker');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
$node->safe_psql('postgres', q{INSERT INTO tx_queue SELECT i, 'USD', 1, now(), 'after kill' FROM generate_series(70001, 71000) i});
flush('tx');
is($emu->sql(q{SELECT count(*) FROM "main.default.tx" WHERE id BETWEEN 70001 AND 71000})->{rows}[0][0], 1000,
	'a new worker delivers after SIGTERM');
isnt($node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'zerobus_fdw stream tx%'}), $pid,
	'it is a new process');
$node->reload;
$node->safe_psql('postgres', q{INSERT INTO tx_queue VALUES (71001, 'USD', 1, now(), 'after reload')});
flush('tx');
is($emu->sql(q{SELECT count(*) FROM "main.default.tx" WHERE id = 71001})->{rows}[0][0], 1,
	'a configuration reload does not disturb it');

# --- a target the service does not know: a clear state, rows kept
$node->safe_psql('postgres', q{
	CREATE TABLE orphan_queue (id bigint NOT NULL, note text);
	SELECT zerobus.create_stream('orphan', 'orphan_queue', 'emu', 'main.default.nonexistent');
	INSERT INTO orphan_queue VALUES (1, 'waiting');
});
$emu->wait_for(sub { $node->safe_psql('postgres', q{SELECT last_error FROM zb_metrics WHERE stream = 'orphan'}) });
like($node->safe_psql('postgres', q{SELECT state || ': ' || last_error FROM zb_metrics WHERE stream = 'orphan'}),
	qr/^error: could not open a ZeroBus stream to main\.default\.nonexistent: NOT_FOUND/,
	'unknown target table: error state with the service\'s answer');
is($node->safe_psql('postgres', 'SELECT count(*) FROM orphan_queue'), '1', 'its rows stay queued');
$emu->create_table('main.default.nonexistent',
	[ { name => 'id', type => 'BIGINT', nullable => JSON::PP::false }, { name => 'note', type => 'STRING' } ]);
$node->safe_psql('postgres', q{SELECT zerobus.stop_stream('orphan'); SELECT zerobus.start_stream('orphan');});
$node->safe_psql('postgres', q{SELECT zerobus.flush('orphan', '60s')});
is($emu->count('main.default.nonexistent'), 1, 'once the table exists, delivered');

# --- quick stop/start commits: each commit asks for a scan of the database;
# scans apply in commit order, so the last one (started) wins every time
for my $round (1 .. 20)
{
	$node->safe_psql('postgres',
		"SELECT zerobus.stop_stream('orphan'); SELECT zerobus.start_stream('orphan');");
}
$node->safe_psql('postgres', q{INSERT INTO orphan_queue VALUES (2, 'after 20 stop/start rounds')});
$node->safe_psql('postgres', q{SELECT zerobus.flush('orphan', '60s')});
is($emu->count('main.default.nonexistent'), 2, 'after quick stop/start commits the stream runs');

# --- a row above the 10 MB request limit becomes a dead letter; the rest goes on
$node->safe_psql('postgres', q{
	INSERT INTO tx_queue VALUES (80001, 'USD', 1, now(), 'small before');
	INSERT INTO tx_queue VALUES (80002, 'USD', 1, now(), repeat('x', 11 * 1024 * 1024));
	INSERT INTO tx_queue VALUES (80003, 'USD', 1, now(), 'small after');
});
flush('tx');
is(queue_count(), '0', 'all three rows left the queue');
is($emu->sql(q{SELECT group_concat(id) FROM (SELECT id FROM "main.default.tx" WHERE id BETWEEN 80001 AND 80003 ORDER BY id)})->{rows}[0][0],
	'80001,80003', 'the small rows arrived');
like($node->safe_psql('postgres', q{
	SELECT stream || ' ' || (record->>'id') || ' ' || length(record->>'note') || ': ' || error
	  FROM zerobus.dead_letters}),
	qr/^tx 80002 11534336: the row's record is 115343\d\d bytes, above the 10485760-byte ZeroBus request limit$/,
	'the big row is in zerobus.dead_letters with the reason');
is($node->safe_psql('postgres', q{SELECT rows_dead_lettered FROM zb_metrics WHERE stream = 'tx'}), '1',
	'and counted');

# --- DROP DATABASE is not blocked by a running stream
$node->safe_psql('postgres', 'CREATE DATABASE other');
ZerobusNode::add_server($node, $emu, 'emu', dbname => 'other');
$node->safe_psql('other', q{
	CREATE TABLE q (id bigint NOT NULL, note text);
	SELECT zerobus.create_stream('other_stream', 'q', 'emu', 'main.default.nonexistent');
	INSERT INTO q VALUES (2, 'from other');
	SELECT zerobus.flush('other_stream', '60s');
});
ok($emu->wait_for(sub {
	$node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE datname = 'other' AND application_name LIKE 'zerobus%'}) > 0 }),
	'a worker is connected to the other database');
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE other');
is($ret, 0, 'DROP DATABASE succeeds while its stream runs') or diag($err);
is($node->safe_psql('postgres', q{SELECT count(*) FROM zb_metrics WHERE stream = 'other_stream'}), '0',
	'its stream is gone from the metrics');

# --- DROP EXTENSION stops the workers and leaves the queue alone
$node->safe_psql('postgres', q{INSERT INTO tx_queue VALUES (90001, 'USD', 1, now(), 'stays')});
$node->safe_psql('postgres', q{SELECT zerobus.flush('tx', '60s')});
$node->safe_psql('postgres', q{DROP EXTENSION zerobus_fdw CASCADE});
ok($emu->wait_for(sub {
	$node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'zerobus_fdw stream%'}) == 0 }),
	'no stream worker after DROP EXTENSION');
$node->safe_psql('postgres', q{INSERT INTO tx_queue VALUES (90002, 'USD', 1, now(), 'after drop')});
is(queue_count(), '1', 'the queue table still works');

$node->stop;
done_testing();
