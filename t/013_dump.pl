# pg_dump and restore keep streams and generators (extension configuration
# tables) and the queue's wake-up trigger; the restored stream runs.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusEmulator;
use ZerobusNode;

my $emu = ZerobusEmulator->new;
$emu->create_table('main.default.dumped',
	[ { name => 'id', type => 'BIGINT', nullable => JSON::PP::false }, { name => 'note', type => 'STRING' } ]);
my $node = ZerobusNode::create('dump', $emu);
$node->safe_psql('postgres', q{
	CREATE TABLE q (id bigint NOT NULL, note text);
	SELECT zerobus.create_stream('d', 'q', 'emu', 'main.default.dumped', workers => 2,
	                             batch_rows => 777, start => false);
	INSERT INTO q VALUES (1, 'queued before the dump');
});

my $dump = $node->basedir . '/dump.sql';
command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-f', $dump ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
command_ok([ 'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-q', '-d', $node->connstr('restored'), '-f', $dump ],
	'restore into another database');

is($node->safe_psql('restored', q{SELECT name, queue, target, workers, batch_rows, enabled FROM zerobus.streams}),
	'd|q|main.default.dumped|2|777|f', 'the stream and its settings came back');
is($node->safe_psql('restored', q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'q'::regclass AND tgname = 'zerobus_wakeup'}),
	'1', 'so did the wake-up trigger');
is($node->safe_psql('restored', 'SELECT count(*) FROM q'), '1', 'and the queued row');

# the restored copy delivers (the original stays stopped)
$node->safe_psql('restored', q{SELECT zerobus.start_stream('d')});
$node->safe_psql('restored', q{INSERT INTO q VALUES (2, 'after the restore')});
$node->safe_psql('restored', q{SELECT zerobus.flush('d', '60s')});
is($emu->count('main.default.dumped'), 2, 'the restored stream delivered both rows');
is($node->safe_psql('postgres', 'SELECT count(*) FROM q'), '1', 'the original, stopped, kept its row');

$node->stop;
done_testing();
