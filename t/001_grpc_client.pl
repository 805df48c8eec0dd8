# The C gRPC client end to end: a million records in batches through
# zerobus.bench_transport to the emulator's sink, every ack accounted for;
# then the same over TLS; then the client's behaviour against peers that
# break the protocol (garbage frames, a non-gRPC server, oversized message,
# a dropped connection) and against slow or failing services.
use strict;
use warnings;

use IO::Socket::INET;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusEmulator;
use ZerobusNode;

my $emu = ZerobusEmulator->new(args => ['--sink']);
$emu->create_table('main.default.bench',
	[ { name => 'id', type => 'BIGINT' }, { name => 'payload', type => 'STRING' } ]);
my $node = ZerobusNode::create('grpc', $emu);
ZerobusNode::add_server($node, $emu, 'emu_tls', tls => 1);

# --- a million records, every ack accounted for
my $r = $node->safe_psql('postgres', q{
	SELECT records_sent, requests, acked_requests, round(records_per_sec)
	  FROM zerobus.bench_transport('emu', 'main.default.bench', 1000000, 1000, 200, 16)});
my ($sent, $requests, $acked, $rate) = split /\|/, $r;
is($sent, 1000000, 'one million records sent');
is($requests, 1000, 'in 1000 batch requests');
is($acked, $requests, 'every request acknowledged');
my $stats = $emu->stats;
is($stats->{records}, 1000000, 'the emulator counted every record');
note("h2c: $rate records/s");

$r = $node->safe_psql('postgres', q{
	SELECT records_sent, acked_requests, round(records_per_sec)
	  FROM zerobus.bench_transport('emu_tls', 'main.default.bench', 200000, 1000, 200, 16)});
($sent, $acked, $rate) = split /\|/, $r;
is($sent, 200000, 'TLS: records sent');
is($acked, 200, 'TLS: every request acknowledged');
note("TLS: $rate records/s");

# single-record requests: the most pause/resume cycles per byte
$r = $node->safe_psql('postgres', q{
	SELECT records_sent, acked_requests
	  FROM zerobus.bench_transport('emu', 'main.default.bench', 20000, 1, 200, 64)});
is($r, '20000|20000', 'twenty thousand single-record requests, all acknowledged');

# --- protocol violations: each a clear error, never a crash or a hang
my ($ret, $out, $err);

$emu->faults({ garbage => { kind => 'frames' } });
($ret, $out, $err) = $node->psql('postgres',
	q{SELECT * FROM zerobus.bench_transport('emu', 'main.default.bench', 1000, 100)});
isnt($ret, 0, 'garbage frames: the call fails');
like($err, qr/malformed response|could not reach|PROTOCOL|not a gRPC/i, 'garbage frames: clear error');
note($err);
$emu->clear_faults;

$emu->faults({ garbage => { kind => 'protobuf' } });
($ret, $out, $err) = $node->psql('postgres',
	q{SELECT * FROM zerobus.bench_transport('emu', 'main.default.bench', 1000, 100)});
isnt($ret, 0, 'undecodable protobuf: the call fails');
like($err, qr/could not decode/, 'undecodable protobuf: clear error');
$emu->clear_faults;

$emu->faults({ not_grpc => JSON::PP::true });
$r = $node->safe_psql('postgres', q{
	SELECT error_code || ': ' || error FROM zerobus.check_connection('emu', 'main.default.bench')});
like($r, qr/PROTOCOL: .* is not a gRPC endpoint: HTTP 404, content-type "text\/html/,
	'a non-gRPC server is named as such');
$emu->clear_faults;

# 100,000 records of 200 bytes = 20 MB in one request: above the 10 MB limit
($ret, $out, $err) = $node->psql('postgres',
	q{SELECT * FROM zerobus.bench_transport('emu', 'main.default.bench', 100000, 100000, 200)});
like($err, qr/exceeds the 10 MB request limit/, 'oversized batch refused before sending');
# 9.9 MB passes our check; the emulator enforces 10 MiB decoded
($ret, $out, $err) = $node->psql('postgres',
	q{SELECT records_sent FROM zerobus.bench_transport('emu', 'main.default.bench', 49000, 49000, 200)});
is($out, '49000', 'a request just under the limit goes through');

$emu->faults({ drop_connection => { after_requests => 5 } });
($ret, $out, $err) = $node->psql('postgres',
	q{SELECT * FROM zerobus.bench_transport('emu', 'main.default.bench', 100000, 1000, 200, 4)});
isnt($ret, 0, 'dropped connection: the call fails');
like($err, qr/stream failed .*\n.*(could not reach|ended|closed)/i, 'dropped connection: clear error');
note($err);
$emu->clear_faults;

$emu->faults({ end_stream => { after_requests => 3, status => 'UNAVAILABLE', message => 'maintenance 100%' } });
($ret, $out, $err) = $node->psql('postgres',
	q{SELECT * FROM zerobus.bench_transport('emu', 'main.default.bench', 100000, 1000, 200, 1)});
like($err, qr/UNAVAILABLE: maintenance 100%/, 'gRPC status and percent-decoded message reported');
$emu->clear_faults;

# --- acks withheld: the call times out on its deadline, interruptibly
$node->safe_psql('postgres', q{ALTER SERVER emu OPTIONS (ADD request_timeout '2s')});
$emu->faults({ withhold_acks => JSON::PP::true });
($ret, $out, $err) = $node->psql('postgres',
	q{SELECT * FROM zerobus.bench_transport('emu', 'main.default.bench', 1000, 100)});
like($err, qr/no acknowledgement from ZeroBus within 2000 ms/, 'withheld acks: deadline error');
($ret, $out, $err) = $node->psql('postgres',
	q{SET statement_timeout = '300ms'; SELECT * FROM zerobus.bench_transport('emu', 'main.default.bench', 1000, 100)});
like($err, qr/canceling statement due to statement timeout/, 'a cancel interrupts the wait');
$emu->clear_faults;

# --- the token endpoint failing for a while: retried, then reported
$emu->faults({ token_endpoint_fail => { status => 500, count => 2 } });
$r = $node->safe_psql('postgres', q{
	SELECT ok FROM zerobus.check_connection('emu', 'main.default.bench')});
is($r, 't', 'two token endpoint 500s are retried through');
$emu->faults({ token_endpoint_fail => { status => 500, count => 10 } });
$r = $node->safe_psql('postgres', q{
	SELECT token_ok, error_code, error FROM zerobus.check_connection('emu_tls', 'main.default.bench')});
like($r, qr/^f\|HTTP\|token endpoint .* returned HTTP 500/, 'a failing token endpoint is reported');
$emu->clear_faults;

# --- a port that accepts connections and never answers: a timeout
my $silent = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
  or die "listen: $!";
my $port = $silent->sockport;
$node->safe_psql('postgres', qq{
	CREATE SERVER silent FOREIGN DATA WRAPPER zerobus_fdw
	  OPTIONS (workspace_url '@{[ $emu->http_url ]}', zerobus_endpoint 'http://127.0.0.1:$port');
	CREATE USER MAPPING FOR CURRENT_USER SERVER silent
	  OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');});
$r = $node->safe_psql('postgres', q{
	SELECT error_code, error FROM zerobus.check_connection('silent', 'main.default.bench', '1 second')});
is($r, 'TIMEOUT|no reply to CreateIngestStream within 1000 ms', 'a silent server times out');

# the backend survived all of the above
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'backend alive');

$node->stop;
done_testing();
