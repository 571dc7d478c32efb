# Upgrading to 1.2, from 1.0 and from 1.1. A database created at an older
# version keeps working with the 1.2 library (its SQL functions name C
# symbols the new library still has); ALTER EXTENSION stripe_idem UPDATE
# keeps every row, leaves every row valid under the table's rules, grants
# EXECUTE on the API to the roles that wrote the table, and ends with
# exactly the objects of a fresh 1.2 install, compared member by member
# from the catalogs; and the API works afterwards, in the same session and
# in new ones, with 1.2's rules (unresolved operations, the refusal in
# transaction blocks).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StripeIdemNode;
use Test::More;

my $node = StripeIdemNode::started('upgrade');

sub sql { my ($db, $s) = @_; return $node->safe_psql($db, $s); }

my @from = ('1.0', '1.1');
my %db = map { ($_ => 'from_' . ($_ =~ s/\./_/r)) } @from;

$node->safe_psql('postgres', q{CREATE ROLE app LOGIN; CREATE ROLE nobody; CREATE DATABASE fresh;});
$node->safe_psql('postgres', "CREATE DATABASE $db{$_}") for @from;

# Every database in a non-default schema, with the table grants an
# application got before 1.2.
for my $d ('fresh', map { $db{$_} } @from)
{
	my ($version) = grep { $db{$_} eq $d } @from;
	my $v = defined $version ? "VERSION '$version'" : '';
	sql($d, qq{
		CREATE SCHEMA payments;
		CREATE EXTENSION stripe_idem SCHEMA payments $v;
		GRANT USAGE ON SCHEMA payments TO app, nobody;
		GRANT SELECT, INSERT, UPDATE, DELETE ON payments.stripe_idempotency_keys TO app;
	});
}
is(sql('fresh', q{SELECT extversion FROM pg_extension WHERE extname = 'stripe_idem'}), '1.2',
	'a plain CREATE EXTENSION installs 1.2');
# What the update grants the application role, given by hand in the fresh
# database so that the two can be compared.
sql('fresh', q{GRANT EXECUTE ON FUNCTION
	payments.new_stripe_idempotency_key(text, text),
	payments.begin_stripe_idempotency(text, text, jsonb, interval, interval, interval),
	payments.restart_stripe_idempotency(text, text, text, interval, interval, interval),
	payments.check_stripe_idempotency(text, text),
	payments.record_stripe_idempotency(text, text, text, text, jsonb, interval),
	payments.release_stripe_idempotency(text, text, text, integer)
	TO app});

my $content = q{SELECT count(*) || ' ' || md5(string_agg((k.*)::text, '|' ORDER BY operation_type, operation_id))
	FROM payments.stripe_idempotency_keys k};

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
like($fresh_shape, qr/^constraint stripe_idempotency_keys_rules c CHECK/m, '(the comparison sees the constraints)');
like($fresh_shape, qr/AS '\$libdir\/stripe_idem', \$function\$begin_stripe_idempotency_1_2\$function\$/,
	'(and the functions\' C symbols)');
