# Privileges (1.2).
#   - The functions that touch the table run with the owner's rights
#     (SECURITY DEFINER), and nothing of the extension is executable by
#     PUBLIC. An application role needs USAGE on the schema and EXECUTE on
#     the API functions, and no privilege on the table: it can use the whole
#     API, but it cannot write a row by hand, so it cannot forge a completed
#     answer that every retry would replay.
#   - A role without EXECUTE gets permission denied (42501) from every
#     function of the extension, and learns nothing: the error is the same
#     whether the operation exists or not, and names no row.
#   - cleanup is an operator's call, granted on its own; stats and the
#     sweeper view are pg_monitor's; wake and distribute superusers'.
#   - A role that may CREATE in the extension's schema can shadow an API
#     function with an overload that wins for untyped arguments: nobody but
#     the owner may, by default, and the test shows the attack when an
#     administrator grants it (README, "Privileges").
#   - Only superusers can change the sweeper's settings and the size
#     limits; the per-call defaults are per session by design.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StripeIdemNode;
use Test::More;

my $node = StripeIdemNode::started('privileges');

$node->safe_psql('postgres', q{
	CREATE SCHEMA payments;
	CREATE EXTENSION stripe_idem SCHEMA payments;
	CREATE ROLE nobody LOGIN;                 -- nothing at all
	CREATE ROLE outsider LOGIN;               -- may see the schema, no EXECUTE
	GRANT USAGE ON SCHEMA payments TO outsider;
	CREATE ROLE reader LOGIN;                 -- EXECUTE on check only (a dashboard)
	GRANT USAGE ON SCHEMA payments TO reader;
	GRANT EXECUTE ON FUNCTION payments.check_stripe_idempotency(text, text) TO reader;
	CREATE ROLE app LOGIN;                    -- the documented grants
	GRANT USAGE ON SCHEMA payments TO app;
	GRANT EXECUTE ON FUNCTION
		payments.begin_stripe_idempotency(text, text, jsonb, interval, interval, interval),
		payments.check_stripe_idempotency(text, text),
		payments.record_stripe_idempotency(text, text, text, text, jsonb, interval),
		payments.release_stripe_idempotency(text, text, text, integer),
		payments.restart_stripe_idempotency(text, text, text, interval, interval, interval),
		payments.new_stripe_idempotency_key(text, text)
		TO app;
	CREATE ROLE ops LOGIN;                    -- may run cleanup by hand
	GRANT USAGE ON SCHEMA payments TO ops;
	GRANT EXECUTE ON FUNCTION payments.cleanup_expired_idempotency_keys(integer) TO ops;
	CREATE ROLE watcher LOGIN IN ROLE pg_monitor;
	GRANT USAGE ON SCHEMA payments TO watcher;
	CREATE DATABASE appdb OWNER app;
});

# A secret: an operation with a key, a result, and an expired row.
$node->safe_psql('postgres', q{
	SELECT 1 FROM payments.begin_stripe_idempotency('pay:secret', 'cart-42');
	SELECT 1 FROM payments.record_stripe_idempotency('pay:secret', 'cart-42',
		(SELECT stripe_idempotency_key FROM payments.stripe_idempotency_keys WHERE operation_id = 'cart-42'),
		'cs_live_SECRET', '{"card": "4242"}');
	INSERT INTO payments.stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key,
		status, stripe_resource_id, expires_at)
	VALUES ('pay:secret', 'old-cart', 'pay:secret:old-cart:KEY', 'completed', 'cs_live_OLD', now() - interval '1 day');
});
my $secret_key = $node->safe_psql('postgres',
	q{SELECT stripe_idempotency_key FROM payments.stripe_idempotency_keys WHERE operation_id = 'cart-42'});

my $fingerprint_sql = q{SELECT md5(string_agg((k.ctid, k.xmin, k.*)::text, '|' ORDER BY operation_id))
	FROM payments.stripe_idempotency_keys k};
my $fingerprint = $node->safe_psql('postgres', $fingerprint_sql);

