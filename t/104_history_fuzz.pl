# The SQL API response parser against damaged responses.
#
# First each deterministic kind of damage (an HTML page, a truncated body,
# invalid UTF-8, a row with one value too many), on a statement response and
# on a chunk: every one must fail the query with an FDW error.  Then
# hundreds of statement and chunk responses with random byte flips,
# JSON-token insertions, deletions and truncations.  The emulator logs every
# response it damaged, before and after, and each query's outcome is judged
# by what its responses were:
#   - a response that is not UTF-8 or not JSON: the query must fail;
#   - responses whose rows are intact (only the envelope was hit: row
#     counts, offsets, chunk links, states): the query must fail or return
#     exactly the true rows; never fewer, more or other rows;
#   - a failure is an FDW or data error with its SQLSTATE, never an internal
#     error (XX000), and the backend survives every query;
#   - rows whose values were altered into other valid JSON may come back
#     altered (nothing can tell), or fail.
use strict;
use warnings;

use Encode qw(decode);
use JSON::PP;
use MIME::Base64 qw(decode_base64);
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
	CREATE TABLE fuzz_log (target text, round int, ok boolean, sqlstate text, message text,
	                       nrows bigint, digest text);
});

# the whole answer in one value: its row count and a digest of every row
my $answer = q{SELECT count(*), md5(string_agg(x::text, '|' ORDER BY x.id)) FROM (SELECT * FROM ft OFFSET 0) x};
my $truth = sql($answer);
like($truth, qr/^30\|[0-9a-f]{32}$/, 'undamaged: the 30 rows');
is(sql('SELECT sum(length(s)) FROM (SELECT * FROM ft OFFSET 0) x'), '765', 'undamaged: their values');