like($fresh_shape, qr/^comment function payments\.stripe_idem_row_is_valid/m, '(and the comments)');
like($fresh_shape, qr/^column 1 operation_type text collation C /m, '(and the collations)');
like($fresh_shape, qr/stripe_idem', \$function\$stripe_idem_wake_sweeper_1_1\$function\$/, '(and the 1.1 function with its own C symbol)');
like($fresh_shape, qr/^function payments\.begin_stripe_idempotency\(text,text,jsonb,interval,interval,interval\) .* vufalsetruefalse /m,
	'(and SECURITY DEFINER)');

for my $version (@from)
{
	my $d = $db{$version};
	is(sql($d, q{SELECT extversion FROM pg_extension WHERE extname = 'stripe_idem'}), $version,
		"created at $version");

	# The old API, with the 1.2 library loaded: rows in every state.
	sql($d, q{
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
			LATERAL record_stripe_idempotency('up:expiring', 'op-' || i, 'up:expiring:key-' || i, 'cs_e', NULL, ttl => '1 second');
		SELECT count(*) FROM generate_series(1, 5) i,
			LATERAL begin_stripe_idempotency('up:lost', 'op-' || i, ttl => '1 second', lease => '1 second');
	});
	is(sql($d, q{SELECT status, count(*) FROM payments.stripe_idempotency_keys GROUP BY 1 ORDER BY 1}),
		"completed|169\nin_progress|206", "at $version: 375 rows written through the $version API by the 1.2 library");

	my $key200 = sql($d, q{SELECT stripe_idempotency_key FROM payments.stripe_idempotency_keys
		WHERE operation_type = 'up:test' AND operation_id = 'op-200'});
	my $api = sub {
		my ($tag) = @_;
		is(sql($d, q{SELECT state || ' ' || stripe_resource_id FROM payments.begin_stripe_idempotency('up:test', 'op-17', '{"amount": 17}')}),
			'completed cs_op-17', "$tag: begin replays a completed operation");
		is(sql($d, q{SELECT state FROM payments.begin_stripe_idempotency('up:test', 'op-17', '{"amount": 18}')}),
			'mismatch', "$tag: other request_params are a mismatch");
		is(sql($d, q{SELECT state || ' ' || (retry_after > '50 minutes') FROM payments.begin_stripe_idempotency('up:test', 'op-250')}),
			'in_progress true', "$tag: a live lease is in_progress");
		is(sql($d, q{SELECT found || ' ' || status || ' ' || stripe_resource_id FROM payments.check_stripe_idempotency('up:test', 'op-17')}),
			'true completed cs_op-17', "$tag: check finds the completed operation");
		is(sql($d, q{SELECT found FROM payments.check_stripe_idempotency('up:test', 'nope')}),
			'f', "$tag: check of an unknown operation");
		like(sql($d, q{SELECT payments.new_stripe_idempotency_key('up:test', 'x')}),
			qr/^up:test:x:[0-9a-f-]{36}$/, "$tag: new_stripe_idempotency_key");
	};
	$api->("at $version");
	is(sql($d, qq{SELECT payments.release_stripe_idempotency('up:test', 'op-200', '$key200');
		SELECT state || ' ' || (stripe_idempotency_key = '$key200') || ' ' || attempts
		FROM payments.begin_stripe_idempotency('up:test', 'op-200')}),
		"t\nacquired true 2", "at $version: released and taken over with the same key");
	# The old begin still runs in a transaction block, as it always could:
	# installing the library breaks no caller before the update.
	my $new = sql($d, q{BEGIN; SELECT state || ' ' || stripe_idempotency_key FROM payments.begin_stripe_idempotency('up:test', 'brand-new'); COMMIT;});
	like($new, qr/^acquired up:test:brand-new:/, "at $version: a new operation is acquired, in a transaction block");
	(my $newkey = $new) =~ s/^acquired //;
	is(sql($d, qq{SELECT recorded FROM payments.record_stripe_idempotency('up:test', 'brand-new', '$newkey', 'cs_new')}),
		't', "at $version: and recorded");

	# The old functions run with the caller's rights: a role without
	# SELECT on the table is refused, also where the library reads the
	# row without a statement.
	{
		my ($rc, $out, $err) = $node->psql($d, q{SET ROLE nobody;
			SELECT found FROM payments.check_stripe_idempotency('up:test', 'op-17');
			SELECT state FROM payments.begin_stripe_idempotency('up:test', 'op-17')}, on_error_stop => 0);
		is(scalar(() = $err =~ /permission denied for table stripe_idempotency_keys/g), 2,
			"at $version: a role without table privileges can neither check nor begin");
	}

	if ($version eq '1.0')
	{
		my ($rc, $out, $err) = $node->psql($d, q{INSERT INTO payments.stripe_idempotency_keys
			(operation_type, operation_id, stripe_idempotency_key, status, expires_at)
			VALUES ('bad type', 'x', 'k', 'in_progress', now() + interval '1 day')});
		like($err, qr/violates check constraint "operation_type_format"/, 'at 1.0: the ten 1.0 CHECK constraints still hold');
	}

	# An operator's grant on an old function survives the update.
	sql($d, 'GRANT EXECUTE ON FUNCTION payments.stripe_idem_wake_sweeper() TO app');

	# A session that used the API stays open across the update.
	my $session = $node->background_psql($d);
	$session->query_safe(q{SELECT state FROM payments.begin_stripe_idempotency('up:test', 'op-1')});

	# the keys of 'up:expiring' and the leases and keys of 'up:lost' run out
	$node->poll_query_until($d, q{SELECT count(*) = 25 FROM payments.stripe_idempotency_keys
		WHERE expires_at <= statement_timestamp()}) or die "the short keys did not expire";

	my $before = sql($d, $content);
	my ($rc, $out, $err) = $node->psql($d, 'ALTER EXTENSION stripe_idem UPDATE');
	is($rc, 0, "from $version: ALTER EXTENSION stripe_idem UPDATE succeeds") or diag($err);
	like($err, qr/WARNING:  role "app" was granted EXECUTE on the stripe_idem API/,
		"from $version: the update says it granted EXECUTE to the role that wrote the table");
	is(sql($d, q{SELECT extversion FROM pg_extension WHERE extname = 'stripe_idem'}), '1.2',
		"from $version: the extension is at 1.2");
	is(sql($d, $content), $before, "from $version: every row kept, byte for byte");
	is(sql($d, q{SELECT count(*) FROM payments.stripe_idempotency_keys k
		WHERE NOT payments.stripe_idem_row_is_valid(k)}),
		'0', "from $version: every row obeys the rules");
	is(sql($d, q{SELECT string_agg(conname || ' ' || convalidated, ',' ORDER BY conname) FROM pg_constraint
		WHERE conrelid = 'payments.stripe_idempotency_keys'::regclass AND contype = 'c'}),
		'stripe_idempotency_keys_rules true', "from $version: one CHECK constraint, validated against the existing rows");
	is(sql($d, q{SELECT has_function_privilege('app', 'payments.stripe_idem_wake_sweeper()', 'EXECUTE')
		|| ' ' || has_function_privilege('app', 'payments.stripe_idem_wake_sweeper(boolean)', 'EXECUTE')}),
		'true false', "from $version: the grant on stripe_idem_wake_sweeper() is kept; stripe_idem_wake_sweeper(boolean) is not granted");
	sql($d, 'REVOKE EXECUTE ON FUNCTION payments.stripe_idem_wake_sweeper() FROM app');

	is(sql($d, $shape), $fresh_shape, "from $version: the updated extension has exactly the objects of a fresh 1.2 install");

	# After the update: the API, in the session that was open across it and
	# in new ones, and 1.2's rules.
	is($session->query_safe(q{SELECT state || ' ' || stripe_resource_id FROM payments.begin_stripe_idempotency('up:test', 'op-17', '{"amount": 17}')}),
		'completed cs_op-17', "from $version: the session open across the update replays");
	$session->quit;
	$api->("from $version, after the update");
	is(sql($d, q{SELECT state FROM payments.begin_stripe_idempotency('up:expiring', 'op-3')}),
		'acquired', "from $version: an expired completed operation is acquired again");
	# (its one-second lease ended a moment ago: without the settle time it
	# is unresolved at once; with it, in_progress for ten minutes more)
	is(sql($d, q{SELECT string_agg(DISTINCT state, ',') FROM generate_series(1, 5) i,
		payments.begin_stripe_idempotency('up:lost', 'op-' || i)}),
		'in_progress', "from $version: an operation whose ttl ran out in progress is in_progress until it settles");
	is(sql($d, q{SET stripe_idem.settle_time = 0;
		SELECT string_agg(DISTINCT state, ',') FROM generate_series(1, 5) i,
		payments.begin_stripe_idempotency('up:lost', 'op-' || i)}),
		'unresolved', "from $version: and unresolved once settled");
	is(sql($d, q{SELECT payments.cleanup_expired_idempotency_keys()}), '19',
		"from $version: cleanup removes the other 19 expired keys and keeps the unresolved ones");
	($rc, $out, $err) = $node->psql($d, q{INSERT INTO payments.stripe_idempotency_keys
		(operation_type, operation_id, stripe_idempotency_key, status, expires_at)
		VALUES ('bad type', 'x', 'k', 'in_progress', now() + interval '1 day')});
	like($err, qr/violates check constraint "stripe_idempotency_keys_rules"/, "from $version: a bad row is refused by the rules");
	($rc, $out, $err) = $node->psql($d, q{BEGIN; SELECT state FROM payments.begin_stripe_idempotency('up:test', 'in-a-block'); COMMIT;});
	like($err, qr/cannot run inside a transaction block/, "from $version: the 1.2 begin refuses a transaction block");
	my $applied = sql($d, q{SET ROLE app;
		SELECT state FROM payments.begin_stripe_idempotency('up:app', 'a1');
		SELECT found FROM payments.check_stripe_idempotency('up:app', 'a1')});
	is($applied, "acquired\nt", "from $version: the application role uses the API through the EXECUTE grants");
}

$node->stop;
done_testing();
