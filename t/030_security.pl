# An unprivileged role tries to become superuser, or to run its code as
# another role, through every function and every worker path of the
# extension (docs/DESIGN.md, security model; issue 8 items 1-3 and 7).
#
# The attacker "mallory" has EXECUTE on every function of the extension,
# USAGE on one server with a user mapping, CREATE on public and its own
# schema, and owns a database.  It plants shadow operators and functions
# (=, <>, >=, <, *, to_jsonb, now, random, power, generate_series, ...) in
# public, in its schema on its session's, its role's and its database's
# search_path, and user code on its queues (triggers, defaults, CHECK
# constraints, index expressions, row-level security policies).  Every
# piece of its code calls mallory.attempt(), which logs current_user and
# session_user (RAISE LOG: the server log keeps it even when the
# transaction rolls back), records them in a table it owns, and tries
# ALTER ROLE mallory SUPERUSER directly and after SET ROLE / SET SESSION
# AUTHORIZATION to each superuser.
#
# Each case makes its path run (a row delivered, dead-lettered, generated,
# a stream registered by the scan worker) and then checks that mallory is
# not superuser and that no attacker code ran as any role but mallory.
# Refusals are SQLSTATE 42501 (docs/DESIGN.md, "Security model", "Checks").
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use ZerobusEmulator;
use ZerobusNode;

my $emu = ZerobusEmulator->new;
my $node = ZerobusNode::create('security', $emu,
	conf => "zerobus.poll_interval = '200ms'\nrestart_after_crash = on");

# The test's own superuser statements never resolve names through schemas
# the attacker can write: that would be PostgreSQL's public-schema hazard,
# not the extension's.
my $PIN = "SET search_path = pg_catalog, pg_temp;\n";

