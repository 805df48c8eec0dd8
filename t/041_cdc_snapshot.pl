# Change capture, the initial snapshot (docs/DESIGN.md, "Initial
# snapshot"): the rows copied at the slot's consistent point, then the
# changes committed after it, with writers committing all along (short
# transactions, and long ones that are open while the slot is created):
# no gap and no overlap.  Every row carries a version that each UPDATE
# raises by one, and ids are never reused, so for every key the records
# (in _seq order) must be: a snapshot row with version v, or an insert with
# version 0; then updates with v+1, v+2, ... each exactly once; then at most
# a delete, and nothing after it.  A change lost at the boundary breaks the
# run of versions; a change both copied and decoded repeats one.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusEmulator;
use ZerobusNode;

my $emu = ZerobusEmulator->new;
my $node = ZerobusNode::create('cdc_snapshot', $emu, conf => join("\n",
	"wal_level = logical", "max_replication_slots = 10", "max_wal_senders = 10"));
ZerobusNode::enable_cdc($node);
sub sql { return $node->safe_psql('postgres', $_[0]); }

my $rows = 100_000;
sql(qq{
	CREATE TABLE snap (id bigint PRIMARY KEY, ver int NOT NULL, pad text);
	INSERT INTO snap SELECT i, 0, repeat('s', 80) FROM generate_series(1, $rows) i;
	CREATE SEQUENCE snap_new START 10000000;
	CREATE PROCEDURE churn(secs float8, long boolean) LANGUAGE plpgsql AS \$\$
	DECLARE
	  t0 timestamptz := clock_timestamp();
	  x bigint;
	  r float8;
	BEGIN
	  WHILE clock_timestamp() < t0 + secs * interval '1 second' LOOP
	    IF long THEN
	      -- a transaction that stays open for a while, rows in id order (no deadlocks)
	      FOR x IN SELECT DISTINCT 1 + (random() * ($rows - 1))::bigint AS id
	                 FROM generate_series(1, 5) ORDER BY 1 LOOP
	        UPDATE snap SET ver = ver + 1 WHERE id = x;
	        PERFORM pg_sleep(0.02);
	      END LOOP;
	    ELSE
	      r := random();
	      x := 1 + (random() * ($rows - 1))::bigint;
	      IF r < 0.6 THEN
	        UPDATE snap SET ver = ver + 1 WHERE id = x;
	      ELSIF r < 0.8 THEN
	        INSERT INTO snap VALUES (nextval('snap_new'), 0, 'new');
	      ELSE
	        DELETE FROM snap WHERE id = x;
	      END IF;
	    END IF;
	    COMMIT;
	  END LOOP;
	END \$\$;
	SELECT zerobus.create_stream('snap', source => 'snap', server => 'emu',
	    target => 'main.default.snap_changes', record_format => 'json', start => false);
});

my @writers;
for my $long (0, 0, 1)
{
	my ($out, $err) = ('', '');
	push @writers, [ IPC::Run::start(
		[ 'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
		  '-c', 'CALL churn(25, ' . ($long ? 'true' : 'false') . ')' ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(300)), \$err ];
}
# the writers are under way
$node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM snap WHERE ver > 0})
  or die 'the writers did not start';

my ($runs, $changes, $late) = (0, 0, 0);
for my $run (1 .. 3)
{
	my $out = sql(q{SELECT seq, change_type, record->>'id', record->>'ver',
	                       commit_lsn = first_value(commit_lsn) OVER w
	                       AND commit_time = first_value(commit_time) OVER w AS at_snapshot
	                  FROM zerobus.peek_changes('snap', 100000000)
	                WINDOW w AS (ORDER BY seq)});
	my (%last, %gone, @problems);
	my ($prev_seq, $nsnap, $nchg, $in_snapshot) = (0, 0, 0, 1);
	my @lines = split /\n/, $out;
	# the copy starts with a truncate: it replaces whatever an earlier copy sent
	my ($type0, $at0) = (split /\|/, shift(@lines) // '')[1, 4];
	is("$type0 $at0", 'truncate t', "peek $run: a truncate at the snapshot comes first");
	for (@lines)
	{
		my ($seq, $type, $id, $ver, $at_snapshot) = split /\|/;
		push @problems, "seq $seq after $prev_seq" if $seq <= $prev_seq;
		$prev_seq = $seq;
		if ($at_snapshot eq 't' && $type eq 'insert' && $in_snapshot)
		{
			push @problems, "key $id copied twice" if exists $last{$id};
			$last{$id} = $ver;
			$nsnap++;
			next;
		}
		$in_snapshot = 0;
		$nchg++;
		push @problems, "key $id: $type after its delete" if $gone{$id};
		if ($type eq 'insert')
		{
			push @problems, "key $id: inserted twice" if exists $last{$id};
			push @problems, "key $id: inserted with version $ver" if $ver != 0;
			$last{$id} = $ver;
		}
		elsif ($type eq 'update_postimage')
		{
			if (!exists $last{$id}) { push @problems, "key $id: update of a row neither copied nor inserted (gap)"; }
			elsif ($ver != $last{$id} + 1) { push @problems, "key $id: version $last{$id} then $ver"; }
			$last{$id} = $ver;
		}
		elsif ($type eq 'delete')
		{
			push @problems, "key $id: delete of a row neither copied nor inserted (gap)" unless exists $last{$id};
			$gone{$id} = 1;
		}
		else { push @problems, "unexpected $type"; }
	}
	is(scalar(@problems), 0, "peek $run: $nsnap rows copied, then $nchg changes: no gap, no overlap")
	  or diag(join("\n", @problems[0 .. ($#problems < 20 ? $#problems : 20)]));
	cmp_ok($nsnap, '>=', $rows * 0.8, "peek $run: the copy holds the table");
	$late++ if grep { $_ > 0 } values %last;
	$changes += $nchg;
	$runs++;
}
cmp_ok($changes, '>', 0, "changes committed while the slot was created and the table copied were decoded ($changes)");
ok($late, 'rows changed before the snapshot were copied with their versions');

for my $w (@writers)
{
	$w->[0]->finish;
	is(${ $w->[1] }, '', 'a writer ran without errors') or diag(${ $w->[1] });
}
is(sql(q{SELECT count(*) FROM pg_replication_slots}), '0', 'the peeks\' ephemeral slots are gone');

done_testing();
