# Upgrading from 1.0 to 1.1. A database created at 1.0 keeps working with
# the 1.1 library (the 1.0 SQL functions name C symbols the new library
# still has); ALTER EXTENSION stripe_idem UPDATE keeps every row, leaves
# every row valid under 1.1's rules, and ends with exactly the objects of a
# fresh 1.1 install, compared member by member from the catalogs; and the
# API works afterwards, in the same session and in new ones.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StripeIdemNode;
use Test::More;

my $node = StripeIdemNode::started('upgrade');

sub sql { my ($db, $s) = @_; return $node->safe_psql($db, $s); }

$node->safe_psql('postgres', q{
	CREATE ROLE app LOGIN;
	CREATE DATABASE fresh;
	CREATE DATABASE upgraded;
});

# Both in a non-default schema, with the grants an application gets.
for my $db ('fresh', 'upgraded')
{
	my $version = $db eq 'upgraded' ? "VERSION '1.0'" : '';
	sql($db, qq{
		CREATE SCHEMA payments;
		CREATE EXTENSION stripe_idem SCHEMA payments $version;
		GRANT USAGE ON SCHEMA payments TO app;
		GRANT SELECT, INSERT, UPDATE, DELETE ON payments.stripe_idempotency_keys TO app;
	});
}
is(sql('upgraded', q{SELECT extversion FROM pg_extension WHERE extname = 'stripe_idem'}), '1.0',
	'created at 1.0');
is(sql('fresh', q{SELECT extversion FROM pg_extension WHERE extname = 'stripe_idem'}), '1.1',
	'a plain CREATE EXTENSION installs 1.1');

# The 1.0 API, with the 1.1 library loaded: rows in every state.
sql('upgraded', q{
	SET search_path = payments;
	SELECT count(*) FROM generate_series(1, 300) i,
		LATERAL begin_stripe_idempotency('up:test', 'op-' || i, jsonb_build_object('amount', i), lease => '1 hour');
	SELECT count(*) FROM stripe_idempotency_keys k,
		LATERAL record_stripe_idempotency(k.operation_type, k.operation_id, k.stripe_idempotency_key,
			'cs_' || k.operation_id, jsonb_build_object('id', 'cs_' || k.operation_id, 'note', 'caf' || chr(233)))
		WHERE k.operation_id::text ~ '^op-[0-9]{1,2}$';
	SELECT count(*) FROM generate_series(1, 50) i,
		LATERAL record_stripe_idempotency('up:direct', 'op-' || i, 'up:direct:key-' || i, NULL, jsonb_build_object('n', i));
	SELECT count(*) FROM generate_series(1, 20) i,
		LATERAL begin_stripe_idempotency('up:expiring', 'op-' || i, ttl => '1 second', lease => '1 second');
});
is(sql('upgraded', q{SELECT status, count(*) FROM payments.stripe_idempotency_keys GROUP BY 1 ORDER BY 1}),
	"completed|149\nin_progress|221", 'at 1.0: 370 rows written through the 1.0 API by the 1.1 library');

# Each answer of the 1.0 API at 1.0, through the new library.
my $key17 = sql('upgraded', q{SELECT stripe_idempotency_key FROM payments.stripe_idempotency_keys
	WHERE operation_type = 'up:test' AND operation_id = 'op-17'});
my $key200 = sql('upgraded', q{SELECT stripe_idempotency_key FROM payments.stripe_idempotency_keys
	WHERE operation_type = 'up:test' AND operation_id = 'op-200'});
my $api = sub {
	my ($db, $tag) = @_;
	is(sql($db, q{SELECT state || ' ' || stripe_resource_id FROM payments.begin_stripe_idempotency('up:test', 'op-17', '{"amount": 17}')}),
		'completed cs_op-17', "$tag: begin replays a completed operation");
	is(sql($db, q{SELECT state FROM payments.begin_stripe_idempotency('up:test', 'op-17', '{"amount": 18}')}),
		'mismatch', "$tag: other request_params are a mismatch");
	is(sql($db, q{SELECT state || ' ' || (retry_after > '50 minutes') FROM payments.begin_stripe_idempotency('up:test', 'op-250')}),
		'in_progress true', "$tag: a live lease is in_progress");
	is(sql($db, q{SELECT found || ' ' || status || ' ' || stripe_resource_id FROM payments.check_stripe_idempotency('up:test', 'op-17')}),
		'true completed cs_op-17', "$tag: check finds the completed operation");
	is(sql($db, q{SELECT found FROM payments.check_stripe_idempotency('up:test', 'nope')}),
		'f', "$tag: check of an unknown operation");
	like(sql($db, q{SELECT payments.new_stripe_idempotency_key('up:test', 'x')}),
		qr/^up:test:x:[0-9a-f-]{36}$/, "$tag: new_stripe_idempotency_key");
};
$api->('upgraded', 'at 1.0');
is(sql('upgraded', qq{SELECT payments.release_stripe_idempotency('up:test', 'op-200', '$key200');
	SELECT state || ' ' || (stripe_idempotency_key = '$key200') || ' ' || attempts
	FROM payments.begin_stripe_idempotency('up:test', 'op-200')}),
	"t\nacquired true 2", 'at 1.0: released and taken over with the same key');
