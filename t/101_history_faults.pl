# History FDW against a misbehaving Databricks: what the emulator receives
# (values only as parameters), remote cancel on statement_timeout, query
# cancel and our own statement_timeout, remote failures, refused requests
# retried with Retry-After, expired tokens, malformed responses, expired
# result links -- each a clear error, no statement left running remotely,
# and no memory growth over 10,000 queries.
use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use ZerobusEmulator;
use ZerobusNode;

my $emu = ZerobusEmulator->new(args => ['--chunk-rows', '25']);
my $node = ZerobusNode::create('history', $emu);

sub sql { return $node->safe_psql('postgres', $_[0]); }

# psql that may fail: (stdout, stderr)
sub try_sql
{
	my ($q) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $q, on_error_stop => 1);
	return ($out, $err);
}

# no statement of the emulator's log is still PENDING or RUNNING
sub none_running
{
	my ($what) = @_;
	my $running = $emu->wait_for(sub {
		my @r = grep { $_->{state} eq 'RUNNING' || $_->{state} eq 'PENDING' }
		  @{ $emu->statements->{statements} };
		return @r ? 0 : 1;
	}, 10);
	ok($running, "$what: no statement left running remotely");
}

sql(q{
	SELECT zerobus.execute_remote('emu', 'CREATE TABLE main.h.t (id BIGINT NOT NULL, cur STRING, amount DECIMAL(12,2))');
	SELECT sum(zerobus.execute_remote('emu', 'INSERT INTO main.h.t VALUES (CAST(:p1 AS BIGINT), :p2, CAST(:p3 AS DECIMAL(12,2)))',
	           i::text, (ARRAY['USD','EUR','GBP'])[1 + i % 3], (i * 1.25)::text))
	  FROM generate_series(1, 100) i;
	SELECT zerobus.execute_remote('emu', 'CREATE TABLE main.h.x (n BIGINT)');
	SELECT zerobus.execute_remote('emu', 'INSERT INTO main.h.x SELECT id FROM main.h.t');
	SELECT zerobus.execute_remote('emu', 'INSERT INTO main.h.x SELECT id FROM main.h.t');
	CREATE FOREIGN TABLE ft (id bigint, cur text, amount numeric(12,2)) SERVER emu OPTIONS (table 'main.h.t');
	-- 200^4 rows to count: about 20 s in the emulator, and interruptible
	CREATE FOREIGN TABLE slow (n bigint) SERVER emu
	  OPTIONS (query 'SELECT count(*) AS n FROM main.h.x a, main.h.x b, main.h.x c, main.h.x d');
});
is(sql('SELECT count(*), sum(amount) FROM ft'), '100|6312.50', 'setup: 100 remote rows');

