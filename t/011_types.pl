# The type map (docs/DESIGN.md, "Records") end to end: every supported PostgreSQL type, at
# its extremes and as NULL, in PROTO and JSON records, decoded by the
# emulator with the descriptor the worker sent and compared with what
# PostgreSQL says the values are.  Values no record can carry (NaN and
# infinite decimals and dates, NULL array elements, 2-D arrays) become dead
# letters while the other rows go through.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusEmulator;
use ZerobusNode;

my $emu = ZerobusEmulator->new;
my $f = JSON::PP::false;
my @cols = (
	{ name => 'id', type => 'INT', nullable => $f },
	{ name => 'i2', type => 'SMALLINT' },
	{ name => 'i4', type => 'INT' },
	{ name => 'i8', type => 'BIGINT' },
	{ name => 'b', type => 'BOOLEAN' },
	{ name => 'f4', type => 'FLOAT' },
	{ name => 'f8', type => 'DOUBLE' },
	{ name => 't', type => 'STRING' },
	{ name => 'vc', type => 'STRING' },
	{ name => 'c', type => 'STRING' },
	{ name => 'js', type => 'STRING' },
	{ name => 'jb', type => 'STRING' },
	{ name => 'u', type => 'STRING' },
	{ name => 'n', type => 'DECIMAL(12,2)' },
	# the emulator keeps DECIMAL as a double: extremes are checked as exact text
	{ name => 'nx', type => 'STRING' },
	{ name => 'd', type => 'DATE' },
	{ name => 'ts', type => 'TIMESTAMP_NTZ' },
	{ name => 'tstz', type => 'TIMESTAMP' },
	{ name => 'by', type => 'BINARY' },
	{ name => 'ai', type => 'ARRAY<INT>' },
	{ name => 'ab', type => 'ARRAY<BIGINT>' },
	{ name => 'at', type => 'ARRAY<STRING>' },
	{ name => 'atz', type => 'ARRAY<TIMESTAMP>' });
$emu->create_table("main.default.types_$_", \@cols) for qw(proto json);

my $node = ZerobusNode::create('types', $emu);
$node->safe_psql('postgres', q{
	CREATE DOMAIN money_amount AS numeric(12,2);
	CREATE TABLE types (id int NOT NULL, i2 smallint, i4 integer, i8 bigint, b boolean,
	    f4 real, f8 double precision, t text, vc varchar(20), c char(3), js json, jb jsonb,
	    u uuid, n money_amount, nx numeric, d date, ts timestamp, tstz timestamptz, by bytea,
	    ai int[], ab bigint[], at text[], atz timestamptz[]);
	INSERT INTO types VALUES
	  (1, -32768, -2147483648, -9223372036854775808, false, -3.4028235e38, -1.7976931348623157e308,
	   '', '', '', '[]', '{}', '00000000-0000-0000-0000-000000000000', -9999999999.99,
	   '-99999999999999999999999999999999999999.99999999999999999999', '0001-01-01',
	   '0001-01-01 00:00:00', '0001-01-01 00:00:00+00', '\x00', '{-2147483648}',
	   '{-9223372036854775808}', '{""}', '{"0001-01-01 00:00:00+00"}'),
	  (2, 32767, 2147483647, 9223372036854775807, true, 3.4028235e38, 1.7976931348623157e308,
	   E'Gr\u00fc\u00dfe \u65e5\u672c \U0001F389 "q" \\ line\nbreak\ttab', 'varchar', 'ab', '{"a": [1, 2.5, null]}',
	   '{"k": {"nested": "v\u00e9"}}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 9999999999.99,
	   '0.00000000000000000000000000000000000001', '9999-12-31', '9999-12-31 23:59:59.999999',
	   '2024-02-29 23:59:59.999999+05:30', '\xdeadbeef00ff', '{2147483647,0,-1}',
	   '{9223372036854775807,0}', '{"a","","\u00fc","x,y"}', '{"2024-01-01 00:00:00+00","1969-12-31 23:59:59.999999+00"}'),
	  (3, 0, 0, 0, false, 0, 0, '0', '0', '0', '0', '0', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 0, 0,
	   '1970-01-01', '1970-01-01 00:00:00', '1970-01-01 00:00:00+00', '', '{0}', '{0}', '{0}',
	   '{"1970-01-01 00:00:00+00"}'),
	  (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	   NULL, NULL, NULL, NULL, NULL, NULL, NULL),
	  (5, 1, 1, 1, true, 1.5, -2.25e-300, 'x', 'y', 'z', 'true', 'false', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
	   -0.01, '-1e-10', '1969-12-31', '1969-12-31 23:59:59.999999', '1969-12-31 23:59:59.999999+00',
	   '\x01', '{}', '{}', '{}', '{}');
	CREATE TABLE q_proto (LIKE types);
	CREATE TABLE q_json (LIKE types);
	SELECT zerobus.create_stream('types_proto', 'q_proto', 'emu', 'main.default.types_proto');
	SELECT zerobus.create_stream('types_json', 'q_json', 'emu', 'main.default.types_json',
	                             record_format => 'json');
	INSERT INTO q_proto SELECT * FROM types;
	INSERT INTO q_json SELECT * FROM types;
	SELECT zerobus.flush('types_proto', '60s');
	SELECT zerobus.flush('types_json', '60s');
});