my $new = sql('upgraded', q{SELECT state || ' ' || stripe_idempotency_key FROM payments.begin_stripe_idempotency('up:test', 'brand-new')});
like($new, qr/^acquired up:test:brand-new:/, 'at 1.0: a new operation is acquired');
(my $newkey = $new) =~ s/^acquired //;
is(sql('upgraded', qq{SELECT recorded FROM payments.record_stripe_idempotency('up:test', 'brand-new', '$newkey', 'cs_new')}),
	't', 'at 1.0: and recorded');

# The 1.0 constraints are in force with the new library.
my ($rc, $out, $err) = $node->psql('upgraded', q{INSERT INTO payments.stripe_idempotency_keys
	(operation_type, operation_id, stripe_idempotency_key, status, expires_at)
	VALUES ('bad type', 'x', 'k', 'in_progress', now() + interval '1 day')});
like($err, qr/violates check constraint "operation_type_format"/, 'at 1.0: the ten 1.0 CHECK constraints still hold');

# An operator's grant on a 1.0 function survives the update.
sql('upgraded', 'GRANT EXECUTE ON FUNCTION payments.stripe_idem_wake_sweeper() TO app');

# A session that used the API at 1.0 stays open across the update.
my $session = $node->background_psql('upgraded');
$session->query_safe(q{SELECT state FROM payments.begin_stripe_idempotency('up:test', 'op-1')});

sleep 2;	# the 20 leases and keys of 'up:expiring' run out

my $content = q{SELECT count(*) || ' ' || md5(string_agg((k.*)::text, '|' ORDER BY operation_type, operation_id))
	FROM payments.stripe_idempotency_keys k};
my $before = sql('upgraded', $content);

($rc, $out, $err) = $node->psql('upgraded', 'ALTER EXTENSION stripe_idem UPDATE');
is($rc, 0, 'ALTER EXTENSION stripe_idem UPDATE succeeds') or diag($err);
is(sql('upgraded', q{SELECT extversion FROM pg_extension WHERE extname = 'stripe_idem'}), '1.1',
	'the extension is at 1.1');
is(sql('upgraded', $content), $before, 'every row kept, byte for byte');
is(sql('upgraded', q{SELECT count(*) FROM payments.stripe_idempotency_keys k
	WHERE NOT payments.stripe_idem_row_is_valid(k)}),
	'0', 'every row obeys the 1.1 rules');
is(sql('upgraded', q{SELECT string_agg(conname || ' ' || convalidated, ',' ORDER BY conname) FROM pg_constraint
	WHERE conrelid = 'payments.stripe_idempotency_keys'::regclass AND contype = 'c'}),
	'stripe_idempotency_keys_rules true', 'one CHECK constraint, validated against the existing rows');

is(sql('upgraded', q{SELECT has_function_privilege('app', 'payments.stripe_idem_wake_sweeper()', 'EXECUTE')
	|| ' ' || has_function_privilege('app', 'payments.stripe_idem_wake_sweeper(boolean)', 'EXECUTE')}),
	'true false', 'the grant on stripe_idem_wake_sweeper() is kept; the new stripe_idem_wake_sweeper(boolean) is not granted');
sql('upgraded', 'REVOKE EXECUTE ON FUNCTION payments.stripe_idem_wake_sweeper() FROM app');