# ---------------------------------------------------------------- injection
my @values = ("x' OR '1'='1", "/* not */ a comment", "-- comment", 'back\\slash', "it's `tick`");
$emu->reset;
for my $v (@values)
{
	(my $lit = $v) =~ s/'/''/g;
	sql("SELECT count(*) FROM ft WHERE cur = '$lit' OR cur IN ('$lit', 'USD') OR cur LIKE '$lit%'");
}
sql(q{SELECT cur, count(*) FROM ft WHERE amount > 1.5 GROUP BY cur HAVING count(*) > 1 ORDER BY cur LIMIT 2});
my @log = @{ $emu->statements->{statements} };
is(scalar(@log), scalar(@values) + 1, 'injection: one statement per query');
my $leaked = 0;
for my $s (@log)
{
	(my $bare = $s->{statement}) =~ s/`(?:[^`]|``)*`//g;    # identifiers out
	for my $v (@values, '1.5', "'")
	{
		$leaked++ if index($bare, $v) >= 0;
	}
	# every :name in the text is a parameter given, and only those
	my %given = map { $_->{name} => 1 } @{ $s->{parameters} };
	my @used = $bare =~ /:([A-Za-z_][A-Za-z0-9_]*)/g;
	$leaked++ if grep { !$given{$_} } @used;
}
is($leaked, 0, 'injection: no value in any statement text, only :pN parameters');
my %sent = map { ($_->{value} // '') => 1 } map { @{ $_->{parameters} } } @log;
ok((grep { $sent{$_} } @values) == @values, 'injection: every value arrived as a parameter');
note("e.g. $log[0]{statement}");

# ---------------------------------------------------------------- cancel
$emu->reset;
my ($out, $err) = try_sql(q{SET statement_timeout = '300ms'; SELECT * FROM slow});
like($err, qr/canceling statement due to statement timeout/, 'statement_timeout: query cancelled');
my ($st) = @{ $emu->statements->{statements} };
is($emu->wait_for(sub { $emu->statements->{statements}[0]{state} eq 'CANCELED' }, 10), 1,
	'statement_timeout: the remote statement was cancelled');
is($emu->stats->{cancels}, 1, 'statement_timeout: one cancel request');

# pg_cancel_backend from another session, while the statement runs
$emu->reset;
my ($o2, $e2) = ('', '');
my $h = IPC::Run::start(
	[ 'psql', '-X', '-d', $node->connstr('postgres'), '-c', 'SELECT * FROM slow' ],
	'>', \$o2, '2>', \$e2);
my $pid = $emu->wait_for(sub {
	my $p = sql(q{SELECT pid FROM pg_stat_activity WHERE query = 'SELECT * FROM slow' AND state = 'active'});
	return ($p ne '' && @{ $emu->statements->{statements} }) ? $p : 0;
}, 20);
ok($pid, 'cancel: query running');
sql("SELECT pg_cancel_backend($pid)");
$h->finish;
like($e2, qr/canceling statement due to user request/, 'cancel: query cancelled');
is($emu->wait_for(sub { $emu->statements->{statements}[0]{state} eq 'CANCELED' }, 10), 1,
	'cancel: the remote statement was cancelled');

# the server's own statement_timeout
$emu->reset;
sql(q{ALTER SERVER emu OPTIONS (ADD statement_timeout '400ms')});
($out, $err) = try_sql('SELECT * FROM slow');
like($err, qr/remote statement cancelled after the server's statement_timeout of 400 ms/,
	'server statement_timeout: clear error');
is($emu->statements->{statements}[0]{state}, 'CANCELED', 'server statement_timeout: remote cancel');
sql(q{ALTER SERVER emu OPTIONS (DROP statement_timeout)});

# with a waiting submit (wait_timeout 5s) a cancel does not wait for the submit: the
# query ends after a short grace, and since the statement id has not arrived, the
# remote statement cannot be cancelled and runs on -- a WARNING says so
$emu->reset;
sql(q{ALTER SERVER emu OPTIONS (ADD wait_timeout '5s')});
($out, $err) = try_sql(q{SET statement_timeout = '300ms'; SELECT * FROM slow});
like($err, qr/canceling statement due to statement timeout/, 'wait_timeout 5s: query cancelled');
like($err, qr/WARNING:  the remote statement may still run on the warehouse/,
	'wait_timeout 5s: a warning says the remote statement could not be cancelled');
is($emu->stats->{cancels}, 0, 'wait_timeout 5s: no cancel could be sent');
sql(q{ALTER SERVER emu OPTIONS (DROP wait_timeout)});

# an error in a subtransaction cancels that subtransaction's statements too
$emu->reset;
$out = sql(q{
	SET statement_timeout = '300ms';
	DO $$ BEGIN PERFORM * FROM slow; EXCEPTION WHEN query_canceled THEN RAISE NOTICE 'caught'; END $$;
	RESET statement_timeout;
	SELECT count(*) FROM ft});
is($out, '100', 'cancel caught in a subtransaction: the session goes on');
is($emu->wait_for(sub { $emu->statements->{statements}[0]{state} eq 'CANCELED' }, 10), 1,
	'cancel caught in a subtransaction: remote statement cancelled');
none_running('cancels');

# ---------------------------------------------------------------- remote failures
$emu->faults({ sql_fail => { error_code => 'TEMPORARILY_UNAVAILABLE', message => 'warehouse is restarting' } });
($out, $err) = try_sql('SELECT * FROM ft');
like($err, qr/ERROR:  remote statement failed: warehouse is restarting\nDETAIL:  Databricks error_code TEMPORARILY_UNAVAILABLE: warehouse is restarting/,
	'FAILED statement: remote error code and message');
like($err, qr/CONTEXT:  remote SQL: SELECT `id`, `cur`, `amount` FROM `main`.`h`.`t`/, 'FAILED statement: remote SQL in the context');
unlike($err, qr/SQLSTATE: XX/, 'FAILED statement: no internal error');

# refused requests (429/503) are retried, honouring Retry-After
$emu->reset;
$emu->faults({ sql_http_fail => { status => 503, count => 2, retry_after => 1 } });
is(sql('SELECT count(*) FROM ft'), '100', '503 twice with Retry-After: retried, then answered');
is($emu->stats->{sql_http_refusals}, 2, '503: both refusals seen');
$emu->faults({ sql_http_fail => { status => 429, count => 3 } });
is(sql('SELECT count(*) FROM ft'), '100', '429 three times: retried with backoff');
$emu->faults({ sql_http_fail => { status => 429, count => 20, retry_after => 0 } });
($out, $err) = try_sql('SELECT count(*) FROM ft');
like($err, qr/Databricks SQL API refused submitting the statement: Request refused .*\nDETAIL:  HTTP 429, error_code RESOURCE_EXHAUSTED/,
	'429 beyond the retries: clear error');
$emu->clear_faults;

# ---------------------------------------------------------------- tokens
my $issued = $emu->stats->{tokens_issued};
$emu->faults({ expire_tokens => JSON::PP::true });
is(sql('SELECT count(*) FROM ft'), '100', 'expired token: refreshed and retried');
is($emu->stats->{tokens_issued}, $issued + 1, 'expired token: one new token');
$emu->faults({ expire_tokens => JSON::PP::true, token_endpoint_fail => { status => 500, count => 10 } });
($out, $err) = try_sql('SELECT count(*) FROM ft');
like($err, qr/could not get an OAuth token for server "emu"\nDETAIL:  token endpoint .* returned HTTP 500/,
	'expired token and the token endpoint down: clear error');
unlike($err, qr/zb-test-secret/, 'the secret is not in the error');
$emu->clear_faults;

# ---------------------------------------------------------------- malformed responses
for my $case ([ 'statement', 'not_json', qr/invalid response from the Databricks SQL API while submitting the statement\nDETAIL:  expected a JSON object/ ],
	[ 'statement', 'truncated', qr/invalid response from the Databricks SQL API while submitting the statement\nDETAIL:  (unterminated|unexpected end)/ ],
	[ 'statement', 'invalid_utf8', qr/DETAIL:  the response is not valid UTF-8/ ],
	[ 'statement', 'bad_row', qr/while reading row 1 of the result\nDETAIL:  a row has more values than the result has columns/ ],
	[ 'chunk', 'truncated', qr/while reading a result chunk\nDETAIL:  (unterminated|unexpected end)/ ],
	[ 'chunk', 'bad_row', qr/while reading row 26 of the result\nDETAIL:  a row has more values/ ])
{
	my ($target, $kind, $re) = @$case;
	$emu->faults({ sql_malformed => { kind => $kind, target => $target } });
	($out, $err) = try_sql('SELECT * FROM ft');
	like($err, $re, "malformed $target response ($kind): clear error");
	like($err, qr/SQLSTATE|ERROR:  /, "malformed $target response ($kind): an ERROR, not a crash");
	$emu->clear_faults;
}
is(sql('SELECT count(*) FROM ft'), '100', 'after malformed responses: backend fine');

# ---------------------------------------------------------------- EXTERNAL_LINKS
sql(q{ALTER FOREIGN TABLE ft OPTIONS (ADD disposition 'external_links')});
is(sql('SELECT count(*), sum(id) FROM (SELECT * FROM ft OFFSET 0) s'), '100|5050',
	'external links: every chunk fetched from storage');
is($emu->stats->{external_fetches} >= 4, 1, 'external links: four chunks fetched');
$emu->faults({ link_ttl_s => 0 });
($out, $err) = try_sql('SELECT * FROM ft');
like($err, qr/could not fetch result chunk 0 from cloud storage: HTTP 403/,
	'expired links (even after asking for a fresh one): clear error');
unlike($err, qr/emulator-storage|x-zb-storage-key/, 'the pre-signed link is not in the error');
$emu->clear_faults;
sql(q{ALTER FOREIGN TABLE ft OPTIONS (DROP disposition)});

# ---------------------------------------------------------------- errors of the other kinds
($out, $err) = try_sql(q{CREATE FOREIGN TABLE nope (id int) SERVER emu OPTIONS (table 'main.h.nope'); SELECT * FROM nope});
like($err, qr/ERROR:  remote statement failed: \[TABLE_OR_VIEW_NOT_FOUND\]/, 'unknown table');
($out, $err) = try_sql(q{ALTER SERVER emu OPTIONS (SET warehouse_id 'nope'); SELECT * FROM ft});
like($err, qr/refused submitting the statement: Warehouse nope does not exist/, 'unknown warehouse');
sql(q{ALTER SERVER emu OPTIONS (SET warehouse_id 'emulator-wh')});
($out, $err) = try_sql(q{CREATE FOREIGN TABLE badtype (id int, cur int) SERVER emu OPTIONS (table 'main.h.t'); SELECT * FROM badtype});
like($err, qr/invalid input syntax for type integer: "\w+"\nCONTEXT:  column "cur" of foreign table "badtype" \(remote type STRING\)/,
	'a value that does not convert');
none_running('failures');

# ---------------------------------------------------------------- 10,000 queries, memory flat
sql(q{ALTER SERVER emu OPTIONS (ADD statement_timeout '100ms')});
my $measure = q{SELECT (SELECT sum(total_bytes) FROM pg_backend_memory_contexts),
  (regexp_match(pg_read_file('/proc/self/status'), 'VmRSS:\s+(\d+)'))[1];};
my $script = "\\o /dev/null\n";
my $i = 0;
my $queries = sub {
	my ($n) = @_;
	my $s = '';
	for (1 .. $n)
	{
		$i++;
		my $k = $i % 10;
		$s .= $k < 4 ? "SELECT id, cur FROM ft WHERE id = " . ($i % 120) . ";\n"
		  : $k < 6 ? "SELECT cur, count(*), avg(amount) FROM ft WHERE amount > $i GROUP BY cur;\n"
		  : $k < 8 ? "SELECT * FROM ft ORDER BY id LIMIT 5 OFFSET " . ($i % 50) . ";\n"
		  : $k < 9 ? "SELECT * FROM nope;\n"                     # fails remotely
		  : $i % 50 == 9 ? "SELECT * FROM slow;\n"               # our statement_timeout: remote cancel
		  : "SELECT count(*) FROM ft WHERE cur = 'it''s';\n";
	}
	return $s;
};
$script .= $queries->(300);    # warm-up: caches, plans, token, connections
$script .= "\\o\n$measure\n\\o /dev/null\n";
$script .= $queries->(10000);
$script .= "\\o\n$measure\n";
my $t0 = time();
my ($ret, $mout, $merr) = $node->psql('postgres', $script, on_error_stop => 0);
my $secs = time() - $t0;
my ($before, $after) = split /\n/, $mout;
my ($ctx0, $rss0) = split /\|/, $before;
my ($ctx1, $rss1) = split /\|/, $after;
my $nerr = () = $merr =~ /ERROR:/g;
note(sprintf('10,000 queries in %d s: memory contexts %d -> %d bytes, RSS %d -> %d kB, %d errors',
	$secs, $ctx0, $ctx1, $rss0, $rss1, $nerr));
cmp_ok($nerr, '>=', 1000, '10,000 queries: the failing ones failed');
cmp_ok($ctx1 - $ctx0, '<', 256 * 1024, '10,000 queries: memory contexts flat (< 256 kB growth)');
cmp_ok($rss1 - $rss0, '<', 8 * 1024, '10,000 queries: RSS flat (< 8 MB growth)');
sql(q{ALTER SERVER emu OPTIONS (DROP statement_timeout)});
none_running('10,000 queries');
is(sql('SELECT count(*) FROM ft'), '100', 'backend alive and well');

$node->stop;
done_testing();