# What the emulator should hold, by PostgreSQL's own reckoning, in the
# emulator's rendering: dates as days and timestamps as microseconds since
# 1970, binary as base64; inside arrays, timestamps as Databricks prints
# them (ISO-8601 UTC, 3 to 6 fraction digits).  An empty array is NULL in
# PROTO records (a repeated field without elements is absent on the wire)
# and [] in JSON records.
sub expected_rows
{
	my ($empty_array) = @_;
	return $node->safe_psql('postgres', qq{
	SELECT json_agg(json_build_array(id, i2, i4, i8, b, f4::float8, f8, t, vc,
	         CASE WHEN c IS NOT NULL THEN format('%s', c) END,
	         js::text, jb::text, u::text, n::numeric(12,2)::text, nx::text, d - date '1970-01-01',
	         (extract(epoch FROM ts) * 1000000)::bigint,
	         (extract(epoch FROM tstz) * 1000000)::bigint, encode(by, 'base64'),
	         CASE WHEN cardinality(ai) > 0 THEN to_json(ai) WHEN ai IS NOT NULL THEN $empty_array END,
	         CASE WHEN cardinality(ab) > 0 THEN to_json(ab) WHEN ab IS NOT NULL THEN $empty_array END,
	         CASE WHEN cardinality(at) > 0 THEN to_json(at) WHEN at IS NOT NULL THEN $empty_array END,
	         CASE WHEN cardinality(atz) > 0 THEN
	           (SELECT json_agg(to_char(x AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.') ||
	                            rpad(rtrim(to_char(x AT TIME ZONE 'UTC', 'US'), '0'),
	                                 greatest(3, length(rtrim(to_char(x AT TIME ZONE 'UTC', 'US'), '0'))), '0') || 'Z')
	              FROM unnest(atz) x)
	           WHEN atz IS NOT NULL THEN $empty_array END)
	         ORDER BY id)
	  FROM types});
}
my $json = JSON::PP->new->utf8;

for my $kind (qw(proto json))
{
	my $want = $json->decode(expected_rows($kind eq 'json' ? q{'[]'::json} : 'NULL'));
	my $got = $emu->rows("main.default.types_$kind")->{rows};
	my @sorted = sort { $a->[0] <=> $b->[0] } @$got;
	is(scalar(@sorted), 5, "$kind: five rows arrived");
	for my $i (0 .. $#$want)
	{
		my $row = $sorted[$i] || [];
		for my $c (0 .. $#cols)
		{
			my ($g, $w) = ($row->[$c], $want->[$i][$c]);
			# decimals come back at the column's scale; compare as numbers
			if ($cols[$c]{name} eq 'n' && defined $g && defined $w)
			{
				cmp_ok($g, '==', $w, "$kind: row $want->[$i][0] column n");
				next;
			}
			is_deeply($g, $w, "$kind: row $want->[$i][0] column $cols[$c]{name}");
		}
	}
}
is($node->safe_psql('postgres', 'SELECT count(*) FROM q_proto') + $node->safe_psql('postgres', 'SELECT count(*) FROM q_json'),
	0, 'both queues are empty');

# --- values that cannot be records: dead letters, the rest delivered
$node->safe_psql('postgres', q{
	INSERT INTO q_proto (id, nx) VALUES (100, 'NaN'), (101, 'Infinity');
	INSERT INTO q_proto (id, d) VALUES (102, 'infinity');
	INSERT INTO q_proto (id, tstz) VALUES (103, '-infinity');
	INSERT INTO q_proto (id, ai) VALUES (104, '{1,NULL,3}');
	INSERT INTO q_proto (id, ai) VALUES (105, '{{1,2},{3,4}}');
	INSERT INTO q_proto (id, t) VALUES (106, 'fine');
	INSERT INTO q_json (id, f8) VALUES (200, 'NaN'), (201, '-Infinity');
	INSERT INTO q_json (id, t) VALUES (202, 'fine');
	SELECT zerobus.flush('types_proto', '60s');
	SELECT zerobus.flush('types_json', '60s');
});
is($node->safe_psql('postgres', q{
	SELECT string_agg((record->>'id') || ': ' || error, E'\n' ORDER BY (record->>'id')::int)
	  FROM zerobus.dead_letters}),
	join("\n",
		'100: NaN and infinity cannot be sent as a DECIMAL',
		'101: NaN and infinity cannot be sent as a DECIMAL',
		'102: an infinite date cannot be sent as a DATE',
		'103: an infinite timestamp cannot be sent as a TIMESTAMP',
		'104: an array with NULL elements cannot be sent as a repeated field',
		'105: a multi-dimensional array cannot be sent as a repeated field',
		'200: NaN and infinity cannot be written in JSON',
		'201: NaN and infinity cannot be written in JSON'),
	'each unrepresentable value is a dead letter with the reason');
is($emu->sql(q{SELECT count(*) FROM "main.default.types_proto" WHERE id = 106})->{rows}[0][0]
	 + $emu->sql(q{SELECT count(*) FROM "main.default.types_json" WHERE id = 202})->{rows}[0][0],
	2, 'the rows around them were delivered');
is($node->safe_psql('postgres', q{SELECT sum(rows_dead_lettered) FROM zb_metrics}), '8',
	'dead letters are counted');

$node->stop;
done_testing();