# Everything an install consists of, one line per fact, read from the
# catalogs for every member of the extension: pg_dump does not show them.
my $shape = q{
	WITH ext AS (SELECT oid, extnamespace FROM pg_extension WHERE extname = 'stripe_idem'),
	members AS (
		SELECT d.classid, d.objid FROM pg_depend d, ext
		WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'),
	tbl AS (SELECT 'payments.stripe_idempotency_keys'::regclass AS oid)
	SELECT string_agg(line, E'\n' ORDER BY line) FROM (
		-- the members themselves
		SELECT 'member ' || pg_describe_object(classid, objid, 0) AS line FROM members
		UNION ALL
		-- functions: signature, result, attributes, body (C symbol), grants
		SELECT 'function ' || p.oid::regprocedure || ' -> ' || pg_get_function_result(p.oid)
			|| ' args ' || pg_get_function_arguments(p.oid)
			|| ' ' || p.provolatile::text || p.proparallel::text || p.proisstrict::text
			|| p.prosecdef::text || p.proleakproof::text || ' cost ' || p.procost || ' rows ' || p.prorows
			|| ' acl ' || COALESCE(p.proacl::text, 'default') || E'\n' || pg_get_functiondef(p.oid)
		FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
		UNION ALL
		-- the table's columns, with types, collations, NOT NULL, defaults
		SELECT 'column ' || a.attnum || ' ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
			|| ' collation ' || COALESCE((SELECT collname FROM pg_collation WHERE oid = a.attcollation), '-')
			|| ' notnull ' || a.attnotnull || ' default ' || COALESCE(pg_get_expr(d.adbin, d.adrelid), '-')
			|| ' acl ' || COALESCE(a.attacl::text, 'default')
		FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum, tbl
		WHERE a.attrelid = tbl.oid AND a.attnum > 0 AND NOT a.attisdropped
		UNION ALL
		SELECT 'constraint ' || c.conname || ' ' || c.contype::text || ' ' || pg_get_constraintdef(c.oid)
			|| ' validated ' || c.convalidated || ' deferrable ' || c.condeferrable
		FROM pg_constraint c, tbl WHERE c.conrelid = tbl.oid
		UNION ALL
		SELECT 'index ' || pg_get_indexdef(i.indexrelid) || ' unique ' || i.indisunique || ' primary ' || i.indisprimary
		FROM pg_index i, tbl WHERE i.indrelid = tbl.oid
		UNION ALL
		-- relations: kind, options, grants, view definitions
		SELECT 'relation ' || c.oid::regclass || ' ' || c.relkind::text || ' persistence ' || c.relpersistence::text
			|| ' options ' || COALESCE(c.reloptions::text, '-') || ' acl ' || COALESCE(c.relacl::text, 'default')
			|| COALESCE(E'\n' || pg_get_viewdef(c.oid), '')
		FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
		UNION ALL
		-- comments on every member (and on its columns)
		SELECT 'comment ' || pg_describe_object(d.classoid, d.objoid, d.objsubid) || ': ' || d.description
		FROM pg_description d JOIN members m ON m.classid = d.classoid AND m.objid = d.objoid
		UNION ALL
		SELECT 'triggers ' || count(*) FROM pg_trigger t, tbl WHERE t.tgrelid = tbl.oid AND NOT t.tgisinternal
		UNION ALL
		SELECT 'config dump ' || array_to_string(e.extconfig::regclass[], ',') || ' ' || array_to_string(e.extcondition, ',')
			|| ' relocatable ' || e.extrelocatable || ' schema ' || e.extnamespace::regnamespace
		FROM pg_extension e WHERE e.extname = 'stripe_idem') lines};
my $fresh_shape = sql('fresh', $shape);
my $upgraded_shape = sql('upgraded', $shape);
is($upgraded_shape, $fresh_shape, 'the updated extension has exactly the objects of a fresh 1.1 install');
like($fresh_shape, qr/^constraint stripe_idempotency_keys_rules c CHECK/m, '(the comparison sees the constraints)');
like($fresh_shape, qr/AS '\$libdir\/stripe_idem', \$function\$begin_stripe_idempotency\$function\$/,
	'(and the functions\' C symbols)');
like($fresh_shape, qr/^comment function payments\.stripe_idem_row_is_valid/m, '(and the comments)');
like($fresh_shape, qr/^column 1 operation_type text collation C /m, '(and the collations)');
like($fresh_shape, qr/stripe_idem', \$function\$stripe_idem_wake_sweeper_1_1\$function\$/, '(and the 1.1 function with its own C symbol)');

# After the update: the API, in the session that was open across it and in
# new ones, and the new rules.
is($session->query_safe(q{SELECT state || ' ' || stripe_resource_id FROM payments.begin_stripe_idempotency('up:test', 'op-17', '{"amount": 17}')}),
	'completed cs_op-17', 'after the update, the session open across it replays');
$session->quit;
$api->('upgraded', 'after the update');
is(sql('upgraded', q{SELECT state FROM payments.begin_stripe_idempotency('up:expiring', 'op-3')}),
	'acquired', 'after the update: an expired operation is acquired again');
is(sql('upgraded', q{SELECT payments.cleanup_expired_idempotency_keys()}), '19',
	'after the update: cleanup removes the other 19 expired keys');
($rc, $out, $err) = $node->psql('upgraded', q{INSERT INTO payments.stripe_idempotency_keys
	(operation_type, operation_id, stripe_idempotency_key, status, expires_at)
	VALUES ('bad type', 'x', 'k', 'in_progress', now() + interval '1 day')});
like($err, qr/violates check constraint "stripe_idempotency_keys_rules"/, 'after the update: a bad row is refused by the 1.1 rules');
my $applied = sql('upgraded', q{SET ROLE app;
	SELECT state FROM payments.begin_stripe_idempotency('up:app', 'a1');
	SELECT found FROM payments.check_stripe_idempotency('up:app', 'a1')});
is($applied, "acquired\nt", 'after the update: the application role can use the API with its grants');

$node->stop;
done_testing();
