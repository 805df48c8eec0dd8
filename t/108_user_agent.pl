# The server option user_agent, end to end: the words it holds are appended
# to the client identifier that every service receives (ZeroBus in
# x-zerobus-sdk, OAuth, the SQL API and cloud storage in User-Agent), from
# every path (check_connection, a history scan, INSERT through ZeroBus, a
# stream worker).  ALTER SERVER reaches the next query of a backend that
# already used the server, and a running stream's worker (both hold a
# session that the change replaces): the emulator records what it received
# (GET /emulator/clients).
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusEmulator;
use ZerobusNode;

my $emu = ZerobusEmulator->new;
$emu->create_table('main.default.agent',
	[ { name => 'id', type => 'BIGINT', nullable => JSON::PP::false } ]);
my $node = ZerobusNode::create('agent', $emu,
	server_options => q{user_agent 'acme-ingest/2.1 (regress)'});
sub sql { return $node->safe_psql('postgres', $_[0]); }

my $base = 'zerobus_fdw/' . sql(q{SELECT extversion FROM pg_extension WHERE extname = 'zerobus_fdw'});
my $agent = "$base acme-ingest/2.1 (regress)";
sub clients { return $emu->api('GET', '/emulator/clients'); }

# check_connection: a ZeroBus token, then a stream
$emu->reset;
is(sql(q{SELECT ok FROM zerobus.check_connection('emu', 'main.default.agent')}), 't',
	'check_connection works with user_agent set');
is_deeply(clients()->{oauth}, { $agent => 1 }, 'OAuth: User-Agent carries the suffix');
is_deeply(clients()->{zerobus}, { $agent => 1 }, 'ZeroBus: x-zerobus-sdk carries the suffix');

# the history FDW: INSERT through ZeroBus, a scan through the SQL API, a
# scan whose result comes from cloud storage (EXTERNAL_LINKS)
$emu->reset;
sql(q{
	CREATE FOREIGN TABLE agent_ft (id bigint) SERVER emu OPTIONS (table 'main.default.agent');
	CREATE FOREIGN TABLE agent_links (id bigint) SERVER emu
	    OPTIONS (table 'main.default.agent', disposition 'external_links');
	INSERT INTO agent_ft SELECT generate_series(1, 3);
});
is(sql('SELECT count(*) FROM agent_ft'), '3', 'INSERT and scan work');
is(sql('SELECT sum(id) FROM (SELECT id FROM agent_links ORDER BY id) s'), '6',
	'a scan through EXTERNAL_LINKS works');
my $c = clients();
is_deeply($c->{zerobus}, { $agent => 1 }, 'INSERT: the ZeroBus stream carried the suffix');
is_deeply([ keys %{ $c->{sql} } ], [$agent], 'SQL API: every request carried the suffix');
is_deeply([ keys %{ $c->{storage} } ], [$agent], 'cloud storage: every fetch carried the suffix');
is_deeply([ keys %{ $c->{oauth} } ], [$agent], 'OAuth: every token request carried the suffix');

# a stream's worker (the only client of ZeroBus from here on)
$emu->reset;
sql(q{
	CREATE TABLE agent_q (id bigint NOT NULL);
	SELECT zerobus.create_stream('agent', 'agent_q', 'emu', 'main.default.agent');
});
sql(q{INSERT INTO agent_q VALUES (10); SELECT zerobus.flush('agent', '60 s')});
is_deeply(clients()->{zerobus}, { $agent => 1 },
	'the stream worker opened its stream with the suffix');

# ALTER SERVER between two scans of one backend: the second uses the new value
$emu->reset;
is( sql(q{
		SELECT count(*) FROM agent_ft;
		ALTER SERVER emu OPTIONS (SET user_agent 'acme-ingest/2.2');
		SELECT count(*) FROM agent_ft;
	}),
	"4\n4",
	'scans before and after ALTER SERVER in one backend');
$c = clients()->{sql};
ok($c->{$agent} && $c->{"$base acme-ingest/2.2"},
	'the backend replaced its session: the second scan sent the new value')
  or diag(explain($c));

# ... and the running worker reconnects with it, at the latest after its
# next batch (no reset here: it may already have, on an idle pass; nothing
# else opened a ZeroBus stream since the reset above)
sql(q{INSERT INTO agent_q VALUES (11); SELECT zerobus.flush('agent', '60 s')});
ok($emu->wait_for(sub { clients()->{zerobus}{"$base acme-ingest/2.2"} }, 30),
	'the stream worker reopened its stream with the new value')
  or diag(explain(clients()));
is(sql(q{SELECT count(*) FROM agent_ft WHERE id >= 10}), '2', 'no row lost on the way');

# without the option, the identifier is the extension's alone
sql(q{ALTER SERVER emu OPTIONS (DROP user_agent)});
$emu->reset;
sql(q{SELECT ok FROM zerobus.check_connection('emu', 'main.default.agent')});
is_deeply(clients()->{zerobus}, { $base => 1 }, 'no option: x-zerobus-sdk is zerobus_fdw/<version>');

# a value that could end a header line is refused (the validator)
my ($rc, $out, $err) = $node->psql('postgres',
	qq{ALTER SERVER emu OPTIONS (ADD user_agent E'x\\r\\nauthorization: Bearer y')});
like($err, qr/printable ASCII characters only/, 'CR/LF in user_agent is refused');

$node->stop;
done_testing();
