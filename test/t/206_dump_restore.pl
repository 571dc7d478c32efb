# Data lifecycle: pg_dump / pg_restore of a database with the extension and
# 10,000 keys restores every row (the table is registered with
# pg_extension_config_dump), the grants, and a working API; the same for a
# plain SQL dump. Then the upgrade path: from the oldest shipped version,
# ALTER EXTENSION ... UPDATE must keep the data and end with exactly the
# objects a fresh install of the default version has.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StripeIdemNode;
use Test::More;

my $node = StripeIdemNode::started('dump');

sub sql { my ($db, $s) = @_; return $node->safe_psql($db, $s); }

$node->safe_psql('postgres', q{
	CREATE ROLE app LOGIN;
	CREATE DATABASE src;
});

# 10,000 keys in every state: 6,000 completed through begin/record, 2,000
# in_progress with a live lease, 1,500 recorded straight away
# (check-then-record), 500 completed and already expired.
sql('src', q{
	CREATE SCHEMA payments;
	CREATE EXTENSION stripe_idem SCHEMA payments;
	GRANT USAGE ON SCHEMA payments TO app;
	GRANT SELECT, INSERT, UPDATE, DELETE ON payments.stripe_idempotency_keys TO app;

	SELECT count(*) FROM generate_series(1, 8000) i,
		LATERAL payments.begin_stripe_idempotency('dump:test', 'op-' || i,
			jsonb_build_object('amount', i), lease => '1 hour');
	SELECT count(*) FROM payments.stripe_idempotency_keys k,
		LATERAL payments.record_stripe_idempotency(k.operation_type, k.operation_id,
			k.stripe_idempotency_key, 'cs_' || k.operation_id,
			jsonb_build_object('id', 'cs_' || k.operation_id, 'note', 'caf' || chr(233) || ' ' || chr(26085)))
		WHERE k.operation_id::text ~ '^op-([1-5]?[0-9]{1,3}|6000)$';
	SELECT count(*) FROM generate_series(1, 1500) i,
		LATERAL payments.record_stripe_idempotency('dump:direct', 'op-' || i, 'dump:direct:key-' || i,
			NULL, jsonb_build_object('n', i));
	SELECT count(*) FROM generate_series(1, 500) i,
		LATERAL payments.record_stripe_idempotency('dump:expiring', 'op-' || i, 'dump:expiring:key-' || i,
			'cs_e', NULL, ttl => '1 second');
});
is(sql('src', q{SELECT status, count(*) FROM payments.stripe_idempotency_keys GROUP BY 1 ORDER BY 1}),
	"completed|8000\nin_progress|2000", 'source: 10,000 keys');
# the 500 expire (waited for on the clock)
$node->poll_query_until('src', q{
	SELECT bool_and(expires_at <= statement_timestamp()) FROM payments.stripe_idempotency_keys
	WHERE operation_type = 'dump:expiring'}) or die 'the keys did not expire';

my $content = q{SELECT count(*) || ' ' || md5(string_agg(k::text, '|' ORDER BY operation_type, operation_id))
	FROM payments.stripe_idempotency_keys k};
my $src_content = sql('src', $content);

my $tmp = PostgreSQL::Test::Utils::tempdir('dump');
my @conn = ('-h', $node->host, '-p', $node->port);

command_ok([ 'pg_dump', @conn, '-Fc', '-f', "$tmp/src.dump", 'src' ], 'pg_dump -Fc');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
command_ok([ 'pg_restore', @conn, '--exit-on-error', '-d', 'restored', "$tmp/src.dump" ], 'pg_restore');

command_ok([ 'pg_dump', @conn, '-Fp', '-f', "$tmp/src.sql", 'src' ], 'pg_dump, plain SQL');
$node->safe_psql('postgres', 'CREATE DATABASE restored_sql');
command_ok([ 'psql', @conn, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'restored_sql', '-f', "$tmp/src.sql" ],
	'plain SQL dump restored with psql');