# Run one statement as a role; return (sqlstate or 'ok', full error text).
sub as_role
{
	my ($role, $sql, $db) = @_;
	my ($out, $err) = ('', '');
	$node->psql($db // 'postgres', "\\set VERBOSITY verbose\n$sql;",
		stdout => \$out, stderr => \$err, extra_params => [ '-U', $role ]);
	return ('ok', $out) if $err eq '';
	my ($code) = $err =~ /ERROR:\s+([0-9A-Z]{5}):/;
	return ($code // 'unknown', $err);
}

# Every function of the extension, each called the way an attacker would
# (once for an existing operation, once for one that does not exist).
my %calls = (
	'begin_stripe_idempotency' => q{SELECT * FROM payments.begin_stripe_idempotency('pay:secret', '%ID%')},
	'restart_stripe_idempotency' => q{SELECT * FROM payments.restart_stripe_idempotency('pay:secret', '%ID%', 'guess')},
	'new_stripe_idempotency_key' => q{SELECT payments.new_stripe_idempotency_key('pay:secret', '%ID%')},
	'check_stripe_idempotency' => q{SELECT * FROM payments.check_stripe_idempotency('pay:secret', '%ID%')},
	'record_stripe_idempotency' => q{SELECT * FROM payments.record_stripe_idempotency('pay:secret', '%ID%', 'guess', 'cs_x')},
	'release_stripe_idempotency' => q{SELECT payments.release_stripe_idempotency('pay:secret', '%ID%', 'guess')},
	'cleanup_expired_idempotency_keys' => q{SELECT payments.cleanup_expired_idempotency_keys()},
	'stripe_idem_stats' => q{SELECT * FROM payments.stripe_idem_stats()},
	'stripe_idem_stats_reset' => q{SELECT payments.stripe_idem_stats_reset()},
	'stripe_idem_sweeper' => q{SELECT * FROM payments.stripe_idem_sweeper()},
	'stripe_idem_wake_sweeper' => q{SELECT payments.stripe_idem_wake_sweeper()},
	'stripe_idem_distribute' => q{SELECT payments.stripe_idem_distribute()},
	'stripe_idem_drop_guard' => q{SELECT payments.stripe_idem_drop_guard()},
	'stripe_idem_import' => q{SELECT payments.stripe_idem_import('payments.stripe_idempotency_keys')},
	'view stripe_idem_stats' => q{SELECT * FROM payments.stripe_idem_stats},
	'view stripe_idem_sweeper' => q{SELECT * FROM payments.stripe_idem_sweeper},
	'view stripe_idem_overview' => q{SELECT * FROM payments.stripe_idem_overview},
	'table stripe_idempotency_keys' => q{SELECT * FROM payments.stripe_idempotency_keys},
);

# The list above covers every member of the extension but the second
# stripe_idem_wake_sweeper (checked on its own below), the table's CHECK
# function (it judges only the row value it is handed; not executable by
# PUBLIC either, checked below) and the event trigger stripe_idem_drop_guard
# (it runs its function, whatever the grants, only for DROP EXTENSION), so
# a function added later without a
# privilege test fails here.
# (The implicit row types of the table and views, and their array types,
# which 17 and 18 record as members too, are left out: they come and go with
# their relations and are nothing an application calls.)
is($node->safe_psql('postgres', q{
	SELECT string_agg(m, ',' ORDER BY m) FROM (
		SELECT regexp_replace(pg_describe_object(classid, objid, 0),
			'^(function|view|table|event trigger) (payments\.)?([a-z_]+).*$', '\1 \3') AS m
		FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
		AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'stripe_idem')
		AND NOT EXISTS (SELECT FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem
		                WHERE classid = 'pg_type'::regclass AND t.oid = objid
		                  AND (t.typrelid <> 0 OR e.typrelid <> 0))) members}),
	join(',', sort map { /^(view|table|event trigger) / ? $_ : "function $_" } keys(%calls), 'stripe_idem_row_is_valid',
		'stripe_idem_wake_sweeper', 'event trigger stripe_idem_drop_guard'),
	'the test knows every function, view and table of the extension');

for my $role ('nobody', 'outsider')
{
	for my $what (sort keys %calls)
	{
		my @answers;
		for my $id ('cart-42', 'no-such-cart')
		{
			(my $sql = $calls{$what}) =~ s/%ID%/$id/g;
			my ($code, $text) = as_role($role, $sql);
			# the caller's own input may be echoed, with a pointer into it
			$text =~ s/no-such-cart|cart-42/ID/g;
			$text =~ s/^(LINE \d+:.*|\s*\^\s*)\n//mg;
			push @answers, [ $code, $text ];
		}
		is($answers[0][0], '42501', "$role: $what: permission denied");
		is($answers[0][1], $answers[1][1], "$role: $what: the same error whether the operation exists or not");
		unlike($answers[0][1], qr/SECRET|4242|\Q$secret_key\E|old-cart|cs_live/, "$role: $what: the error reveals no row");
	}
	my ($wcode) = as_role($role, q{SELECT payments.stripe_idem_wake_sweeper(true)});
	is($wcode, '42501', "$role: stripe_idem_wake_sweeper(true): permission denied");
}
is($node->safe_psql('postgres', q{SELECT has_function_privilege('public',
	'payments.stripe_idem_row_is_valid(payments.stripe_idempotency_keys)', 'EXECUTE')}),
	'f', 'the CHECK function is not executable by PUBLIC either');
