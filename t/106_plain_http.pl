# Plain http:// goes only to a loopback address, decided by the address
# actually connected to, before any byte of the request (and so any
# credential) is sent.  The validator already refuses a non-loopback host
# (sql/001_options); a server defined before it was strict (by an older
# version, whose rule was a "127." name prefix), or a name that resolves
# elsewhere, reaches the connection-time check, tested here: a recorder
# listening on a non-loopback address of this host accepts the connections
# and must receive nothing -- from the OAuth token fetch (foreign scan,
# execute_remote, check_connection), from the ZeroBus h2c stream open
# (check_connection, INSERT) and from a stream worker, which reports the
# refusal in zb_metrics.  The emulator on 127.0.0.1 and on localhost works.
use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusEmulator;
use ZerobusNode;

# A local address that is not loopback (the one this host would use to leave).
my $probe = IO::Socket::INET->new(PeerAddr => '192.0.2.1', PeerPort => 9, Proto => 'udp');
my $ip = $probe ? $probe->sockhost : undef;
plan skip_all => 'this host has no non-loopback IPv4 address'
  if !$ip || $ip =~ /^(127\.|0\.)/;

my $TABLE = 'main.plain.t';
my $emu = ZerobusEmulator->new;
my $node = ZerobusNode::create('plain_http', $emu);
$emu->create_table($TABLE, [ { name => 'id', type => 'BIGINT' } ]);

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub try_sql
{
	my ($ret, $out, $err) = $node->psql('postgres', $_[0]);
	return ($out, $err);
}

# ---------------------------------------------------------------- the recorder
# Accepts connections on $ip and appends every byte received to a file.
my $dir = PostgreSQL::Test::Utils::tempdir;
my $rec_file = "$dir/received";
my $listener = IO::Socket::INET->new(LocalAddr => $ip, LocalPort => 0, Listen => 16, ReuseAddr => 1)
  or die "listen on $ip: $!";
my $far = "http://$ip:" . $listener->sockport;
my $rec_pid = fork();
die "fork: $!" unless defined $rec_pid;
if ($rec_pid == 0)
{
	my $sel = IO::Select->new($listener);
	open(my $fh, '>>', $rec_file) or die;
	$fh->autoflush(1);
	while (1)
	{
		for my $s ($sel->can_read(1))
		{
			if ($s == $listener)
			{
				my $c = $listener->accept or next;
				$sel->add($c);
				print $fh "accept\n";
			}
			elsif (sysread($s, my $buf, 65536))
			{
				print $fh "data " . length($buf) . ": $buf\n";
			}
			else
			{
				$sel->remove($s);
				close $s;
			}
		}
	}
}
close $listener;
END { kill 'KILL', $rec_pid if $rec_pid; }

sub received { return -e $rec_file ? slurp_file($rec_file) : ''; }

# ---------------------------------------------------------------- servers
# The validator refuses these URLs, so they are put into the catalog the way
# an older version's validator let them in.
like((try_sql(qq{CREATE SERVER x FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (workspace_url '$far')}))[1],
	qr/plain http:\/\/ is only allowed to a loopback address/, 'the validator refuses the address');

sub far_server
{
	my ($name, $workspace, $endpoint) = @_;
	sql(qq{
		CREATE SERVER $name FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (workspace_url 'http://127.0.0.1:1');
		CREATE USER MAPPING FOR CURRENT_USER SERVER $name
		  OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
		UPDATE pg_foreign_server
		   SET srvoptions = ARRAY['workspace_url=$workspace', 'zerobus_endpoint=$endpoint',
		                          'warehouse_id=emulator-wh']
		 WHERE srvname = '$name';
		CREATE FOREIGN TABLE ${name}_ft (id bigint) SERVER $name OPTIONS (table '$TABLE');
	});
}
far_server('far', $far, $far);                       # OAuth and SQL API refused
far_server('farbus', $emu->http_url, $far);          # tokens fine, ZeroBus h2c refused