for my $db ('restored', 'restored_sql')
{
	is(sql($db, $content), $src_content, "$db: every row restored, byte for byte");
	is(sql($db, q{SELECT extversion || ' ' || extnamespace::regnamespace FROM pg_extension WHERE extname = 'stripe_idem'}),
		sql('src', q{SELECT extversion || ' ' || extnamespace::regnamespace FROM pg_extension WHERE extname = 'stripe_idem'}),
		"$db: the extension, same version, same schema");
	is(sql($db, q{SELECT has_table_privilege('app', 'payments.stripe_idempotency_keys', 'SELECT, INSERT, UPDATE, DELETE')
		AND NOT has_table_privilege('public', 'payments.stripe_idempotency_keys', 'SELECT')}),
		't', "$db: the grants to app restored, still nothing for PUBLIC");
	is(sql($db, q{SELECT count(*) FROM pg_constraint WHERE conrelid = 'payments.stripe_idempotency_keys'::regclass}),
		sql('src', q{SELECT count(*) FROM pg_constraint WHERE conrelid = 'payments.stripe_idempotency_keys'::regclass}),
		"$db: the table's constraints, once each (not duplicated by the dump)");

	# The API over restored rows.
	my $key = sql('src', q{SELECT stripe_idempotency_key FROM payments.stripe_idempotency_keys WHERE operation_id = 'op-17' AND operation_type = 'dump:test'});
	is(sql($db, q{SELECT state || ' ' || stripe_idempotency_key || ' ' || stripe_resource_id
		FROM payments.begin_stripe_idempotency('dump:test', 'op-17', '{"amount": 17}')}),
		"completed $key cs_op-17", "$db: a completed operation replays with its key and result");
	is(sql($db, q{SELECT state FROM payments.begin_stripe_idempotency('dump:test', 'op-17', '{"amount": 18}')}),
		'mismatch', "$db: the stored fingerprint still tells other parameters apart");
	my $ip_key = sql('src', q{SELECT stripe_idempotency_key FROM payments.stripe_idempotency_keys WHERE operation_id = 'op-7999'});
	is(sql($db, q{SELECT state || ' ' || (retry_after > '50 minutes') FROM payments.begin_stripe_idempotency('dump:test', 'op-7999')}),
		'in_progress true', "$db: an in_progress operation keeps its lease");
	is(sql($db, qq{SELECT payments.release_stripe_idempotency('dump:test', 'op-7999', '$ip_key');
		SELECT state || ' ' || stripe_idempotency_key || ' ' || attempts FROM payments.begin_stripe_idempotency('dump:test', 'op-7999')}),
		"t\nacquired $ip_key 2", "$db: released and taken over with the same key");
	is(sql($db, qq{SELECT recorded FROM payments.record_stripe_idempotency('dump:test', 'op-7999', '$ip_key', 'cs_late')}),
		't', "$db: and recorded");
	is(sql($db, q{SELECT state FROM payments.begin_stripe_idempotency('dump:test', 'new-after-restore')}),
		'acquired', "$db: a new operation");
	is(sql($db, q{SELECT payments.cleanup_expired_idempotency_keys()}), '500', "$db: cleanup removes the 500 expired keys");
	is(sql($db, q{SELECT count(*) FROM payments.stripe_idempotency_keys}), '9501', "$db: 9,501 rows left");
}

# The upgrade path. Every version the extension ships, oldest first; the
# default is the newest.
my @versions = split /\n/, sql('postgres', q{
	SELECT version FROM pg_available_extension_versions WHERE name = 'stripe_idem'
	ORDER BY string_to_array(version, '.')::int[]});
my $default = sql('postgres', q{SELECT default_version FROM pg_available_extensions WHERE name = 'stripe_idem'});
is($versions[-1], $default, "the default version ($default) is the newest shipped (" . join(', ', @versions) . ')');

