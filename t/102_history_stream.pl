# A 1,000,000-row remote result streams through 100 chunks with the
# backend's memory bounded by a chunk, not by the result (INLINE and
# EXTERNAL_LINKS); count(*) on the same table transfers one row.
# Numbers are printed as notes; the assertions are about bounds, not speed.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use ZerobusEmulator;
use ZerobusNode;

my $rows = 1_000_000;
my $emu = ZerobusEmulator->new(args => [ '--chunk-rows', '10000', '--inline-limit-bytes', '1000000000' ]);
my $node = ZerobusNode::create('stream', $emu);

$node->safe_psql('postgres', q{
	SELECT zerobus.execute_remote('emu', 'CREATE TABLE main.s.big (id BIGINT NOT NULL, payload STRING, amount DECIMAL(12,2))');
	CREATE FOREIGN TABLE big (id bigint, payload text, amount numeric(12,2)) SERVER emu OPTIONS (table 'main.s.big');
	CREATE FOREIGN TABLE big_links (id bigint, payload text, amount numeric(12,2)) SERVER emu
	  OPTIONS (table 'main.s.big', disposition 'external_links');
});
$emu->sql(qq{WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $rows)
	INSERT INTO "main.s.big" (id, payload, amount) SELECT x, 'payload-' || x, x * 0.01 FROM c});
is($emu->count('main.s.big'), $rows, 'a million rows in the remote table');

my $status = q{(regexp_match(pg_read_file('/proc/self/status'), '%s:\s+(\d+)'))[1]::bigint};
my $rss = sprintf($status, 'VmRSS');
my $hwm = sprintf($status, 'VmHWM');

# One fresh session: RSS before, the streamed aggregate with its EXPLAIN
# ANALYZE counters, then the peak RSS of the whole session.
sub stream_through
{
	my ($table) = @_;
	my $t0 = time();
	my $out = $node->safe_psql('postgres', qq{
		SELECT count(*) FROM $table WHERE id = 1;   -- warm up: token, connection, plan
		SELECT $rss;
		EXPLAIN (ANALYZE, VERBOSE, COSTS ON, TIMING OFF, SUMMARY OFF)
		  SELECT count(*), sum(id), max(length(payload)), sum(amount) FROM (SELECT * FROM $table OFFSET 0) s;
		SELECT count(*), sum(id), max(length(payload)), sum(amount) FROM (SELECT * FROM $table OFFSET 0) s;
		SELECT $hwm;
	});
	my $secs = time() - $t0;
	my @l = split /\n/, $out;
	my %r = (rss0 => $l[1], hwm => $l[-1], answer => $l[-2], secs => $secs);
	($r{remote_rows}) = $out =~ /Remote Rows: (\d+)/;
	($r{chunks}) = $out =~ /Remote Chunks: (\d+)/;
	($r{bytes}) = $out =~ /Remote Bytes: (\d+)/;
	return \%r;
}

for my $case ([ 'big', 'INLINE' ], [ 'big_links', 'EXTERNAL_LINKS' ])
{
	my ($table, $how) = @$case;
	my $r = stream_through($table);
	is($r->{answer}, "$rows|500000500000|15|5000005000.00", "$how: every row arrived and converted");
	is($r->{remote_rows}, $rows, "$how: a million rows streamed");
	is($r->{chunks}, 100, "$how: in 100 chunks");
	my $peak_kb = $r->{hwm} - $r->{rss0};
	note(sprintf('%s: %d rows, %d chunks, %.1f MB of JSON, backend RSS %d kB before, peak +%d kB; two scans in %.1f s',
		$how, $r->{remote_rows}, $r->{chunks}, $r->{bytes} / 1048576, $r->{rss0}, $peak_kb, $r->{secs}));
	cmp_ok($peak_kb * 1024, '<', $r->{bytes} / 8,
		"$how: peak memory growth is a small fraction of the result size");
	cmp_ok($peak_kb, '<', 16 * 1024, "$how: peak memory growth under 16 MB");
}

# count(*) runs remotely: one row, one chunk, a few hundred bytes
my $out = $node->safe_psql('postgres', q{
	EXPLAIN (ANALYZE, VERBOSE, COSTS ON, TIMING OFF, SUMMARY OFF) SELECT count(*) FROM big});
like($out, qr/Remote SQL: SELECT count\(\*\) FROM `main`.`s`.`big`/, 'count(*): pushed down');
my ($crows) = $out =~ /Remote Rows: (\d+)/;
my ($cbytes) = $out =~ /Remote Bytes: (\d+)/;
is($crows, 1, 'count(*): one row transferred');
cmp_ok($cbytes, '<', 2000, 'count(*): a few hundred bytes transferred');
note("count(*) over $rows rows: $crows row, $cbytes bytes of responses");
is($node->safe_psql('postgres', 'SELECT count(*) FROM big'), $rows, 'count(*): the answer');

$node->stop;
done_testing();