is($node->safe_psql('postgres', $fingerprint_sql), $fingerprint, 'the table is unchanged after all of that');

# A session that ran the calls as a superuser, then SET ROLE to a role
# without EXECUTE: refused, cached plans or not.
{
	my ($out, $err) = ('', '');
	$node->psql('postgres', q{
		\set VERBOSITY verbose
		SELECT count(*) FROM payments.check_stripe_idempotency('pay:secret', 'cart-42');
		SELECT count(*) FROM payments.begin_stripe_idempotency('pay:secret', 'cart-42');
		SELECT count(*) FROM payments.release_stripe_idempotency('pay:secret', 'cart-42', 'x');
		SET ROLE outsider;
		SELECT count(*) FROM payments.check_stripe_idempotency('pay:secret', 'cart-42');
		SELECT count(*) FROM payments.begin_stripe_idempotency('pay:secret', 'cart-42');
		SELECT count(*) FROM payments.release_stripe_idempotency('pay:secret', 'cart-42', 'x');
	}, stdout => \$out, stderr => \$err, on_error_stop => 0);
	is($out, "1\n1\n1", 'a superuser session prepares and runs the plans');
	is(scalar(() = $err =~ /ERROR:  42501: permission denied for function/g), 3,
		'after SET ROLE to a role without EXECUTE the calls are refused');
}

# EXECUTE on check alone: check works, the rest is refused and leaves nothing.
my ($code, $out) = as_role('reader', q{SELECT status FROM payments.check_stripe_idempotency('pay:secret', 'cart-42')});
is("$code $out", "ok completed", 'reader (EXECUTE on check only): check works');
($code) = as_role('reader', q{SELECT * FROM payments.stripe_idempotency_keys});
is($code, '42501', 'reader: the table itself is not readable');
($code) = as_role('reader', q{SELECT * FROM payments.begin_stripe_idempotency('pay:secret', 'new-cart')});
is($code, '42501', 'reader: begin is refused');
($code) = as_role('reader', q{SELECT payments.cleanup_expired_idempotency_keys()});
is($code, '42501', 'reader: cleanup is refused');
is($node->safe_psql('postgres', $fingerprint_sql), $fingerprint, 'reader: the table is unchanged');

