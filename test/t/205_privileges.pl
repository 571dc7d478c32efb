# Privileges.
#   - A role without grants gets permission denied (42501) from every
#     function of the extension that reads or writes data, and learns
#     nothing: the error is the same whether the operation exists or not,
#     and names no row. The one exception is new_stripe_idempotency_key,
#     which touches no table: it only formats a fresh random key.
#   - A role with the documented grants (USAGE on the extension's schema;
#     SELECT, INSERT, UPDATE, DELETE on the table) can use the whole API; a
#     role with SELECT alone can check.
#   - Only superusers can change the sweeper's settings; the two per-call
#     defaults (default_ttl, default_lease) are per-session by design.
#   - No function of the extension is SECURITY DEFINER.
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
	CREATE ROLE outsider LOGIN;               -- may see the schema, no table grants
	GRANT USAGE ON SCHEMA payments TO outsider;
	CREATE ROLE reader LOGIN;                 -- SELECT only
	GRANT USAGE ON SCHEMA payments TO reader;
	GRANT SELECT ON payments.stripe_idempotency_keys TO reader;
	CREATE ROLE app LOGIN;                    -- the documented grants
	GRANT USAGE ON SCHEMA payments TO app;
	GRANT SELECT, INSERT, UPDATE, DELETE ON payments.stripe_idempotency_keys TO app;
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
	'check_stripe_idempotency' => q{SELECT * FROM payments.check_stripe_idempotency('pay:secret', '%ID%')},
	'record_stripe_idempotency' => q{SELECT * FROM payments.record_stripe_idempotency('pay:secret', '%ID%', 'guess', 'cs_x')},
	'release_stripe_idempotency' => q{SELECT payments.release_stripe_idempotency('pay:secret', '%ID%', 'guess')},
	'cleanup_expired_idempotency_keys' => q{SELECT payments.cleanup_expired_idempotency_keys()},
	'stripe_idem_stats' => q{SELECT * FROM payments.stripe_idem_stats()},
	'stripe_idem_stats_reset' => q{SELECT payments.stripe_idem_stats_reset()},
	'stripe_idem_sweeper' => q{SELECT * FROM payments.stripe_idem_sweeper()},
	'stripe_idem_wake_sweeper' => q{SELECT payments.stripe_idem_wake_sweeper()},
	'stripe_idem_distribute' => q{SELECT payments.stripe_idem_distribute()},
	'view stripe_idem_stats' => q{SELECT * FROM payments.stripe_idem_stats},
	'view stripe_idem_sweeper' => q{SELECT * FROM payments.stripe_idem_sweeper},
	'table stripe_idempotency_keys' => q{SELECT * FROM payments.stripe_idempotency_keys},
);

# The list above covers every member of the extension but the second
# stripe_idem_wake_sweeper (checked on its own below) and the two pure
# functions (new_stripe_idempotency_key formats a random key; the table's
# CHECK function judges only the row value it is handed), so a function
# added later without a privilege test fails here.
# (The implicit row types of the table and views, and their array types,
# which 17 and 18 record as members too, are left out: they come and go with
# their relations and are nothing an application calls.)
is($node->safe_psql('postgres', q{
	SELECT string_agg(m, ',' ORDER BY m) FROM (
		SELECT regexp_replace(pg_describe_object(classid, objid, 0),
			'^(function|view|table) (payments\.)?([a-z_]+).*$', '\1 \3') AS m
		FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
		AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'stripe_idem')
		AND NOT EXISTS (SELECT FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem
		                WHERE classid = 'pg_type'::regclass AND t.oid = objid
		                  AND (t.typrelid <> 0 OR e.typrelid <> 0))) members}),
	join(',', sort map { /^(view|table) / ? $_ : "function $_" } keys(%calls), 'new_stripe_idempotency_key', 'stripe_idem_row_is_valid',
		'stripe_idem_wake_sweeper'),
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
	my ($code, $key) = as_role($role, q{SELECT payments.new_stripe_idempotency_key('pay:secret', 'cart-42')});
	if ($role eq 'nobody')
	{
		is($code, '42501', 'nobody: new_stripe_idempotency_key: permission denied for the schema');
	}
	else
	{
		like($key, qr/^pay:secret:cart-42:[0-9a-f-]{36}$/, 'outsider: new_stripe_idempotency_key only formats a fresh key');
		isnt($key, $secret_key, 'outsider: ... not the stored one');
	}
}
is($node->safe_psql('postgres', $fingerprint_sql), $fingerprint, 'the table is unchanged after all of that');

# Plans prepared and cached by a privileged role are checked again for
# whoever runs them: the same session, after SET ROLE, is refused.
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
	is(scalar(() = $err =~ /ERROR:  42501: permission denied for table stripe_idempotency_keys/g), 3,
		'after SET ROLE to a role without grants the cached plans are refused');
}

# SELECT alone: check works, writes are refused and leave nothing.
my ($code, $out) = as_role('reader', q{SELECT status FROM payments.check_stripe_idempotency('pay:secret', 'cart-42')});
is("$code $out", "ok completed", 'reader (SELECT only): check works');
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
	[ 'release', q{SELECT payments.release_stripe_idempotency('pay:app', 'c1',
		(SELECT stripe_idempotency_key FROM payments.stripe_idempotency_keys WHERE operation_id = 'c1'))}, "t" ],
	[ 'takeover', q{SELECT state || ' ' || attempts FROM payments.begin_stripe_idempotency('pay:app', 'c1', '{"a": 1}')}, "acquired 2" ],
	[ 'record', q{SELECT recorded FROM payments.record_stripe_idempotency('pay:app', 'c1',
		(SELECT stripe_idempotency_key FROM payments.stripe_idempotency_keys WHERE operation_id = 'c1'), 'cs_app')}, "t" ],
	[ 'replay', q{SELECT state || ' ' || stripe_resource_id FROM payments.begin_stripe_idempotency('pay:app', 'c1', '{"a": 1}')}, "completed cs_app" ],
	[ 'check', q{SELECT found FROM payments.check_stripe_idempotency('pay:app', 'c1')}, "t" ],
	[ 'check-then-record', q{SELECT recorded FROM payments.record_stripe_idempotency('pay:app', 'c2', 'app-key-c2', NULL, '{"id": "cs_2"}')}, "t" ],
	[ 'cleanup', q{SELECT payments.cleanup_expired_idempotency_keys()}, "1" ],
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
is($node->safe_psql('postgres', q{SELECT count(*) FROM payments.stripe_idempotency_keys WHERE operation_id = 'old-cart'}),
	'0', 'app: cleanup deleted the expired row');

# Settings. The sweeper's are the operator's: superuser only, and only in
# the server configuration (SIGHUP or postmaster), so no session, role or
# database can set them, and ordinary roles cannot even read them.
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

# No SECURITY DEFINER anywhere in the extension (a definer function would
# need SET search_path = pg_catalog, pg_temp and a written reason).
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE p.prosecdef) || ' of ' || count(*)
	FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
	WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
	AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'stripe_idem')}),
	'0 of ' . (grep({ !/^(view|table) / } keys %calls) + 3), 'no function of the extension is SECURITY DEFINER');

$node->stop;
done_testing();
