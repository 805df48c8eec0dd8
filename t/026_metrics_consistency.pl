# The metrics views read consistently under load (issue 10): several sessions
# read zb_metrics, zb_metrics_history and zb_dashboard over and over while a
# generator feeds one stream with two workers, and streams are created,
# reset and dropped beside it.  Each reader checks, at every read:
#
#   - no counter goes backwards (for one stream, between two resets);
#   - nothing is acknowledged that was not sent (rows, bytes, requests), and
#     the rows in flight were sent and not acknowledged, within max_in_flight;
#   - a stream that acknowledged rows since the reader's previous look, less
#     than half a second before, is not shown idle;
#   - latency percentiles are ordered and within min and max, the average too;
#   - the history is in time order per stream, nothing in it negative;
#   - the dashboard's lines are well formed;
#
# and counts what it saw, so that the checks cannot pass by seeing nothing.
# The launcher, which samples the metrics and starts and stops the workers
# of the streams that come and go, ends the load with the memory it began
# with (it runs for the life of the cluster: a leak of each round of its
# loop would grow without bound).
# The views are also checked in a database where the extension was created
# in a schema of its own (docs: README, "Metrics": "Where the views are").
use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusEmulator;
use ZerobusNode;

my $emu = ZerobusEmulator->new;
my $node = ZerobusNode::create('metrics', $emu, conf => 'track_commit_timestamp = on');

# the generator's Delta table, from the profile's own description
my $delta = $node->safe_psql('postgres',
	q{SELECT delta_columns FROM zerobus.generator_profiles() WHERE profile = 'transactions'});
my @cols = map {
	my ($name, $type, $nn) = /^\s*(\w+)\s+(\S+)(\s+NOT NULL)?/;
	{ name => $name, type => $type, nullable => $nn ? JSON::PP::false : JSON::PP::true }
} split /,(?![^(]*\))/, $delta;
$emu->create_table('main.default.tx', \@cols);
$emu->create_table('main.default.side',
	[ { name => 'id', type => 'BIGINT', nullable => JSON::PP::false }, { name => 'note', type => 'STRING' } ]);

# a few milliseconds per ack, so that rows are in flight when readers look
$emu->faults({ ack_delay_ms => 5 });

$node->safe_psql('postgres', q{
	CREATE ROLE watcher LOGIN IN ROLE pg_monitor;
	SELECT zerobus.generator_create_queue('transactions', 'tx_queue');
	SELECT zerobus.create_stream('tx', 'tx_queue', 'emu', 'main.default.tx',
	                             workers => 2, max_inflight => 2000, batch_rows => 200);
	SELECT zerobus.generator_start('tx', 'transactions', throttle => 55);
	CREATE TABLE side_queue (id bigint NOT NULL, note text);
});
ok($node->poll_query_until('postgres', q{SELECT rows_acked > 1000 FROM zb_metrics WHERE stream = 'tx'}),
	'the generator\'s rows flow');

# The memory the launcher uses (all its contexts), from
# pg_log_backend_memory_contexts() in the server log.
sub launcher_memory
{
	my $pid = $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'zerobus_fdw launcher'});
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres', "SELECT pg_log_backend_memory_contexts($pid)");
	$node->wait_for_log(qr/\[$pid\] LOG:  Grand total: \d+ bytes in \d+ blocks; \d+ free \(\d+ chunks\); \d+ used/,
		$offset);
	my ($used) = slurp_file($node->logfile, $offset)
	  =~ /\[$pid\] LOG:  Grand total: \d+ bytes in \d+ blocks; \d+ free \(\d+ chunks\); (\d+) used/;
	return $used;
}
my $launcher_before = launcher_memory();

