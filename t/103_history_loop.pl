# The whole loop the extension is for: rows inserted into a queue table reach
# the Delta table through a stream's workers, and after zerobus.flush the
# history foreign table (IMPORT FOREIGN SCHEMA) shows exactly them; the
# dashboards' history queries run remotely and agree with the same queries on a
# local copy; DELETE clears the table.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusEmulator;
use ZerobusNode;

my $emu = ZerobusEmulator->new;
my $node = ZerobusNode::create('loop', $emu);
sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{
	SELECT zerobus.execute_remote('emu', 'CREATE TABLE main.default.financial_transactions (
	    txn_id STRING NOT NULL, amount DECIMAL(12,2), currency STRING, ts TIMESTAMP, tags ARRAY<STRING>)');
	CREATE TABLE tx_queue (txn_id text NOT NULL, amount numeric(12,2), currency text,
	                       ts timestamptz, tags text[]);
	CREATE TABLE sent (LIKE tx_queue);
	SELECT zerobus.create_stream('tx', queue => 'tx_queue', server => 'emu',
	                             target => 'main.default.financial_transactions');
	CREATE SCHEMA history;
	IMPORT FOREIGN SCHEMA "main.default" LIMIT TO (financial_transactions) FROM SERVER emu INTO history;
});

# applications insert, in several transactions; a copy is kept locally
for my $batch (0 .. 4)
{
	sql(qq{
		WITH r AS (
		  INSERT INTO tx_queue
		  SELECT 't' || i, round((i % 997) * 1.37, 2), (ARRAY['USD','EUR','GBP','JPY'])[1 + i % 4],
		         now() - (i % 2000) * interval '1 minute', ARRAY['b$batch']
		    FROM generate_series($batch * 2000 + 1, ($batch + 1) * 2000) i
		  RETURNING *)
		INSERT INTO sent SELECT * FROM r});
}
my $waited = sql(q{SELECT zerobus.flush('tx', '60 seconds')});
note("flush waited for $waited rows");
is(sql('SELECT count(*) FROM tx_queue'), '0', 'after flush the queue is empty');
is(sql('SELECT count(*), sum(amount) FROM history.financial_transactions'),
	sql('SELECT count(*), sum(amount) FROM sent'), 'every row is in the Delta table, read through the FDW');

# the dashboards' history queries, remote, against the same queries on the local copy
my $q1 = q{SELECT currency, count(*), sum(amount) FROM %s
	WHERE ts > now() - interval '1 day' GROUP BY currency ORDER BY currency};
like(sql('EXPLAIN (VERBOSE, COSTS OFF) ' . sprintf($q1, 'history.financial_transactions')),
	qr/Remote SQL: SELECT `currency`, count\(\*\), sum\(`amount`\) FROM `main`.`default`.`financial_transactions` WHERE \(`ts` > :p1\) GROUP BY 1 ORDER BY `currency` ASC NULLS LAST/,
	'per-currency summary runs remotely');
is(sql(sprintf($q1, 'history.financial_transactions')), sql(sprintf($q1, 'sent')),
	'per-currency summary agrees with the local copy');
my $q2 = q{SELECT txn_id, amount, currency, ts FROM %s ORDER BY ts DESC, txn_id LIMIT 50 OFFSET 100};
like(sql('EXPLAIN (VERBOSE, COSTS OFF) ' . sprintf($q2, 'history.financial_transactions')),
	qr/ORDER BY `ts` DESC NULLS FIRST, `txn_id` ASC NULLS LAST LIMIT 50 OFFSET 100/,
	'paginated table runs remotely');
is(sql(sprintf($q2, 'history.financial_transactions')), sql(sprintf($q2, 'sent')),
	'paginated table agrees with the local copy');

# more rows while the stream keeps running, then the seeds' "clear table"
sql(q{INSERT INTO tx_queue VALUES ('late', 1.00, 'USD', now(), '{}')});
sql(q{SELECT zerobus.flush('tx', '60 seconds')});
is(sql(q{SELECT count(*) FROM history.financial_transactions WHERE txn_id = 'late'}), '1',
	'a row committed later arrives too');
sql('DELETE FROM history.financial_transactions');
is(sql('SELECT count(*) FROM history.financial_transactions'), '0', 'DELETE clears the Delta table');
is($emu->count('main.default.financial_transactions'), 0, 'the emulator agrees');

$node->stop;
done_testing();
