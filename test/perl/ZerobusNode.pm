# ZerobusNode: a PostgreSQL test cluster with zerobus_fdw preloaded and a
# server + user mapping pointing at a ZerobusEmulator.
package ZerobusNode;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use ZerobusCrashCheck;    # every node's log is checked for crashes at done_testing

# ZerobusNode::create($name, $emu, tls => 0|1, conf => "extra lines")
sub create
{
	my ($name, $emu, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', join("\n",
		"shared_preload_libraries = 'zerobus_fdw'",
		"max_worker_processes = 32",
		"log_min_messages = info",
		$opts{conf} || ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION zerobus_fdw');
	add_server($node, $emu, 'emu', %opts) if $emu;
	return $node;
}

# A server named $server for the emulator, with the default test credentials
# (in database $opts{dbname}, default postgres).
sub add_server
{
	my ($node, $emu, $server, %opts) = @_;
	my $opts = $opts{tls}
	  ? sprintf("workspace_url '%s', zerobus_endpoint '%s', ca_file '%s'",
		$emu->https_url, $emu->grpcs_url, $emu->ca_file)
	  : sprintf("workspace_url '%s', zerobus_endpoint '%s'", $emu->http_url, $emu->grpc_url);
	$opts .= ", $opts{server_options}" if $opts{server_options};
	my $db = $opts{dbname} || 'postgres';
	$node->safe_psql($db, 'CREATE EXTENSION IF NOT EXISTS zerobus_fdw');
	$node->safe_psql($db, qq{
		CREATE SERVER $server FOREIGN DATA WRAPPER zerobus_fdw OPTIONS ($opts, warehouse_id 'emulator-wh');
		CREATE USER MAPPING FOR CURRENT_USER SERVER $server
		  OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret');
	});
}

# Change capture needs wal_level = logical (pass it in conf); minor releases
# from 2026 on also load only the output plugins output_plugin_libraries
# names.  Add zerobus_fdw there when the server has the setting.
sub enable_cdc
{
	my ($node) = @_;
	return
	  if $node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_settings WHERE name = 'output_plugin_libraries'}) eq '0';
	$node->safe_psql('postgres',
		q{ALTER SYSTEM SET output_plugin_libraries = pgoutput, test_decoding, zerobus_fdw});
	$node->reload;
	$node->poll_query_until('postgres',
		q{SELECT current_setting('output_plugin_libraries') LIKE '%zerobus_fdw%'})
	  or die 'output_plugin_libraries was not reloaded';
}

1;