# The reader: one session, $1 rounds, raising an error at the first
# inconsistency; returns what it saw.
$node->safe_psql('postgres', q{
CREATE FUNCTION public.read_metrics(rounds integer) RETURNS text
LANGUAGE plpgsql SET search_path = public, pg_catalog AS $fn$
DECLARE
    counters constant text[] := ARRAY['rows_sent', 'rows_acked', 'rows_failed', 'rows_dead_lettered',
        'bytes_sent', 'bytes_acked', 'requests_sent', 'requests_acked', 'batches', 'streams_opened',
        'reconnects', 'rows_generated'];
    prev jsonb := '{}';
    p jsonb;
    m record;
    key text;
    c text;
    t0 timestamptz;
    t1 timestamptz;
    n_reads bigint := 0;
    n_delivering bigint := 0;
    n_in_flight bigint := 0;
    n_history bigint := 0;
    n_dashboard bigint := 0;
    bad bigint;
    total bigint;
BEGIN
    FOR round IN 1 .. rounds LOOP
        t0 := clock_timestamp();
        FOR m IN SELECT * FROM zb_metrics LOOP
            t1 := clock_timestamp();
            n_reads := n_reads + 1;
            key := m.database || '.' || m.stream || '@' || m.started_at;
            IF m.rows_acked > m.rows_sent OR m.bytes_acked > m.bytes_sent
               OR m.requests_acked > m.requests_sent THEN
                RAISE EXCEPTION 'acknowledged more than sent: %', row_to_json(m);
            END IF;
            IF m.rows_in_flight < 0 OR m.rows_in_flight > m.max_in_flight
               OR m.rows_in_flight > m.rows_sent - m.rows_acked THEN
                RAISE EXCEPTION 'rows in flight out of bounds: %', row_to_json(m);
            END IF;
            IF m.rows_in_flight > 0 THEN
                n_in_flight := n_in_flight + 1;
            END IF;
            IF m.state NOT IN ('starting', 'connecting', 'idle', 'streaming', 'backoff', 'error',
                               'paused', 'stopped')
               OR m.workers_running < 0 OR m.workers_running > 16 OR m.queue_depth < 0 THEN
                RAISE EXCEPTION 'malformed row: %', row_to_json(m);
            END IF;
            IF m.ack_latency_min_ms > m.ack_latency_p50_ms OR m.ack_latency_p50_ms > m.ack_latency_p95_ms
               OR m.ack_latency_p95_ms > m.ack_latency_p99_ms OR m.ack_latency_p99_ms > m.ack_latency_max_ms
               OR m.ack_latency_avg_ms < m.ack_latency_min_ms OR m.ack_latency_avg_ms > m.ack_latency_max_ms
               OR m.commit_to_ack_p50_ms > m.commit_to_ack_p99_ms
               OR m.success_rate < 0 OR m.success_rate > 100 THEN
                RAISE EXCEPTION 'latencies or success rate inconsistent: %', row_to_json(m);
            END IF;
            p := prev -> key;
            IF p IS NOT NULL THEN
                FOREACH c IN ARRAY counters LOOP
                    IF (to_jsonb(m) ->> c)::numeric < (p ->> c)::numeric THEN
                        RAISE EXCEPTION '% went backwards from % to %: %', c, p ->> c,
                            to_jsonb(m) ->> c, row_to_json(m);
                    END IF;
                END LOOP;
                IF m.rows_acked > (p ->> 'rows_acked')::bigint
                   AND t1 - (p ->> 'read_from')::timestamptz < interval '0.5 s' THEN
                    n_delivering := n_delivering + 1;
                    IF m.state = 'idle' THEN
                        RAISE EXCEPTION 'stream % acknowledged % rows in the last % and is shown idle',
                            m.stream, m.rows_acked - (p ->> 'rows_acked')::bigint,
                            t1 - (p ->> 'read_from')::timestamptz;
                    END IF;
                END IF;
            END IF;
            prev := jsonb_set(prev, ARRAY[key], to_jsonb(m) || jsonb_build_object('read_from', t0));
        END LOOP;

        SELECT count(*),
               count(*) FILTER (WHERE h.rows_per_sec < 0 OR h.generated_per_sec < 0 OR h.bytes_per_sec < 0
                                   OR h.dead_letters_per_sec < 0 OR h.queue_depth < 0
                                   OR h.rows_in_flight < 0 OR h.errors < 0 OR h.reconnects < 0
                                   OR h.ack_latency_p50_ms > h.ack_latency_p95_ms
                                   OR h.ack_latency_p95_ms > h.ack_latency_p99_ms
                                   OR h.commit_to_ack_p50_ms > h.commit_to_ack_p99_ms
                                   OR h."time" <= h.before)
          INTO total, bad
          FROM (SELECT x.*, lag(x."time") OVER (PARTITION BY x.database, x.stream ORDER BY x.n) AS before
                  FROM (SELECT y.*, row_number() OVER () AS n FROM zb_metrics_history y) x) h;
        IF bad > 0 THEN
            RAISE EXCEPTION '% of % history rows are out of order or negative', bad, total;
        END IF;
        n_history := n_history + total;

        SELECT count(*),
               count(*) FILTER (WHERE d.state NOT IN ('starting', 'connecting', 'idle', 'streaming',
                                                      'backoff', 'error', 'paused', 'stopped')
                                   OR d.acked < 0 OR d.in_flight < 0 OR d.queued < 0
                                   OR d."last 30 s" !~ '^[▁▂▃▄▅▆▇█]*$')
          INTO total, bad
          FROM zb_dashboard d;
        IF bad > 0 THEN
            RAISE EXCEPTION '% of % dashboard lines are malformed', bad, total;
        END IF;
        n_dashboard := n_dashboard + total;
        PERFORM pg_sleep(0.02);
    END LOOP;
    RETURN format('reads=%s delivering=%s in_flight=%s history=%s dashboard=%s',
                  n_reads, n_delivering, n_in_flight, n_history, n_dashboard);
END
$fn$;
GRANT EXECUTE ON FUNCTION public.read_metrics(integer) TO watcher;
});

