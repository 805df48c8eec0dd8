# A DNS server that does not answer does not make a query uninterruptible.
# libcurl resolves names in a thread of its own, which our wait loop waits
# around; but abandoning a transfer whose resolve is still running joined
# that thread (until getaddrinfo gave up: 20 s and more) unless the handle
# has CURLOPT_QUICK_EXIT.  The server here runs with test/slow_dns.c
# preloaded: names under slowdns.test take 30 s to fail.
use strict;
use warnings;

use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use ZerobusNode;

my $dir = PostgreSQL::Test::Utils::tempdir;
my $cc = `pg_config --cc`;
chomp $cc;
my $so = "$dir/slow_dns.so";
my $src = dirname(__FILE__) . '/../test/slow_dns.c';
system("$cc -shared -fPIC -o $so $src -ldl") == 0
  or plan skip_all => 'could not build the DNS shim';

# the postmaster (and so every backend) resolves through the shim
my $node;
{
	local $ENV{LD_PRELOAD} = $so;
	$node = ZerobusNode::create('slow_dns');
}

$node->safe_psql('postgres', q{
	CREATE SERVER slowdns FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (
	  workspace_url 'https://ws.slowdns.test', zerobus_endpoint 'https://zb.slowdns.test',
	  warehouse_id 'w');
	CREATE USER MAPPING FOR CURRENT_USER SERVER slowdns
	  OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
	CREATE FOREIGN TABLE slowdns_ft (id bigint) SERVER slowdns OPTIONS (table 'main.default.t');
});

for my $case (
	[ 'scan', 'SELECT * FROM slowdns_ft' ],
	[ 'execute_remote', q{SELECT zerobus.execute_remote('slowdns', 'SELECT 1')} ],
	[ 'INSERT', 'INSERT INTO slowdns_ft VALUES (1)' ],
	[ 'check_connection', q{SELECT * FROM zerobus.check_connection('slowdns', 'main.default.t')} ])
{
	my ($what, $sql) = @$case;
	my $t0 = time();
	my ($ret, $out, $err) = $node->psql('postgres', "SET statement_timeout = '1s'; $sql");
	my $ms = 1000 * (time() - $t0);
	like($err, qr/canceling statement due to statement timeout/, "$what: cancelled");
	note(sprintf('%-20s resolving a name that takes 30 s: ended after %.0f ms', $what, $ms));
	cmp_ok($ms, '<', 10_000, "$what: ends while the name is still being resolved");
}

# terminate, too
my ($out, $err) = ('', '');
my $h = IPC::Run::start(
	[ 'psql', '-X', '-d', $node->connstr('postgres') . ' application_name=dns', '-c',
		'SELECT * FROM slowdns_ft' ],
	'>', \$out, '2>', \$err, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
$node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE application_name = 'dns' AND wait_event_type = 'Extension'})
  or die 'the query never waited';
my $t0 = time();
$node->safe_psql('postgres',
	q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'dns'});
$h->finish;
my $ms = 1000 * (time() - $t0);
like($err, qr/terminating connection due to administrator command/, 'terminate: terminated');
note(sprintf('%-20s resolving a name that takes 30 s: ended after %.0f ms', 'terminate', $ms));
cmp_ok($ms, '<', 10_000, 'terminate: ends while the name is still being resolved');

is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server goes on');
$node->stop;
unlike(slurp_file($node->logfile), qr/terminated by signal|PANIC/, 'no crash in the server log');

done_testing();