sub su
{
	my ($sql, $db) = @_;
	return $node->safe_psql($db // 'postgres', $PIN . $sql);
}

# Poll a superuser query until it returns 't' (a dying cluster is retried).
sub su_poll
{
	my ($sql, $secs, $db) = @_;
	my $deadline = time + ($secs // 60);
	while (time < $deadline)
	{
		my ($ret, $out) = $node->psql($db // 'postgres', $PIN . $sql);
		return 1 if $ret == 0 && $out eq 't';
		usleep(200_000);
	}
	return 0;
}

# Run SQL as a role; returns { ret, out, err, state } (state: the SQLSTATE of the error).
sub as
{
	my ($role, $sql, %o) = @_;
	my $pre = "\\set VERBOSITY verbose\n";
	$pre .= "SET search_path = $o{path};\n" if $o{path};
	my ($ret, $out, $err) = $node->psql($o{db} // 'postgres', $pre . $sql,
		extra_params => [ '-U', $role ], on_error_stop => $o{keep_going} ? 0 : 1);
	my ($state) = ($err // '') =~ /ERROR:  ([0-9A-Z]{5}):/;
	return { ret => $ret, out => $out, err => $err, state => $state // '' };
}

sub ok_as
{
	my ($role, $sql, $name, %o) = @_;
	my $r = as($role, $sql, %o);
	is($r->{ret}, 0, $name) or diag($r->{err});
	return $r->{out};
}

# Refused with that SQLSTATE (or one matching a pattern)
sub refused_as
{
	my ($role, $sql, $state, $name, %o) = @_;
	my $r = as($role, $sql, %o);
	if (ref $state)
	{
		like($r->{state}, $state, "$name: refused") or diag("ret $r->{ret}; $r->{err}");
	}
	else
	{
		is($r->{state}, $state, "$name: refused ($state)") or diag("ret $r->{ret}; $r->{err}");
	}
	return $r;
}

# --- what the attacker's code left in the server log, case by case
my $log_pos = 0;
my %all_foreign;    # "fn as role" => 1, over the whole run

sub new_shadow_lines
{
	open(my $fh, '<', $node->logfile) or die $!;
	seek($fh, $log_pos, 0);
	# the messages themselves, not the logged statements that create them
	my @lines = grep { /LOG:  zb-shadow / } <$fh>;
	$log_pos = tell($fh);
	close $fh;
	return @lines;
}

# After each case: mallory is not superuser, and its code ran as nobody else.
sub check_case
{
	my ($case) = @_;
	my (%foreign, $escalated);
	for (new_shadow_lines())
	{
		my ($fn, $cur, $sess) = /zb-shadow (?:ESCALATED \S+ )?fn=(.*?) current_user=(\S+) session_user=(\S+)/
		  or next;
		$escalated = 1 if /ESCALATED/;
		$foreign{"$fn as $cur (session $sess)"} = 1 if $cur ne 'mallory';
	}
	ok(!%foreign, "$case: no attacker code ran as another role")
	  or diag(join("\n", sort keys %foreign));
	$all_foreign{$_} = 1 for keys %foreign;
	my $super = su(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'});
	is($super, 'f', "$case: mallory is not superuser") or diag('escalated: ' . ($escalated ? 'yes' : 'no'));
	# judge the next case on its own
	su(q{ALTER ROLE mallory NOSUPERUSER}) if $super ne 'f';
}

# Mallory's code ran (as mallory) under this name: proof a path was taken.
sub sighted
{
	my ($fn, $db) = @_;
	return su(qq{SELECT count(*) > 0 FROM mallory.sightings WHERE fn = '$fn' AND cur = 'mallory'}, $db) eq 't';
}

sub delta_columns
{
	my ($profile, @extra) = @_;
	my $delta = su(qq{SELECT delta_columns FROM zerobus.generator_profiles() WHERE profile = '$profile'});
	return [ (map {
		my ($name, $type, $nn) = /^\s*(\w+)\s+(\S+)(\s+NOT NULL)?/;
		{ name => $name, type => $type, nullable => $nn ? JSON::PP::false : JSON::PP::true }
	} split /,(?![^(]*\))/, $delta), @extra ];
}

# ------------------------------------------------------------------
# The cluster: a victim, an attacker, two servers, an attacker's database
# ------------------------------------------------------------------
my $plain = [ { name => 'id', type => 'BIGINT', nullable => JSON::PP::false }, { name => 'payload', type => 'STRING' } ];
$emu->create_table("main.default.$_", $plain) for qw(sec victim bench weird);
$emu->create_table('main.default.gen_tx',
	delta_columns('transactions', { name => 'spy', type => 'STRING', nullable => JSON::PP::true },
		{ name => 'g', type => 'STRING', nullable => JSON::PP::true }));
$emu->create_table('main.default.victim_tx', delta_columns('transactions'));
$emu->create_table('main.default.gen_orders', delta_columns('orders'));
$emu->create_table('main.default.mdb_tx', delta_columns('transactions'));

my $emu_opts = sprintf("workspace_url '%s', zerobus_endpoint '%s', warehouse_id 'emulator-wh'",
	$emu->http_url, $emu->grpc_url);
my $creds = q{client_id 'zb-test-client', client_secret 'zb-test-secret'};
su(qq{
	CREATE ROLE mallory LOGIN;
	CREATE ROLE victim LOGIN;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA zerobus TO mallory, victim;
	GRANT USAGE ON FOREIGN SERVER emu TO mallory, victim;
	CREATE USER MAPPING FOR mallory SERVER emu OPTIONS ($creds);
	CREATE USER MAPPING FOR victim SERVER emu OPTIONS ($creds);
	GRANT CREATE ON SCHEMA public TO mallory;
	GRANT CREATE ON DATABASE postgres TO mallory;
	CREATE SCHEMA mallory AUTHORIZATION mallory;
	CREATE SCHEMA victim AUTHORIZATION victim;
	-- a server mallory has no USAGE on, with a mapping for PUBLIC
	CREATE SERVER emu2 FOREIGN DATA WRAPPER zerobus_fdw OPTIONS ($emu_opts);
	CREATE USER MAPPING FOR PUBLIC SERVER emu2 OPTIONS ($creds);
	CREATE DATABASE mdb OWNER mallory;
});
$node->safe_psql('mdb', 'CREATE EXTENSION zerobus_fdw');    # before mallory plants anything
su(qq{
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA zerobus TO mallory;
	CREATE SERVER emu FOREIGN DATA WRAPPER zerobus_fdw OPTIONS ($emu_opts);
	GRANT USAGE ON FOREIGN SERVER emu TO mallory;
	CREATE USER MAPPING FOR mallory SERVER emu OPTIONS ($creds);
	CREATE SCHEMA mallory AUTHORIZATION mallory;
}, 'mdb');
note('functions of the extension: '
	  . su(q{SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY 1) FROM pg_proc p
		 JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'zerobus'}));

# mallory.attempt: log, record, try to escalate.  Its own body pins its path.
my $attempt = q{
	CREATE TABLE mallory.sightings (fn text, cur name, sess name, at timestamptz DEFAULT pg_catalog.clock_timestamp());
	GRANT USAGE ON SCHEMA mallory TO PUBLIC;
	GRANT SELECT, INSERT ON mallory.sightings TO PUBLIC;
	CREATE FUNCTION mallory.attempt(fn text) RETURNS void LANGUAGE plpgsql
	SET search_path = pg_catalog SET lock_timeout = '200ms' AS $f$
	DECLARE
	  su name;
	  k text := 'mallory.seen_' || md5(fn || '/' || current_user || '/' || session_user);
	  first boolean := current_setting(k, true) IS DISTINCT FROM 'y';
	BEGIN
	  -- log each (code, role) once per session
	  IF first THEN
	    RAISE LOG 'zb-shadow fn=% current_user=% session_user=%', fn, current_user, session_user;
	    PERFORM set_config(k, 'y', false);
	    BEGIN
	      INSERT INTO mallory.sightings (fn, cur, sess) VALUES (fn, current_user, session_user);
	    EXCEPTION WHEN OTHERS THEN NULL;
	    END;
	  END IF;
	  IF (SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory') THEN
	    RETURN;    -- already escalated: the test sees it
	  END IF;
	  -- escalate: directly (the first time, and whenever it can work) ...
	  IF first OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
	    BEGIN
	      EXECUTE 'ALTER ROLE mallory SUPERUSER';
	      RAISE LOG 'zb-shadow ESCALATED directly fn=% current_user=% session_user=%', fn, current_user, session_user;
	    EXCEPTION WHEN OTHERS THEN NULL;
	    END;
	  END IF;
	  -- ... or as a superuser the session may become
	  IF first OR (SELECT rolsuper FROM pg_roles WHERE rolname = session_user) THEN
	    FOR su IN SELECT rolname FROM pg_roles WHERE rolsuper LOOP
	      BEGIN
	        EXECUTE format('SET LOCAL ROLE %I', su);
	        EXECUTE 'ALTER ROLE mallory SUPERUSER';
	        RAISE LOG 'zb-shadow ESCALATED via-set-role fn=% current_user=% session_user=%', fn, current_user, session_user;
	      EXCEPTION WHEN OTHERS THEN NULL;
	      END;
	      BEGIN
	        EXECUTE format('SET LOCAL SESSION AUTHORIZATION %I', su);
	        EXECUTE 'ALTER ROLE mallory SUPERUSER';
	        RAISE LOG 'zb-shadow ESCALATED via-session-authorization fn=% current_user=% session_user=%', fn, current_user, session_user;
	      EXCEPTION WHEN OTHERS THEN NULL;
	      END;
	    END LOOP;
	  END IF;
	END $f$;
	CREATE FUNCTION mallory.spy_bool(what text) RETURNS boolean LANGUAGE plpgsql
	SET search_path = pg_catalog AS $f$ BEGIN PERFORM mallory.attempt(what); RETURN true; END $f$;
	CREATE FUNCTION mallory.spy_text(what text) RETURNS text LANGUAGE plpgsql
	SET search_path = pg_catalog AS $f$ BEGIN PERFORM mallory.attempt(what); RETURN what; END $f$;
	CREATE FUNCTION mallory.spy_imm(what text, v text) RETURNS text LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog AS $f$ BEGIN PERFORM mallory.attempt(what); RETURN v; END $f$;
	CREATE FUNCTION mallory.spy_trigger() RETURNS trigger LANGUAGE plpgsql
	SET search_path = pg_catalog AS $f$
	BEGIN
	  PERFORM mallory.attempt('trigger ' || TG_WHEN || ' ' || TG_OP || ' ' || TG_LEVEL || ' on ' || TG_TABLE_NAME);
	  IF TG_LEVEL = 'ROW' THEN
	    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
	    RETURN NEW;
	  END IF;
	  RETURN NULL;
	END $f$;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA mallory TO PUBLIC;
};
ok_as('mallory', $attempt, 'mallory sets up its spy functions');
ok_as('mallory', $attempt, 'and in its database', db => 'mdb');

# A shadow: a function that reports and then does the real work, and
# (for operators) the operator over it, in each of @schemas.
my $shadow_no = 0;

sub shadow_sql
{
	my ($kind, $name, $args, $ret, $body, @schemas) = @_;
	my $fn = 'shadow_' . ++$shadow_no;
	my $label = "$name($args)";
	my $sql = '';
	for my $schema (@schemas)
	{
		$sql .= qq{CREATE FUNCTION $schema.$fn($args) RETURNS $ret LANGUAGE plpgsql
			SET search_path = pg_catalog AS \$f\$ BEGIN PERFORM mallory.attempt('$label'); $body END \$f\$;\n};
		if ($kind eq 'op')
		{
			my ($l, $r) = split /\s*,\s*/, $args;
			$sql .= "CREATE OPERATOR $schema.$name (LEFTARG = $l, RIGHTARG = $r, FUNCTION = $schema.$fn);\n";
		}
		else
		{
			$sql .= "ALTER FUNCTION $schema.$fn($args) RENAME TO $name;\n";
		}
	}
	return $sql;
}

sub op
{
	my ($name, $args, @schemas) = @_;
	my ($l, $r) = split /\s*,\s*/, $args;
	return shadow_sql('op', $name, $args, 'boolean',
		"RETURN \$1::$l OPERATOR(pg_catalog.$name) \$2::$l;", @schemas) if $name ne '*';
	return shadow_sql('op', $name, $args, $l, "RETURN \$1 OPERATOR(pg_catalog.*) \$2::$l;", @schemas);
}

sub fn
{
	my ($name, $args, $ret, $call, @schemas) = @_;
	return shadow_sql('fn', $name, $args, $ret, "RETURN $call;", @schemas);
}

# ------------------------------------------------------------------
# 1. repro 1: an operator in public with no exact match in pg_catalog
# (regclass = regclass), sprung by create_stream in a database that has a
# stream; the same trap sprung by another role's call
# ------------------------------------------------------------------
ok_as('victim', q{
	CREATE TABLE victim.vq (id bigint NOT NULL, payload text);
	SELECT zerobus.create_stream('vs', 'victim.vq', 'emu', 'main.default.victim');
	INSERT INTO victim.vq SELECT i, 'victim ' || i FROM generate_series(1, 100) i;
	SELECT zerobus.flush('vs', '60s');
}, 'victim: a stream that delivers');
check_case('setup');
ok_as('mallory', op('=', 'regclass, regclass', 'public') . op('=', 'regrole, regrole', 'public'),
	'mallory plants regclass = regclass and regrole = regrole in public');
ok_as('mallory', q{
	CREATE TABLE mallory.q1 (id bigint NOT NULL, payload text);
	SELECT zerobus.create_stream('m1', 'mallory.q1', 'emu', 'main.default.sec');
	INSERT INTO mallory.q1 VALUES (1, 'one');
}, 'create_stream as mallory');
ok($emu->wait_for(sub { $emu->count('main.default.sec') >= 1 }, 60), 'repro 1: its row was delivered');
check_case('repro 1: regclass = regclass in public, create_stream');
ok_as('victim', q{
	CREATE TABLE victim.vq2 (id bigint NOT NULL, payload text);
	SELECT zerobus.create_stream('vs2', 'victim.vq2', 'emu', 'main.default.victim', start => false);
}, 'create_stream as victim');
check_case('regclass = regclass in public, sprung by another role');

# ------------------------------------------------------------------
# 2. the session's search_path: every function of the extension, called
# with mallory's schema (holding text, name, oid, tid operators, now(),
# random() ...) before pg_catalog
# ------------------------------------------------------------------
my $pathy = join('',
	op('=', 'text, text', 'mallory'), op('<>', 'text, text', 'mallory'),
	op('=', 'name, name', 'mallory'), op('=', 'oid, oid', 'mallory'),
	op('=', 'regclass, regclass', 'mallory'), op('=', 'regrole, regrole', 'mallory'),
	op('>=', 'tid, tid', 'mallory'), op('<', 'tid, tid', 'mallory'),
	op('*', 'numeric, integer', 'mallory'), op('*', 'double precision, integer', 'mallory'),
	op('<', 'double precision, numeric', 'mallory'),
	fn('now', '', 'timestamptz', 'pg_catalog.now()', 'mallory'),
	fn('clock_timestamp', '', 'timestamptz', 'pg_catalog.clock_timestamp()', 'mallory'),
	fn('random', '', 'double precision', 'pg_catalog.random()', 'mallory'),
	fn('gen_random_uuid', '', 'uuid', 'pg_catalog.gen_random_uuid()', 'mallory'),
	fn('power', 'double precision, integer', 'double precision', 'pg_catalog.power($1, $2::float8)', 'mallory'),
	fn('lpad', 'text, integer, text', 'text', 'pg_catalog.lpad($1, $2, $3)', 'mallory'),
	fn('floor', 'double precision', 'double precision', 'pg_catalog.floor($1)', 'mallory'),
	fn('round', 'numeric, integer', 'numeric', 'pg_catalog.round($1, $2)', 'mallory'),
	fn('to_jsonb', 'anyelement', 'jsonb', 'pg_catalog.to_jsonb($1)', 'mallory'));
ok_as('mallory', $pathy, 'mallory plants operators and functions in its schema');
ok_as('mallory', $pathy, 'and in its database', db => 'mdb');
my $MPATH = 'mallory, public, pg_catalog, pg_temp';

ok_as('mallory', q{
	SELECT zerobus.flush('m1', '60s');
	SELECT zerobus.alter_stream('m1', batch_rows => 100, max_inflight => 1000, ack_timeout => '10 s');
	SELECT zerobus.stop_stream('m1');
	SELECT zerobus.start_stream('m1');
	INSERT INTO mallory.q1 VALUES (2, 'two');
	SELECT zerobus.flush('m1', '60s');
}, 'repro 1 variant: flush, alter, stop, start under mallory, pg_catalog', path => $MPATH);
is($emu->count('main.default.sec'), 2, 'the stream still delivers');
check_case('session search_path: stream functions');

ok_as('mallory', q{
	SELECT zerobus.generator_create_queue('transactions', 'mallory.gq0');
	SELECT zerobus.drop_stream('m1');
	SELECT zerobus.create_stream('m1', 'mallory.q1', 'emu', 'main.default.sec');
	SELECT zerobus.drop_stream('nonexistent', if_exists => true);
}, 'drop_stream and create_stream under the same path', path => $MPATH);
ok(su_poll(q{SELECT count(*) = 1 FROM public.zb_metrics WHERE stream = 'm1'}), 'm1 is registered again');
ok_as('mallory', q{
	SELECT * FROM zerobus.generator_profiles();
	SELECT count(*) >= 0 FROM zerobus.metrics();
	SELECT count(*) >= 0 FROM zerobus.metrics_history();
	SELECT count(*) >= 0 FROM zerobus.generator_status();
	SELECT zerobus.reset_metrics('m1');
	SELECT zerobus.quote_ident('a`b');
	SELECT ok FROM zerobus.check_connection('emu', 'main.default.sec');
	SELECT zerobus.execute_remote('emu', 'SELECT count(*) FROM main.default.sec WHERE id > :p1', '0');
	SELECT records_sent FROM zerobus.bench_transport('emu', 'main.default.bench', 100, 10, 50, 4);
	CREATE FOREIGN TABLE mallory.ft (id bigint, payload text) SERVER emu OPTIONS (table 'main.default.sec');
	SELECT count(*) FROM mallory.ft WHERE payload <> 'x' AND id >= 0;
	INSERT INTO mallory.ft VALUES (1000, 'through the fdw');
	IMPORT FOREIGN SCHEMA "main.default" LIMIT TO (sec) FROM SERVER emu INTO mallory;
	SELECT zerobus.fdw_validator(ARRAY['workspace_url=http://127.0.0.1:1'], 'pg_foreign_server'::regclass);
}, 'every other function under the same path', path => $MPATH);
check_case('session search_path: every function');

# every function of the extension with NULL arguments (functions added
# later, SECURITY DEFINER ones included, are called too)
my @procs = split /\n/, su(q{
	SELECT format('SELECT %s.%I(%s);', n.nspname, p.proname,
	              (SELECT string_agg(CASE WHEN p.provariadic <> 0 AND o = p.pronargs THEN 'VARIADIC ' ELSE '' END
	                                 || 'NULL::' || format_type(t, NULL), ', ' ORDER BY o)
	                 FROM unnest(p.proargtypes) WITH ORDINALITY AS a(t, o)))
	  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
	 WHERE n.nspname = 'zerobus' AND p.prokind = 'f'
	   AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype, 'fdw_handler'::regtype)});
for my $call (@procs)
{
	as('mallory', $call, path => $MPATH);
}
cmp_ok(scalar @procs, '>=', 20, 'every function called with NULL arguments (' . scalar(@procs) . ')');
check_case('session search_path: NULL arguments');

# ------------------------------------------------------------------
# 3. repro 2 and the role's search_path: the worker paths of mallory's
# streams; a row the service refuses goes to the dead letters with
# to_jsonb(<its row type>) shadowed
# ------------------------------------------------------------------
ok_as('mallory', q{ALTER ROLE mallory SET search_path = mallory, public, pg_catalog, pg_temp},
	'mallory puts its schema first on its role\'s search_path');
ok_as('mallory', q{
	CREATE TABLE mallory.q3 (id bigint NOT NULL, payload text);
} . fn('to_jsonb', 'mallory.q3', 'jsonb', 'pg_catalog.to_jsonb($1)', 'mallory', 'public') . q{
	SELECT zerobus.create_stream('m3', 'mallory.q3', 'emu', 'main.default.sec');
}, 'mallory: a queue whose row type has a to_jsonb of its own');
$emu->faults({ reject_record => { contains => 'POISON' } });
ok_as('mallory', q{INSERT INTO mallory.q3 VALUES (30, 'fine'), (31, 'POISON row'), (32, 'fine too')},
	'rows, one the service refuses');
# (exactly which rows a refused batch leaves in the dead letters is 012_faults' concern)
ok(su_poll(q{SELECT count(*) > 0 FROM zerobus.dead_letters WHERE stream = 'm3' AND record ->> 'id' = '31'}),
	'repro 2: the refused row reached the dead letters')
  or diag('dead letters: ' . su(q{SELECT string_agg(stream || ' ' || record::text || ' ' || error, E'\n') FROM zerobus.dead_letters})
	  . "\nemulator rows 30-32: " . JSON::PP->new->encode($emu->sql(q{SELECT id, payload FROM "main.default.sec" WHERE id BETWEEN 30 AND 32})->{rows})
	  . "\nm3: " . su(q{SELECT state || ' ' || coalesce(last_error, '') || ' acked ' || rows_acked || ' dead ' || rows_dead_lettered FROM public.zb_metrics WHERE stream = 'm3'}));
ok(su_poll(q{SELECT count(*) = 0 FROM mallory.q3}), 'and the others left the queue');
is($emu->sql(q{SELECT count(*) FROM "main.default.sec" WHERE id IN (30, 32)})->{rows}[0][0], 2,
	'the others were delivered');
$emu->clear_faults;
# restart the other stream's worker so it starts under the role's path too
ok_as('mallory', q{SELECT zerobus.stop_stream('m1')});
ok(su_poll(q{SELECT workers_running = 0 FROM public.zb_metrics WHERE stream = 'm1'}), 'm1 stopped');
ok_as('mallory', q{SELECT zerobus.start_stream('m1'); INSERT INTO mallory.q1 VALUES (3, 'three');});
ok(su_poll(q{SELECT count(*) = 0 FROM mallory.q1}), 'a worker started under the role\'s path delivers');
check_case('repro 2: dead letter, role search_path');

# ------------------------------------------------------------------
# 4. repro 3: the database's search_path (mallory owns mdb): the scan
# worker, the stream and generator workers of mdb
# ------------------------------------------------------------------
ok_as('mallory', q{ALTER DATABASE mdb SET search_path = mallory, pg_catalog},
	'mallory sets its database\'s search_path');
ok_as('mallory', q{
	SELECT zerobus.generator_create_queue('transactions', 'mallory.mq');
	SELECT zerobus.create_stream('md', 'mallory.mq', 'emu', 'main.default.mdb_tx');
	SELECT zerobus.generator_start('md', 'transactions', throttle => 1);
}, 'a stream and a generator in mdb', db => 'mdb');
ok(su_poll(q{SELECT count(*) = 1 FROM public.zb_metrics WHERE database = 'mdb' AND stream = 'md' AND workers_running > 0}),
	'repro 3: the scan worker registered mdb\'s stream and its worker runs');
ok($emu->wait_for(sub { $emu->count('main.default.mdb_tx') >= 20 }, 60), 'mdb\'s generated rows are delivered')
  or diag('md: ' . su(q{SELECT state || ' ' || coalesce(last_error, '') || ' generated ' || rows_generated || ' acked ' || rows_acked FROM public.zb_metrics WHERE stream = 'md'})
	  . '; emulator rows ' . $emu->count('main.default.mdb_tx'));
check_case('repro 3: database search_path, scan/stream/generator workers');

# ------------------------------------------------------------------
# 5. the wake-up and rescan trigger functions attached to mallory's own
# tables (refused with 42501: docs/DESIGN.md, "Checks"), here and in mdb
# ------------------------------------------------------------------
for my $db ('postgres', 'mdb')
{
	ok_as('mallory', q{
		CREATE TABLE mallory.t_changed (x int);
		CREATE TRIGGER t AFTER INSERT ON mallory.t_changed FOR EACH STATEMENT EXECUTE FUNCTION zerobus.streams_changed();
		CREATE TABLE mallory.t_wakeup (x int);
		CREATE TRIGGER t AFTER INSERT ON mallory.t_wakeup FOR EACH STATEMENT EXECUTE FUNCTION zerobus.queue_wakeup();
	}, "$db: mallory attaches the trigger functions to its tables", db => $db);
	refused_as('mallory', 'INSERT INTO mallory.t_changed VALUES (1)', '42501',
		"$db: streams_changed() on another table", db => $db);
	refused_as('mallory', 'INSERT INTO mallory.t_wakeup VALUES (1)', '42501',
		"$db: queue_wakeup() on a table that is no queue", db => $db);
}
# whatever a rescan would do, let it happen: the next stream change is committed
ok_as('mallory', q{SELECT zerobus.generator_throttle('md', 2)}, 'a rescan of mdb', db => 'mdb');
ok(su_poll(q{SELECT count(*) = 1 FROM zerobus.generators WHERE stream = 'md' AND throttle = 2}, 30, 'mdb'),
	'the change is in mdb\'s catalog');
check_case('trigger functions on the attacker\'s tables');

# ------------------------------------------------------------------
# 6. user code on a queue (triggers, default, CHECK, a domain's CHECK, a
# generated column, an index expression, row-level security, a foreign key
# cascading into a table with triggers) under the generator's INSERT and
# the worker's DELETE: it runs, and only as mallory
# ------------------------------------------------------------------
ok_as('mallory', q{
	SELECT zerobus.generator_create_queue('transactions', 'mallory.gq');
	ALTER TABLE mallory.gq ADD COLUMN spy text DEFAULT mallory.spy_text('default');
	ALTER TABLE mallory.gq ADD CONSTRAINT spy CHECK (mallory.spy_bool('check'));
	CREATE DOMAIN mallory.spy_d AS text CHECK (mallory.spy_bool('domain check'));
	ALTER TABLE mallory.gq ALTER COLUMN status TYPE mallory.spy_d;
	ALTER TABLE mallory.gq ADD COLUMN g text GENERATED ALWAYS AS (mallory.spy_imm('generated column', txn_id)) STORED;
	CREATE INDEX ON mallory.gq ((mallory.spy_imm('index expression', txn_id)));
	ALTER TABLE mallory.gq ADD CONSTRAINT gq_txn UNIQUE (txn_id);
	CREATE TABLE mallory.gq_child (txn_id text REFERENCES mallory.gq (txn_id) ON DELETE CASCADE);
	CREATE FUNCTION mallory.copy_child() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog
	  AS $f$ BEGIN INSERT INTO mallory.gq_child VALUES (NEW.txn_id); RETURN NULL; END $f$;
	CREATE TRIGGER c_ins AFTER INSERT ON mallory.gq FOR EACH ROW EXECUTE FUNCTION mallory.copy_child();
	CREATE TRIGGER b_del BEFORE DELETE ON mallory.gq_child FOR EACH ROW EXECUTE FUNCTION mallory.spy_trigger();
	CREATE TRIGGER b_ins BEFORE INSERT ON mallory.gq FOR EACH ROW EXECUTE FUNCTION mallory.spy_trigger();
	CREATE TRIGGER a_ins AFTER INSERT ON mallory.gq FOR EACH ROW EXECUTE FUNCTION mallory.spy_trigger();
	CREATE TRIGGER s_ins AFTER INSERT ON mallory.gq FOR EACH STATEMENT EXECUTE FUNCTION mallory.spy_trigger();
	CREATE TRIGGER b_del BEFORE DELETE ON mallory.gq FOR EACH ROW EXECUTE FUNCTION mallory.spy_trigger();
	CREATE TRIGGER a_del AFTER DELETE ON mallory.gq FOR EACH ROW EXECUTE FUNCTION mallory.spy_trigger();
	CREATE TRIGGER s_del BEFORE DELETE ON mallory.gq FOR EACH STATEMENT EXECUTE FUNCTION mallory.spy_trigger();
	ALTER TABLE mallory.gq ENABLE ROW LEVEL SECURITY;
	ALTER TABLE mallory.gq FORCE ROW LEVEL SECURITY;
	CREATE POLICY spy ON mallory.gq USING (mallory.spy_bool('policy using'))
	  WITH CHECK (mallory.spy_bool('policy check'));
	SELECT zerobus.create_stream('mg', 'mallory.gq', 'emu', 'main.default.gen_tx', workers => 2);
	SELECT zerobus.generator_start('mg', 'transactions', throttle => 1);
}, 'mallory: a generator queue full of its code');
ok($emu->wait_for(sub { $emu->count('main.default.gen_tx') >= 20 }, 60), 'generated rows are delivered');
my @queue_code = ('default', 'check', 'domain check', 'generated column', 'index expression',
	'policy check', 'policy using',
	'trigger BEFORE INSERT ROW on gq', 'trigger AFTER INSERT ROW on gq', 'trigger AFTER INSERT STATEMENT on gq',
	'trigger BEFORE DELETE ROW on gq', 'trigger AFTER DELETE ROW on gq', 'trigger BEFORE DELETE STATEMENT on gq',
	'trigger BEFORE DELETE ROW on gq_child');
my $kinds = join(', ', map { "'$_'" } @queue_code);
su_poll(qq{SELECT count(DISTINCT fn) = @{[ scalar @queue_code ]} FROM mallory.sightings WHERE fn IN ($kinds)}, 30);
for my $what (@queue_code)
{
	# mallory's own sessions never write to this queue: these ran in the workers
	ok(sighted($what), "queue code ran in a worker: $what");
}
ok_as('mallory', q{SELECT zerobus.generator_stop('mg')});
ok(su_poll(q{SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'zerobus_fdw generator mg'}),
	'the generator stopped');
ok_as('mallory', q{SELECT zerobus.flush('mg', '60s')}, 'the queue drained');
is($emu->sql(q{SELECT count(*) FROM "main.default.gen_tx" WHERE spy = 'default' AND g = txn_id})->{rows}[0][0],
	$emu->count('main.default.gen_tx'), 'with the default\'s and the generated column\'s values');

# a rule on the queue: the worker's DELETE brings it along
ok_as('mallory', q{
	CREATE TABLE mallory.rq (id bigint NOT NULL, payload text);
	CREATE RULE spy_del AS ON DELETE TO mallory.rq DO ALSO SELECT mallory.spy_bool('rule on delete');
	SELECT zerobus.create_stream('mr', 'mallory.rq', 'emu', 'main.default.sec');
	INSERT INTO mallory.rq VALUES (40, 'ruled');
}, 'mallory: a queue with a rule on DELETE');
ok(su_poll(q{SELECT (SELECT count(*) = 0 FROM mallory.rq)
	OR (SELECT state = 'error' FROM public.zb_metrics WHERE stream = 'mr')}, 60),
	'the rule\'s queue: delivered, or a state (the contract is silent; either is safe)');
note('the rule\'s queue: ' . su(q{SELECT state || ' ' || coalesce(last_error, '') FROM public.zb_metrics WHERE stream = 'mr'})
	  . '; rows left ' . su(q{SELECT count(*) FROM mallory.rq}));
check_case('user code on the queue, generator and stream workers');

# ------------------------------------------------------------------
# 6b. the orders lifecycle (issue 11) in a table full of mallory's code:
# the generator's INSERT, UPDATE and DELETE run it, and only as mallory; a
# table mallory's stream may not change is refused
# ------------------------------------------------------------------
ok_as('mallory', q{
	SELECT zerobus.generator_create_queue('orders', 'mallory.lq');
	SELECT zerobus.generator_create_table('orders', 'mallory.lt');
	ALTER TABLE mallory.lt ADD COLUMN spy text DEFAULT mallory.spy_text('lifecycle default');
	ALTER TABLE mallory.lt ADD CONSTRAINT spy CHECK (mallory.spy_bool('lifecycle check'));
	CREATE TRIGGER b_ins BEFORE INSERT ON mallory.lt FOR EACH ROW EXECUTE FUNCTION mallory.spy_trigger();
	CREATE TRIGGER b_upd BEFORE UPDATE ON mallory.lt FOR EACH ROW EXECUTE FUNCTION mallory.spy_trigger();
	CREATE TRIGGER a_upd AFTER UPDATE ON mallory.lt FOR EACH ROW EXECUTE FUNCTION mallory.spy_trigger();
	CREATE TRIGGER s_upd AFTER UPDATE ON mallory.lt FOR EACH STATEMENT EXECUTE FUNCTION mallory.spy_trigger();
	CREATE TRIGGER b_del BEFORE DELETE ON mallory.lt FOR EACH ROW EXECUTE FUNCTION mallory.spy_trigger();
	CREATE TRIGGER s_del AFTER DELETE ON mallory.lt FOR EACH STATEMENT EXECUTE FUNCTION mallory.spy_trigger();
	ALTER TABLE mallory.lt ENABLE ROW LEVEL SECURITY;
	ALTER TABLE mallory.lt FORCE ROW LEVEL SECURITY;
	CREATE POLICY spy ON mallory.lt USING (mallory.spy_bool('lifecycle policy using'))
	  WITH CHECK (mallory.spy_bool('lifecycle policy check'));
	SELECT zerobus.create_stream('ml', 'mallory.lq', 'emu', 'main.default.gen_orders');
	SELECT zerobus.generator_start('ml', 'orders', rate => 100, lifecycle_table => 'mallory.lt');
}, 'mallory: a lifecycle table full of its code');
my @lifecycle_code = ('lifecycle default', 'lifecycle check', 'lifecycle policy using', 'lifecycle policy check',
	'trigger BEFORE INSERT ROW on lt', 'trigger BEFORE UPDATE ROW on lt', 'trigger AFTER UPDATE ROW on lt',
	'trigger AFTER UPDATE STATEMENT on lt', 'trigger BEFORE DELETE ROW on lt', 'trigger AFTER DELETE STATEMENT on lt');
$kinds = join(', ', map { "'$_'" } @lifecycle_code);
su_poll(qq{SELECT count(DISTINCT fn) = @{[ scalar @lifecycle_code ]} FROM mallory.sightings WHERE fn IN ($kinds)}, 90)
  or diag('generator: ' . su(q{SELECT coalesce(last_error, '') || ' generated ' || rows_generated FROM zerobus.generator_status() WHERE stream = 'ml'}));
for my $what (@lifecycle_code)
{
	# mallory's own sessions never change this table: these ran in the generator
	ok(sighted($what), "lifecycle table code ran in the generator: $what");
}
is(su(q{SELECT count(*) FROM mallory.lq}), '0', 'the lifecycle generator wrote nothing to its queue');
ok_as('victim', q{SELECT zerobus.generator_create_table('orders', 'victim.vt')}, 'victim: a table of orders');
refused_as('mallory', q{SELECT zerobus.generator_start('ml', 'orders', lifecycle_table => 'victim.vt')}, '42501',
	'mallory: a lifecycle in the victim\'s table');
ok_as('mallory', q{SELECT zerobus.generator_stop('ml')});
ok(su_poll(q{SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'zerobus_fdw generator ml'}),
	'the lifecycle generator stopped');
is(su(q{SELECT count(*) FROM victim.vt}), '0', 'the victim\'s table was never changed');
check_case('user code on a lifecycle table, generator worker');

# ------------------------------------------------------------------
# 7. traps in public that other roles' workers could resolve: arithmetic
# operators with no exact match in pg_catalog (the generator's
# double * integer, double < numeric; the catalog's numeric * integer)
# ------------------------------------------------------------------
ok_as('mallory', op('*', 'numeric, integer', 'public') . op('*', 'double precision, integer', 'public')
	  . op('<', 'double precision, numeric', 'public')
	  . fn('power', 'double precision, integer', 'double precision', 'pg_catalog.power($1, $2::float8)', 'public'),
	'mallory plants arithmetic in public');
ok_as('victim', q{
	SELECT zerobus.generator_create_queue('transactions', 'victim.vgq');
	SELECT zerobus.create_stream('vgen', 'victim.vgq', 'emu', 'main.default.victim_tx');
	SELECT zerobus.generator_start('vgen', 'transactions', throttle => 1);
}, 'victim: a generator with the default search_path');
ok($emu->wait_for(sub { $emu->count('main.default.victim_tx') >= 20 }, 60), 'victim\'s generated rows are delivered');
ok_as('victim', q{SELECT zerobus.generator_stop('vgen'); SELECT zerobus.alter_stream('vs', batch_rows => 50);
	INSERT INTO victim.vq VALUES (101, 'after the trap'); SELECT zerobus.flush('vs', '60s');},
	'victim alters and flushes its stream');
check_case('public arithmetic traps, another role\'s workers and calls');

# ------------------------------------------------------------------
# 8. other roles' streams (reset_metrics; ownership checks: docs/DESIGN.md,
# "Who owns a stream", "Checks")
# ------------------------------------------------------------------
my $victim_acked = su(q{SELECT rows_acked FROM public.zb_metrics WHERE stream = 'vs'});
cmp_ok($victim_acked, '>', 0, 'the victim\'s stream has counters');
refused_as('mallory', q{SELECT zerobus.reset_metrics('vs')}, '42501', 'reset_metrics of the victim\'s stream');
ok_as('mallory', q{SELECT zerobus.reset_metrics()}, 'reset_metrics() of mallory\'s streams');
cmp_ok(su(q{SELECT rows_acked FROM public.zb_metrics WHERE stream = 'vs'}), '>=', $victim_acked,
	'the victim\'s counters are untouched');
for my $call (q{zerobus.alter_stream('vs', batch_rows => 1)}, q{zerobus.stop_stream('vs')},
	q{zerobus.start_stream('vs2')}, q{zerobus.drop_stream('vs')}, q{zerobus.drop_stream('vs', if_exists => true)},
	q{zerobus.flush('vs', '1s')}, q{zerobus.generator_start('vgen', 'transactions')},
	q{zerobus.generator_throttle('vgen', 50)}, q{zerobus.generator_stop('vgen')},
	q{zerobus.generator_start('vgen', 'orders', lifecycle_table => 'mallory.lt')},
	q{zerobus.create_stream('mv', 'victim.vq2', 'emu', 'main.default.sec')},
	q{zerobus.create_stream('mc', 'pg_catalog.pg_authid', 'emu', 'main.default.sec')})
{
	refused_as('mallory', "SELECT $call", '42501', "mallory: $call");
}
# the extension's own tables as queues: not mallory's (42501), or not a table at all
for my $rel (split /\n/, su(q{SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'zerobus' AND c.relkind IN ('r', 'v', 'p') ORDER BY 1}))
{
	refused_as('mallory', "SELECT zerobus.create_stream('mz', 'zerobus.$rel', 'emu', 'main.default.sec')",
		qr/^(42501|42809)$/, "mallory: zerobus.$rel as a queue");
}
is(su(q{SELECT string_agg(name || ':' || enabled || ':' || batch_rows, ',' ORDER BY name)
	FROM zerobus.streams WHERE name IN ('vs', 'vs2')}), 'vs:true:50,vs2:false:5000',
	'the victim\'s streams are as the victim left them');
check_case('other roles\' streams');

# ------------------------------------------------------------------
# 9. a server mallory has no USAGE on (a PUBLIC user mapping exists):
# bench_transport, check_connection, execute_remote (docs/DESIGN.md, "Checks"),
# streams, foreign tables
# ------------------------------------------------------------------
my $bench_before = $emu->count('main.default.bench');
for my $call (q{SELECT * FROM zerobus.bench_transport('emu2', 'main.default.bench', 100, 10, 50, 4)},
	q{SELECT * FROM zerobus.check_connection('emu2', 'main.default.bench')},
	q{SELECT zerobus.execute_remote('emu2', 'SELECT 1')},
	q{SELECT zerobus.create_stream('m9', 'mallory.q1', 'emu2', 'main.default.sec')},
	q{SELECT zerobus.alter_stream('m3', server => 'emu2')},
	q{CREATE FOREIGN TABLE mallory.ft2 (id bigint) SERVER emu2 OPTIONS (table 'main.default.sec')},
	q{IMPORT FOREIGN SCHEMA "main.default" FROM SERVER emu2 INTO mallory})
{
	refused_as('mallory', $call, '42501', "no USAGE on emu2: $call");
}
is($emu->count('main.default.bench'), $bench_before, 'nothing was written through emu2');
check_case('no USAGE on the server');

# ------------------------------------------------------------------
# 9b. sessions (src/session.c) are cached per backend, by server and user
# mapping: one that a superuser cached in a backend serves mallory nothing
# there, and losing USAGE or the user mapping takes effect at once in a
# backend that cached the role's session
# ------------------------------------------------------------------
sub in_one_backend
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n" . $PIN . $sql);
	return ($out, $err // '');
}
su(qq{
	CREATE ROLE carol LOGIN;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA zerobus TO carol;
	GRANT USAGE ON FOREIGN SERVER emu TO carol;
	CREATE USER MAPPING FOR carol SERVER emu OPTIONS ($creds);
});
my ($out9, $err9) = in_one_backend(q{
	SELECT ok FROM zerobus.check_connection('emu2', 'main.default.bench');
	SET ROLE mallory;
	SELECT ok FROM zerobus.check_connection('emu2', 'main.default.bench');
});
is($out9, 't', 'the superuser used emu2 (PUBLIC mapping) in this backend');
like($err9, qr/ERROR:  42501: permission denied for foreign server emu2/,
	'then mallory in the same backend is refused all the same');
($out9, $err9) = in_one_backend(q{
	SET ROLE carol;
	SELECT ok FROM zerobus.check_connection('emu', 'main.default.victim');
	RESET ROLE;
	DROP USER MAPPING FOR carol SERVER emu;
	SET ROLE carol;
	SELECT ok FROM zerobus.check_connection('emu', 'main.default.victim');
});
is($out9, 't', 'carol connected through her user mapping');
like($err9, qr/ERROR:  42704: no user mapping for user "carol" on server "emu"/,
	'after DROP USER MAPPING, her cached session is not used');
su(qq{CREATE USER MAPPING FOR carol SERVER emu OPTIONS ($creds)});
($out9, $err9) = in_one_backend(q{
	SET ROLE carol;
	SELECT ok FROM zerobus.check_connection('emu', 'main.default.victim');
	RESET ROLE;
	REVOKE USAGE ON FOREIGN SERVER emu FROM carol;
	SET ROLE carol;
	SELECT ok FROM zerobus.check_connection('emu', 'main.default.victim');
});
is($out9, 't', 'carol connected again');
like($err9, qr/ERROR:  42501: permission denied for foreign server emu/,
	'after REVOKE USAGE, she is refused in the backend that cached her session');
su(q{DROP USER MAPPING FOR carol SERVER emu; REVOKE ALL ON ALL FUNCTIONS IN SCHEMA zerobus FROM carol;
	DROP ROLE carol});
check_case('sessions cached in a backend');

# ------------------------------------------------------------------
# 10. the catalog tables: no writes but through the functions; dead
# letters of others invisible
# ------------------------------------------------------------------
$emu->faults({ reject_record => { contains => 'VICTIMPOISON' } });
ok_as('victim', q{INSERT INTO victim.vq VALUES (200, 'VICTIMPOISON')});
ok(su_poll(q{SELECT count(*) = 1 FROM zerobus.dead_letters WHERE stream = 'vs'}), 'the victim has a dead letter');
$emu->clear_faults;
is(ok_as('mallory', q{SELECT count(*) FROM zerobus.dead_letters WHERE stream = 'vs'}), '0',
	'mallory does not see it');
# every table and view of the extension: no INSERT, UPDATE, DELETE or
# TRUNCATE by mallory changes anything but its own dead letters
my @rels = split /\n/, su(q{SELECT c.relname || ' ' || a.attname FROM pg_class c
	JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = 1
	WHERE n.nspname = 'zerobus' AND c.relkind IN ('r', 'v', 'p') ORDER BY 1});
my $snapshot = sub {
	return su(join(' UNION ALL ', map {
		my ($rel) = split / /;
		my $where = $rel eq 'dead_letters' ? q{WHERE x.owner::text <> 'mallory'} : '';
		"SELECT '$rel', md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM zerobus.$rel x $where"
	} @rels) . ' ORDER BY 1');
};
my $before = $snapshot->();
for (@rels)
{
	my ($rel, $col) = split / /;
	for my $stmt ("INSERT INTO zerobus.$rel DEFAULT VALUES", "UPDATE zerobus.$rel SET $col = $col",
		"DELETE FROM zerobus.$rel", "TRUNCATE zerobus.$rel")
	{
		next if $rel eq 'dead_letters' && $stmt =~ /^DELETE/;    # its own, by its policy
		refused_as('mallory', $stmt, qr/^(42501|55000|42809|0A000)$/, $stmt);
	}
}
ok_as('mallory', q{DELETE FROM zerobus.dead_letters}, 'mallory deletes the dead letters it may');
is($snapshot->(), $before, 'the extension\'s tables are as they were (but mallory\'s own dead letters)');
is(su(q{SELECT count(*) FROM zerobus.dead_letters WHERE stream = 'vs'}), '1', 'the victim\'s dead letter is still there');
check_case('catalog tables');

# ------------------------------------------------------------------
# 11. names built into SQL: a queue whose schema and table names carry
# quotes and statements, through create_stream, the worker's DELETE, the
# generator's INSERT and generator_create_queue
# ------------------------------------------------------------------
my $evil = q{"x""; ALTER ROLE mallory SUPERUSER; --"};
ok_as('mallory', qq{
	CREATE SCHEMA $evil;
	CREATE TABLE $evil.$evil (id bigint NOT NULL, payload text);
	SELECT zerobus.create_stream('mw', '$evil.$evil', 'emu', 'main.default.weird');
	INSERT INTO $evil.$evil VALUES (1, 'weird');
	SELECT zerobus.generator_create_queue('transactions', '$evil."q''); ALTER ROLE mallory SUPERUSER; --"');
	SELECT zerobus.flush('mw', '60s');
}, 'a stream whose queue\'s names carry SQL');
is($emu->count('main.default.weird'), 1, 'its row was delivered');
ok_as('mallory', qq{
	SELECT zerobus.generator_create_table('orders', '$evil."t''); ALTER ROLE mallory SUPERUSER; --"');
	SELECT zerobus.generator_start('mw', 'orders', rate => 100,
	                               lifecycle_table => '$evil."t''); ALTER ROLE mallory SUPERUSER; --"');
}, 'a lifecycle table whose names carry SQL');
ok(su_poll(qq{SELECT count(*) FILTER (WHERE status <> 'placed') > 0 FROM $evil."t'); ALTER ROLE mallory SUPERUSER; --"}, 60),
	'its orders are placed and moved on')
  or diag('generator: ' . su(q{SELECT coalesce(last_error, '') FROM zerobus.generator_status() WHERE stream = 'mw'}));
ok_as('mallory', q{SELECT zerobus.generator_stop('mw')});
refused_as('mallory', q{SELECT zerobus.create_stream('x; ALTER ROLE mallory SUPERUSER', 'mallory.q1', 'emu', 'main.default.sec')},
	'42602', 'a stream name carrying SQL');
check_case('names carrying SQL');

# ------------------------------------------------------------------
# over the whole run
# ------------------------------------------------------------------
ok_as('mallory', q{SELECT zerobus.drop_stream(name) FROM zerobus.streams WHERE owner = 'mallory'::regrole},
	'mallory drops its streams');
ok_as('mallory', q{SELECT zerobus.drop_stream('md')}, 'and mdb\'s', db => 'mdb');
check_case('drops');
is(su(q{SELECT count(*) FROM pg_roles WHERE rolsuper AND rolname IN ('mallory', 'victim')}), '0',
	'in the end nobody was made superuser');
ok(!%all_foreign, 'over the whole run, attacker code never ran as another role')
  or diag(join("\n", sort keys %all_foreign));
note('attacker code that ran as another role, over the run: ' . join('; ', sort keys %all_foreign)) if %all_foreign;

$node->stop;
done_testing();