# Three readers, as a pg_monitor role, in sessions of their own.
my @readers;
for my $i (1 .. 3)
{
	my %r = (out => '', err => '');
	$r{h} = IPC::Run::start(
		[ 'psql', '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
		  '-d', $node->connstr('postgres') . " user=watcher application_name=reader$i",
		  '-c', 'SELECT public.read_metrics(400)' ],
		'>', \$r{out}, '2>', \$r{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	push @readers, \%r;
}

# Meanwhile, for as long as the readers read (six rounds at least): streams
# come and go beside the loaded one, and metrics are reset.
my $rounds = 0;
my $next_id = 1;
while ($rounds < 6 || grep { $_->{h}->pumpable } @readers)
{
	$rounds++;
	$node->safe_psql('postgres', q{SELECT zerobus.create_stream('side', 'side_queue', 'emu', 'main.default.side')});
	$node->safe_psql('postgres',
		"INSERT INTO side_queue SELECT i, 'row ' || i FROM generate_series($next_id, $next_id + 499) i");
	$next_id += 500;
	# reset_metrics needs the stream registered: wait for its row
	$node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM zb_metrics WHERE stream = 'side'})
	  or diag("stream side not registered in round $rounds");
	$node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM side_queue})
	  or diag("side_queue did not drain in round $rounds");
	$node->safe_psql('postgres', q{SELECT zerobus.reset_metrics('side')});
	$node->safe_psql('postgres', q{SELECT zerobus.reset_metrics()}) if $rounds == 2 || $rounds == 5;
	$node->safe_psql('postgres', q{SELECT zerobus.alter_stream('side', workers => 2)}) if $rounds % 2 == 0;
	$node->safe_psql('postgres', q{SELECT zerobus.drop_stream('side')});
	$_->{h}->pump_nb for grep { $_->{h}->pumpable } @readers;
	last if $rounds >= 200;
}
cmp_ok($rounds, '>=', 6, "streams created, loaded, reset, altered and dropped beside the loaded one ($rounds rounds)");

my %seen;
for my $i (0 .. $#readers)
{
	my $r = $readers[$i];
	my $finished = eval { $r->{h}->finish; 1 };
	$r->{h}->kill_kill unless $finished;
	my $n = $i + 1;
	ok($finished && $r->{h}->result == 0, "reader $n: every read consistent")
	  or diag("reader $n: $r->{err}");
	chomp(my $out = $r->{out});
	note("reader $n: $out");
	my %got = $out =~ /(\w+)=(\d+)/g;
	$seen{$_} += $got{$_} // 0 for qw(reads delivering in_flight history dashboard);
}
# what the checks above had to work on
cmp_ok($seen{reads}, '>=', 1000, 'the readers read zb_metrics over and over');
cmp_ok($seen{delivering}, '>=', 50, 'they often saw a stream deliver between two looks (and not idle then)');
cmp_ok($seen{in_flight}, '>', 0, 'they saw rows in flight');
cmp_ok($seen{history}, '>', 0, 'they read the history');
cmp_ok($seen{dashboard}, '>', 0, 'they read the dashboard');

# a launcher that allocated a worker's name per slot and round leaked about
# 80 kB a round, a round at least every second
my $launcher_after = launcher_memory();
cmp_ok($launcher_after - $launcher_before, '<', 64 * 1024,
	"the launcher's memory did not grow under load ($launcher_before bytes, then $launcher_after)");

# the views still describe what exists
is($node->safe_psql('postgres', q{SELECT string_agg(stream, ',' ORDER BY stream) FROM zb_metrics}), 'tx',
	'zb_metrics lists the remaining stream');
is($node->safe_psql('postgres', q{SELECT count(*) FROM zb_dashboard}), '1', 'and so does zb_dashboard');
ok($node->poll_query_until('postgres',
	q{SELECT count(*) > 0 FROM zb_metrics_history WHERE stream = 'tx' AND rows_per_sec > 0}),
	'the history goes on after the resets');
is($node->safe_psql('postgres', q{SELECT count(*) FROM zb_metrics_history WHERE stream = 'side'}), '0',
	'and has nothing of the dropped stream');

# a stream that stops delivering is idle again
$node->safe_psql('postgres', q{SELECT zerobus.generator_stop('tx')});
$emu->clear_faults;
ok($node->poll_query_until('postgres', q{SELECT state = 'idle' AND rows_in_flight = 0 FROM zb_metrics WHERE stream = 'tx'}),
	'once the generator stops, the stream is idle and nothing is in flight');

# The views are created in the extension's schema: with CREATE EXTENSION …
# SCHEMA, they are there (and still read the zerobus functions).
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', q{CREATE SCHEMA monitoring; CREATE EXTENSION zerobus_fdw SCHEMA monitoring});
is($node->safe_psql('other', q{
	SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c
	  JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname = 'monitoring' AND c.relkind = 'v'}),
	'zb_dashboard,zb_metrics,zb_metrics_history', 'the views are in the schema named at CREATE EXTENSION');
is($node->safe_psql('other', q{SELECT count(*) FROM monitoring.zb_metrics WHERE stream = 'tx'}), '1',
	'and show every database\'s streams');

$node->stop;
done_testing();