# What an install consists of, for comparing an updated one with a fresh one.
my $shape = q{
	WITH ext AS (SELECT oid, extnamespace FROM pg_extension WHERE extname = 'stripe_idem')
	SELECT string_agg(line, E'\n' ORDER BY line) FROM (
		SELECT 'function ' || p.oid::regprocedure || ' -> ' || pg_get_function_result(p.oid)
			|| ' ' || p.provolatile::text || p.proparallel::text || p.proisstrict::text || p.prosecdef::text
			|| ' ' || COALESCE(p.proacl::text, 'default') AS line
		FROM pg_proc p, ext WHERE p.pronamespace = ext.extnamespace
		UNION ALL
		SELECT 'column ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull
			|| ' ' || COALESCE(pg_get_expr(d.adbin, d.adrelid), '')
		FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE a.attrelid = 'stripe_idempotency_keys'::regclass AND a.attnum > 0 AND NOT a.attisdropped
		UNION ALL
		SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid)
		FROM pg_constraint WHERE conrelid = 'stripe_idempotency_keys'::regclass
		UNION ALL
		SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'stripe_idempotency_keys'::regclass
		UNION ALL
		SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' ' || COALESCE(c.relacl::text, 'default')
			|| COALESCE(' ' || pg_get_viewdef(c.oid), '')
		FROM pg_class c, ext WHERE c.relnamespace = ext.extnamespace AND c.relkind IN ('r', 'v')
		UNION ALL
		SELECT 'config dump ' || array_to_string(e.extconfig::regclass[], ',') || ' ' || array_to_string(e.extcondition, ',')
		FROM pg_extension e WHERE e.extname = 'stripe_idem') lines};

$node->safe_psql('postgres', 'CREATE DATABASE fresh; CREATE DATABASE upgraded;');
sql('fresh', 'CREATE EXTENSION stripe_idem');
sql('upgraded', "CREATE EXTENSION stripe_idem VERSION '$versions[0]'");
sql('upgraded', q{
	SELECT count(*) FROM generate_series(1, 100) i,
		LATERAL begin_stripe_idempotency('up:test', 'op-' || i, lease => '1 hour');
	SELECT count(*) FROM stripe_idempotency_keys k,
		LATERAL record_stripe_idempotency(k.operation_type, k.operation_id, k.stripe_idempotency_key, 'cs_' || k.operation_id)
		WHERE k.operation_id::text ~ '^op-[0-9]$';
});
my $before = sql('upgraded', q{SELECT md5(string_agg(k::text, '|' ORDER BY operation_id)) FROM stripe_idempotency_keys k});
my ($out, $err) = ('', '');
$node->psql('upgraded', 'ALTER EXTENSION stripe_idem UPDATE', stdout => \$out, stderr => \$err, on_error_stop => 1);
if (@versions == 1)
{
	like($err, qr/version "\Q$default\E" of extension "stripe_idem" is already installed/,
		"only $default ships: ALTER EXTENSION UPDATE is a no-op");
}
else
{
	is($err, '', "ALTER EXTENSION UPDATE from $versions[0] to $default");
}
is(sql('upgraded', q{SELECT extversion FROM pg_extension WHERE extname = 'stripe_idem'}), $default,
	"the updated extension is at $default");
is(sql('upgraded', q{SELECT md5(string_agg(k::text, '|' ORDER BY operation_id)) FROM stripe_idempotency_keys k}),
	$before, 'the update kept every row unchanged');
is(sql('upgraded', $shape), sql('fresh', $shape), 'the updated extension has exactly the objects of a fresh install');
is(sql('upgraded', q{
	SELECT string_agg(b.state, ',' ORDER BY b.state) FROM (VALUES ('op-1'), ('op-50'), ('op-new')) v(id),
		LATERAL begin_stripe_idempotency('up:test', v.id) b}),
	'acquired,completed,in_progress', 'and behaves the same: replay, live lease, new operation');

$node->stop;
done_testing();