# The documented grants: the whole API.
my %ok;
for my $step (
	[ 'begin', q{SELECT state FROM payments.begin_stripe_idempotency('pay:app', 'c1', '{"a": 1}')}, "acquired" ],
	[ 'begin again', q{SELECT state FROM payments.begin_stripe_idempotency('pay:app', 'c1', '{"a": 1}')}, "in_progress" ],
	[ 'release', q{SELECT payments.release_stripe_idempotency('pay:app', 'c1', stripe_idempotency_key)
		FROM payments.check_stripe_idempotency('pay:app', 'c1')}, "t" ],
	[ 'takeover', q{SELECT state || ' ' || attempts FROM payments.begin_stripe_idempotency('pay:app', 'c1', '{"a": 1}')}, "acquired 2" ],
	[ 'record', q{SELECT recorded FROM payments.check_stripe_idempotency('pay:app', 'c1') c,
		payments.record_stripe_idempotency('pay:app', 'c1', c.stripe_idempotency_key, 'cs_app')}, "t" ],
	[ 'replay', q{SELECT state || ' ' || stripe_resource_id FROM payments.begin_stripe_idempotency('pay:app', 'c1', '{"a": 1}')}, "completed cs_app" ],
	[ 'check', q{SELECT found FROM payments.check_stripe_idempotency('pay:app', 'c1')}, "t" ],
	[ 'check-then-record', q{SELECT recorded FROM payments.record_stripe_idempotency('pay:app', 'c2', 'app-key-c2', NULL, '{"id": "cs_2"}')}, "t" ],
	[ 'new key', q{SELECT payments.new_stripe_idempotency_key('pay:app', 'c3') LIKE 'pay:app:c3:%'}, "t" ],
	[ 'session defaults', q{SET stripe_idem.default_ttl = '1h'; SET stripe_idem.default_lease = '30s';
		SELECT state FROM payments.begin_stripe_idempotency('pay:app', 'c4');
		SELECT expires_at - created_at FROM payments.check_stripe_idempotency('pay:app', 'c4')},
		"acquired\n01:00:00" ])
{
	my ($name, $sql, $want) = @$step;
	my ($c, $o) = as_role('app', $sql);
	is("$c $o", "ok $want", "app (documented grants): $name");
}
# The forgery of 1.1: with table privileges a role could mark an operation
# completed with an answer of its choosing, replayed to every retry. The
# application role has none.
{
	my $before = $node->safe_psql('postgres', $fingerprint_sql);
	for my $try (
		[ 'forge', q{UPDATE payments.stripe_idempotency_keys SET status = 'completed',
			stripe_resource_id = 'cs_evil', response = '{"url": "https://evil.example"}'
			WHERE operation_id = 'cart-42'} ],
		[ 'insert', q{INSERT INTO payments.stripe_idempotency_keys (operation_type, operation_id,
			stripe_idempotency_key, status, stripe_resource_id, expires_at)
			VALUES ('pay:app', 'forged', 'k', 'completed', 'cs_evil', now() + interval '1 day')} ],
		[ 'delete', q{DELETE FROM payments.stripe_idempotency_keys} ],
		[ 'read', q{SELECT * FROM payments.stripe_idempotency_keys} ],
		[ 'cleanup', q{SELECT payments.cleanup_expired_idempotency_keys()} ],
		[ 'stats', q{SELECT * FROM payments.stripe_idem_stats} ],
		[ 'wake', q{SELECT payments.stripe_idem_wake_sweeper()} ])
	{
		my ($name, $sql) = @$try;
		my ($c) = as_role('app', $sql);
		is($c, '42501', "app (documented grants): $name is refused");
	}
	is($node->safe_psql('postgres', $fingerprint_sql), $before, 'app: the forgeries left the table as it was');
}

# Operators and monitoring get their own grants.
($code, $out) = as_role('ops', q{SELECT payments.cleanup_expired_idempotency_keys()});
is("$code $out", 'ok 1', 'ops (EXECUTE on cleanup): cleanup runs');
is($node->safe_psql('postgres', q{SELECT count(*) FROM payments.stripe_idempotency_keys WHERE operation_id = 'old-cart'}),
	'0', 'ops: cleanup deleted the expired row');
($code, $out) = as_role('watcher', q{SELECT acquired > 0 FROM payments.stripe_idem_stats});
is("$code $out", 'ok t', 'pg_monitor: reads the counters');
($code) = as_role('watcher', q{SELECT payments.stripe_idem_stats_reset()});
is($code, '42501', 'pg_monitor: but cannot reset them');

# Every role with EXECUTE shares one keyspace: a second application role
# sees (and replays) the first one's operations. Tenants are told apart by
# the operation_type or id they choose, or by one extension per database.
$node->safe_psql('postgres', q{CREATE ROLE app2 LOGIN IN ROLE app});
($code, $out) = as_role('app2', q{SELECT state || ' ' || stripe_resource_id FROM payments.begin_stripe_idempotency('pay:app', 'c1', '{"a": 1}')});
is("$code $out", 'ok completed cs_app', 'a second role with the grants replays the first one\'s operation');

# The overload attack. A role that may CREATE in the extension's schema can
# add payments.begin_stripe_idempotency(text, text, text): for the
# README's call with three untyped literals it is an exact match and wins
# over the real (text, text, jsonb, ...). By default nobody but the owner
# may create there.
$node->safe_psql('postgres', q{CREATE ROLE mallory LOGIN; GRANT USAGE ON SCHEMA payments TO mallory});
my $shadow = q{CREATE FUNCTION payments.begin_stripe_idempotency(text, text, text)
	RETURNS TABLE (state text, stripe_idempotency_key text, stripe_resource_id text, response jsonb,
	               retry_after interval, attempts integer)
	LANGUAGE sql AS $$ SELECT 'completed', 'k', 'cs_evil', '{"url": "https://evil.example"}'::jsonb,
	                          NULL::interval, 1 $$};