# --- every deterministic kind of damage fails the query with an FDW error
for my $target ('statement', 'chunk')
{
	for my $kind ('not_json', 'truncated', 'invalid_utf8', 'bad_row')
	{
		$emu->reset;
		$emu->faults({ sql_malformed => { kind => $kind, target => $target, count => 1 } });
		my ($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$answer");
		my ($state) = $err =~ /ERROR:  ([0-9A-Z]{5}):/;
		is(scalar @{ $emu->damaged }, 1, "$kind $target response: it was served");
		isnt($ret, 0, "$kind $target response: the query fails");
		like($state // '', qr/^HV/, "$kind $target response: with an FDW error") or diag($err);
		$emu->clear_faults;
		is(sql($answer), $truth, "after a $kind $target response: the next query answers");
	}
}

# --- fuzzing: judge every query by the responses it was given
my $json = JSON::PP->new->utf8;

# the rows of a response, as canonical JSON, or undef if it has none
sub data_of
{
	my ($doc, $target) = @_;
	return undef unless ref $doc eq 'HASH';
	my $data = $target eq 'statement'
	  ? (ref $doc->{result} eq 'HASH' ? $doc->{result}{data_array} : undef)
	  : $doc->{data_array};
	return defined $data ? JSON::PP->new->canonical->allow_nonref->encode($data) : undef;
}

# 'invalid' (not UTF-8, not JSON), 'escape' (a \u escape no text can hold),
# 'intact' (the rows are as sent), or 'altered' (other valid JSON rows)
sub classify
{
	my ($r) = @_;
	my $orig = decode_base64($r->{original});
	my $dmg = decode_base64($r->{damaged});
	my $copy = $dmg;
	return 'invalid' unless eval { decode('UTF-8', $copy, Encode::FB_CROAK); 1 };
	my $doc = eval { $json->decode($dmg) };
	if (!defined $doc)
	{
		# grammatical JSON whose escapes are lone surrogates: a strict decoder refuses it
		(my $fixed = $dmg) =~ s/\\u[dD][89a-fA-F][0-9a-fA-F]{2}/\\ufffd/g;
		return 'invalid' unless defined eval { $json->decode($fixed) };
		return 'escape';
	}
	my $want = data_of($json->decode($orig), $r->{target});
	my $got = data_of($doc, $r->{target});
	return (defined $got && defined $want && $got eq $want) ? 'intact' : 'altered';
}

# where a damaged response first differs from what was sent, for diagnostics
sub damage_excerpt
{
	my ($r) = @_;
	my ($o, $d) = (decode_base64($r->{original}), decode_base64($r->{damaged}));
	my $i = 0;
	$i++ while $i < length($o) && $i < length($d) && substr($o, $i, 1) eq substr($d, $i, 1);
	my $from = $i < 40 ? 0 : $i - 40;
	my $show = sub { (my $x = substr($_[0], $from, 100)) =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge; $x };
	return sprintf("%s at byte %d: sent ...%s... got ...%s...", $r->{target}, $i, $show->($o), $show->($d));
}

for my $target ('statement', 'chunk')
{
	$emu->reset;
	$emu->faults({ sql_malformed => { kind => 'mutate', target => $target, count => $rounds, seed => 7 } });
	my ($ret, $out, $err) = $node->psql('postgres', qq{
		DO \$\$
		DECLARE n bigint; d text; st text; msg text;
		BEGIN
		  FOR i IN 1..$rounds LOOP
		    BEGIN
		      $answer INTO n, d;
		      INSERT INTO fuzz_log VALUES ('$target', i, true, NULL, NULL, n, d);
		    EXCEPTION WHEN OTHERS THEN
		      GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, st = RETURNED_SQLSTATE;
		      INSERT INTO fuzz_log VALUES ('$target', i, false, st, msg, NULL, NULL);
		    END;
		  END LOOP;
		END \$\$});
	is($ret, 0, "fuzzed $target responses: the session survived $rounds queries") or diag($err);
	$emu->clear_faults;

	# each query ran one remote statement, in order: round i is statement i
	my @stmts = map { $_->{statement_id} } @{ $emu->statements->{statements} };
	is(scalar @stmts, $rounds, "fuzzed $target responses: one remote statement per query");
	my %round_of = map { ($stmts[$_] => $_ + 1) } 0 .. $#stmts;
	my %classes;    # round => { class => count }
	my %excerpts;   # round => [ what was damaged ]
	my $damaged = 0;
	for my $r (@{ $emu->damaged })
	{
		my $round = $round_of{ $r->{statement_id} } or next;
		my $class = classify($r);
		$classes{$round}{$class}++;
		push @{ $excerpts{$round} }, "  $class " . damage_excerpt($r);
		$damaged++;
	}
	cmp_ok($damaged, '>=', $rounds / 2, "fuzzed $target responses: $damaged responses were damaged");

	my %log = map { my @f = split /\|/, $_, 7; ($f[1] => \@f) }
	  split /\n/, sql(qq{SELECT target, round, ok, coalesce(sqlstate, ''), coalesce(nrows, 0),
		coalesce(digest, ''), replace(coalesce(message, ''), E'\\n', ' ') FROM fuzz_log WHERE target = '$target'});
	is(scalar keys %log, $rounds, "fuzzed $target responses: every query answered or failed");

	my (%count, @must_fail, @wrong_answer, @bad_state);
	for my $round (1 .. $rounds)
	{
		my ($t, $n, $ok, $state, $nrows, $digest, $msg) = @{ $log{$round} || [ '', $round, 'f', '?', 0, '', 'no outcome' ] };
		my $c = $classes{$round} || {};
		my $class = $c->{invalid} ? 'invalid' : $c->{escape} ? 'escape' : $c->{altered} ? 'altered'
		  : $c->{intact} ? 'intact' : 'undamaged';
		$count{$class}{ $ok eq 't' ? 'answered' : 'failed' }++;
		my $what = "round $round ($class)";
		if ($ok eq 't')
		{
			my $detail = join("\n", '', @{ $excerpts{$round} || [] });
			push @must_fail, "$what answered $nrows rows$detail" if $class eq 'invalid';
			push @wrong_answer, "$what answered $nrows rows, digest $digest$detail"
			  if ($class eq 'intact' || $class eq 'undamaged') && "$nrows|$digest" ne $truth;
		}
		else
		{
			# FDW errors (HV...), data exceptions (22...: a value altered into one
			# its column cannot take); never an internal error
			push @bad_state, "$what: $state $msg" unless $state =~ /^(HV|22)/;
		}
	}
	note("fuzzed $target responses, per class of the query's damaged responses: "
		  . join('; ', map { my $k = $_; "$k " . join(', ', map { "$_ $count{$k}{$_}" } sort keys %{ $count{$k} }) }
			sort keys %count));
	ok(!@must_fail, "fuzzed $target responses: every query given a response that is not JSON failed")
	  or diag(join("\n", @must_fail[ 0 .. ($#must_fail < 9 ? $#must_fail : 9) ]));
	ok(!@wrong_answer, "fuzzed $target responses: every query whose rows were intact answered exactly or failed")
	  or diag(join("\n", @wrong_answer[ 0 .. ($#wrong_answer < 9 ? $#wrong_answer : 9) ]));
	ok(!@bad_state, "fuzzed $target responses: every failure is an FDW or data error, not an internal one")
	  or diag(join("\n", @bad_state[ 0 .. ($#bad_state < 9 ? $#bad_state : 9) ]));
	# the classes the assertions above judge did occur (or they prove nothing)
	cmp_ok(($count{invalid}{failed} // 0) + ($count{invalid}{answered} // 0), '>', 0,
		"fuzzed $target responses: some were not JSON");
	cmp_ok(($count{intact}{failed} // 0) + ($count{intact}{answered} // 0), '>', 0,
		"fuzzed $target responses: some kept their rows intact");

	is(sql($answer), $truth, "after fuzzed $target responses: the backend reads fine");
	my $running = $emu->wait_for(sub {
		!grep { $_->{state} eq 'RUNNING' || $_->{state} eq 'PENDING' } @{ $emu->statements->{statements} };
	}, 10);
	ok($running, "after fuzzed $target responses: no statement left running");
}

$node->stop;
done_testing();