my $refused = qr/refused to send a plain http:\/\/ request to \Q$far\E.*: it connected to \Q$ip\E, which is not a loopback address/;
my ($out, $err);

($out, $err) = try_sql('SELECT * FROM far_ft');
like($err, $refused, 'scan: the token request is refused at the connection');
like($err, qr/HINT:  Use https:\/\//, 'scan: the hint says what to do');

($out, $err) = try_sql(q{SELECT zerobus.execute_remote('far', 'SELECT 1')});
like($err, $refused, 'execute_remote: refused');

$out = sql(qq{SELECT token_ok, error_code, error, hint FROM zerobus.check_connection('far', '$TABLE')});
like($out, qr/^f\|CONFIG\|.*not a loopback address\|Use https/, 'check_connection, token: refused, with a hint');

$out = sql(qq{SELECT token_ok, error_code, error FROM zerobus.check_connection('farbus', '$TABLE')});
like($out, qr/^t\|CONFIG\|.*EphemeralStream: it connected to \Q$ip\E, which is not a loopback address/,
	'check_connection, h2c: the token is fine, the stream is refused');

($out, $err) = try_sql('INSERT INTO farbus_ft VALUES (1)');
like($err, $refused, 'INSERT over h2c: refused');
is($emu->count($TABLE), 0, 'INSERT over h2c: nothing arrived anywhere');

# a stream worker: the refusal is its state, not a retry loop of sends
sql(qq{
	CREATE TABLE q (id bigint);
	SELECT zerobus.create_stream('s', 'q', 'farbus', '$TABLE');
	INSERT INTO q VALUES (1);
});
ok($node->poll_query_until('postgres',
		q{SELECT last_error ~ 'not a loopback address' FROM zb_metrics WHERE stream = 's'}),
	'stream worker: zb_metrics names the refusal');
is(sql(q{SELECT state FROM zb_metrics WHERE stream = 's'}), 'error', 'stream worker: state error');
sql(q{SELECT zerobus.drop_stream('s')});

# ---------------------------------------------------------------- what arrived
my $got = received();
my $accepts = () = $got =~ /^accept$/mg;
cmp_ok($accepts, '>=', 6, "the client did connect to $ip ($accepts connections): the check is made on the connected address");
unlike($got, qr/^data/m, 'not one byte of any request arrived');
unlike($got, qr/zb-test-secret|emItdGVzdC1jbGllbnQ6emItdGVzdC1zZWNyZXQ|Bearer|authorization/i,
	'no credential arrived');

# ---------------------------------------------------------------- loopback works
# The emulator answers on 127.0.0.1 (server emu) and under the name localhost.
(my $by_name = $emu->http_url) =~ s/127\.0\.0\.1/localhost/;
(my $bus_by_name = $emu->grpc_url) =~ s/127\.0\.0\.1/localhost/;
sql(qq{
	CREATE SERVER named FOREIGN DATA WRAPPER zerobus_fdw OPTIONS (
	  workspace_url '$by_name', zerobus_endpoint '$bus_by_name', warehouse_id 'emulator-wh');
	CREATE USER MAPPING FOR CURRENT_USER SERVER named
	  OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
	CREATE FOREIGN TABLE named_ft (id bigint) SERVER named OPTIONS (table '$TABLE');
	INSERT INTO named_ft VALUES (7);
});
is(sql('SELECT id FROM named_ft'), '7', 'localhost: INSERT over h2c and a scan work');
is(sql(qq{SELECT ok FROM zerobus.check_connection('emu', '$TABLE')}), 't', '127.0.0.1: check_connection works');

$node->stop;
unlike(slurp_file($node->logfile), qr/terminated by signal|PANIC/, 'no crash in the server log');
# (the test cluster logs every statement, mappings included: look at the messages)
unlike(slurp_file($node->logfile), qr/(?:ERROR|WARNING|DETAIL|HINT|CONTEXT|LOG):  (?!statement:).*zb-test-secret/,
	'the secret is in no message of the server log');

done_testing();