($code) = as_role('mallory', $shadow);
is($code, '42501', 'mallory cannot create a function in the extension\'s schema');
my $readme_call = q{SELECT state, stripe_resource_id FROM payments.begin_stripe_idempotency('checkout:create', 'chk_shadow', '{"price": "price_123", "qty": 2}')};
($code, $out) = as_role('app', $readme_call);
is("$code $out", 'ok acquired|', 'the README\'s three-argument call reaches the extension');
$node->safe_psql('postgres', q{GRANT CREATE ON SCHEMA payments TO mallory});
($code) = as_role('mallory', $shadow);
is($code, 'ok', 'once an administrator grants CREATE on the schema, mallory adds the overload');
($code, $out) = as_role('app', $readme_call);
is("$code $out", 'ok completed|cs_evil', 'and the same call now reaches mallory\'s function: never grant CREATE there');
$node->safe_psql('postgres', q{DROP FUNCTION payments.begin_stripe_idempotency(text, text, text);
	REVOKE CREATE ON SCHEMA payments FROM mallory});

# Settings. The sweeper's are the operator's: superuser only, and only in
# the server configuration (SIGHUP or postmaster), so no session, role or
# database can set them, and ordinary roles cannot even read them. The
# retention of unresolved operations is read from the configuration too,
# and the size limits are superuser-only: an application role can neither
# keep cleanup from honouring the retention nor raise its own limits.
for my $try (
	[ q{SET stripe_idem.unresolved_retention = '1d'}, '55P02' ],
	[ q{SET stripe_idem.max_request_params_size = '1GB'}, '42501' ],
	[ q{SET stripe_idem.max_response_size = '1GB'}, '42501' ],
	[ q{SET stripe_idem.key_window = '2d'}, 'ok' ],
	[ q{SET stripe_idem.allow_begin_in_transaction = on}, 'ok' ])
{
	my ($sql, $want) = @$try;
	my ($c) = as_role('app', $sql);
	is($c, $want, "app: $sql");
}
for my $guc ('databases', 'sweep_interval', 'sweep_batch_size', 'sweep_role', 'log_sweeps')
{
	my $value = { databases => "'appdb'", sweep_interval => '1', sweep_batch_size => '1',
		sweep_role => "'app'", log_sweeps => "'off'" }->{$guc};
	my @refused;
	for my $try (
		[ "SET stripe_idem.$guc = $value", '55P02' ],
		[ "SELECT set_config('stripe_idem.$guc', ${value}::text, false)", '55P02' ],
		[ "ALTER SYSTEM SET stripe_idem.$guc = $value", '42501' ],
		[ "ALTER ROLE app SET stripe_idem.$guc = $value", '55P02' ],
		[ "SHOW stripe_idem.$guc", '42501' ])
	{
		my ($sql, $want) = @$try;
		my ($c) = as_role('app', $sql, 'appdb');
		push @refused, "$sql: $c" unless $c eq $want;
	}
	my ($c) = as_role('app', "ALTER DATABASE appdb SET stripe_idem.$guc = $value", 'appdb');
	push @refused, "ALTER DATABASE (as its owner): $c" unless $c eq '55P02' || $c eq '42501';
	is_deeply(\@refused, [], "stripe_idem.$guc: a non-superuser can neither change nor read it");
}
$node->safe_psql('postgres', q{ALTER SYSTEM SET stripe_idem.sweep_batch_size = 1234; SELECT pg_reload_conf();});
ok($node->poll_query_until('postgres', q{SELECT current_setting('stripe_idem.sweep_batch_size') = '1234'}),
	'a superuser changes a sweeper setting with ALTER SYSTEM and a reload');
$node->safe_psql('postgres', q{ALTER SYSTEM RESET stripe_idem.sweep_batch_size; SELECT pg_reload_conf();});

# SECURITY DEFINER exactly where a caller acts on the table through the
# extension, with no per-call SET (every name in their statements is
# qualified: test/t/204_search_path.pl runs them under a hostile path).
is($node->safe_psql('postgres', q{
	SELECT string_agg(p.proname, ',' ORDER BY p.proname) FILTER (WHERE p.prosecdef)
	       || ' / configs: ' || count(*) FILTER (WHERE p.proconfig IS NOT NULL AND p.prosecdef)
	FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
	WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
	AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'stripe_idem')}),
	'begin_stripe_idempotency,check_stripe_idempotency,cleanup_expired_idempotency_keys,'
	. 'record_stripe_idempotency,release_stripe_idempotency,restart_stripe_idempotency / configs: 0',
	'the definer functions are the API calls and cleanup, none with a per-call SET');

$node->stop;
done_testing();
