# The SQL API response parser against fuzzed responses: hundreds of
# statement and chunk responses with random byte flips, JSON-token
# insertions, deletions and truncations.  Every query either answers or
# fails with an ERROR; the backend never crashes, nothing is left running.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusEmulator;
use ZerobusNode;

my $rounds = 300;
my $emu = ZerobusEmulator->new(args => [ '--chunk-rows', '7' ]);
my $node = ZerobusNode::create('fuzz', $emu);
sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{
	SELECT zerobus.execute_remote('emu', 'CREATE TABLE main.f.t (id BIGINT, s STRING, d DECIMAL(12,2),
	    ts TIMESTAMP, b BINARY, a ARRAY<STRING>)');
	SELECT sum(zerobus.execute_remote('emu', 'INSERT INTO main.f.t VALUES (CAST(:p1 AS BIGINT), :p2,
	    CAST(:p3 AS DECIMAL(12,2)), CAST(:p4 AS TIMESTAMP), unbase64(:p5), from_json(:p6, ''ARRAY<STRING>''))',
	    i::text, E'\u00e9\u00e8 "q" \\ \t ' || repeat('x', i), (i * 1.5)::text,
	    '2024-01-01T00:00:00Z', encode(decode(md5(i::text), 'hex'), 'base64'), '["a\"b", null]'))
	  FROM generate_series(1, 30) i;
	CREATE FOREIGN TABLE ft (id bigint, s text, d numeric(12,2), ts timestamptz, b bytea, a text[])
	  SERVER emu OPTIONS (table 'main.f.t');
});
is(sql('SELECT count(*), sum(length(s)) FROM (SELECT * FROM ft OFFSET 0) x'), '30|765', 'unfuzzed: the rows');

my $fuzz = qq{
	DO \$\$
	DECLARE ok int := 0; failed int := 0; msg text;
	BEGIN
	  FOR i IN 1..$rounds LOOP
	    BEGIN
	      PERFORM * FROM ft;
	      ok := ok + 1;
	    EXCEPTION WHEN OTHERS THEN
	      GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
	      failed := failed + 1;
	    END;
	  END LOOP;
	  RAISE NOTICE 'answered % failed %', ok, failed;
	END \$\$};
for my $target ('statement', 'chunk')
{
	$emu->reset;
	$emu->faults({ sql_malformed => { kind => 'mutate', target => $target, count => $rounds, seed => 7 } });
	my ($ret, $out, $err) = $node->psql('postgres', $fuzz);
	is($ret, 0, "fuzzed $target responses: the session survived $rounds queries");
	my ($ok, $failed) = $err =~ /answered (\d+) failed (\d+)/;
	note("fuzzed $target responses: $ok answered, $failed failed cleanly");
	is($ok + $failed, $rounds, "fuzzed $target responses: every query answered or failed");
	cmp_ok($failed, '>', 0, "fuzzed $target responses: the damage was noticed");
	$emu->clear_faults;
	is(sql('SELECT count(*) FROM (SELECT * FROM ft OFFSET 0) x'), '30', "after fuzzed $target responses: the backend reads fine");
	my $running = $emu->wait_for(sub {
		!grep { $_->{state} eq 'RUNNING' || $_->{state} eq 'PENDING' } @{ $emu->statements->{statements} };
	}, 10);
	ok($running, "after fuzzed $target responses: no statement left running");
}
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|PANIC|TRAP:/, 'no backend crashed');

$node->stop;
done_testing();
