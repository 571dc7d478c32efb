# search_path attack. A hostile schema, first in search_path (ahead of an
# explicit pg_catalog), defines its own now(), statement_timestamp(),
# gen_random_uuid(), length functions, count/max aggregates, the operators
# the extension uses (text =, <>, ~; timestamptz <, <=, >, >=, -, + interval;
# integer =, +, >=; tid =), and a stripe_idempotency_keys table; a temporary
# table of that name sits in pg_temp too. Every hostile function records
# that it was called and returns a wrong answer (= is always true, now() is
# the year 2000).
#
# The extension, installed in schema idem, must still read and write only
# idem.stripe_idempotency_keys, through the real operators: the trap stays
# empty, the decoys stay untouched, and every answer is the right one. This
# holds for plans prepared under the hostile path, for plans prepared
# before it was set, and for CREATE EXTENSION itself run with it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StripeIdemNode;
use Test::More;

my $node = StripeIdemNode::started('search_path', conf => q{
stripe_idem.databases = 'victim'
});

my $hostile = q{
CREATE SCHEMA hostile AUTHORIZATION mallory;
GRANT USAGE ON SCHEMA hostile TO PUBLIC;
SET ROLE mallory;
CREATE TABLE hostile.trap (what text);
GRANT ALL ON hostile.trap TO PUBLIC;

CREATE FUNCTION hostile.now() RETURNS timestamptz VOLATILE LANGUAGE sql
	AS $$ INSERT INTO hostile.trap VALUES ('now()') RETURNING timestamptz '2000-01-01' $$;
CREATE FUNCTION hostile.statement_timestamp() RETURNS timestamptz VOLATILE LANGUAGE sql
	AS $$ INSERT INTO hostile.trap VALUES ('statement_timestamp()') RETURNING timestamptz '2000-01-01' $$;
CREATE FUNCTION hostile.transaction_timestamp() RETURNS timestamptz VOLATILE LANGUAGE sql
	AS $$ INSERT INTO hostile.trap VALUES ('transaction_timestamp()') RETURNING timestamptz '2000-01-01' $$;
CREATE FUNCTION hostile.gen_random_uuid() RETURNS uuid VOLATILE LANGUAGE sql
	AS $$ INSERT INTO hostile.trap VALUES ('gen_random_uuid()') RETURNING '00000000-0000-4000-8000-000000000000'::uuid $$;
CREATE FUNCTION hostile.char_length(text) RETURNS integer VOLATILE LANGUAGE sql
	AS $$ INSERT INTO hostile.trap VALUES ('char_length()') RETURNING 1 $$;
CREATE FUNCTION hostile.octet_length(text) RETURNS integer VOLATILE LANGUAGE sql
	AS $$ INSERT INTO hostile.trap VALUES ('octet_length()') RETURNING 1 $$;
CREATE FUNCTION hostile.length(text) RETURNS integer VOLATILE LANGUAGE sql
	AS $$ INSERT INTO hostile.trap VALUES ('length()') RETURNING 1 $$;

CREATE FUNCTION hostile.count_step(bigint) RETURNS bigint VOLATILE LANGUAGE sql
	AS $$ INSERT INTO hostile.trap VALUES ('count(*)') RETURNING 424242::bigint $$;
CREATE AGGREGATE hostile.count(*) (SFUNC = hostile.count_step, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION hostile.max_step(timestamptz, timestamptz) RETURNS timestamptz VOLATILE LANGUAGE sql
	AS $$ INSERT INTO hostile.trap VALUES ('max()') RETURNING timestamptz '2000-01-01' $$;
CREATE AGGREGATE hostile.max(timestamptz) (SFUNC = hostile.max_step, STYPE = timestamptz);

CREATE FUNCTION hostile.bool_text(text, text) RETURNS boolean VOLATILE LANGUAGE sql
	AS $$ INSERT INTO hostile.trap VALUES ('operator on text') RETURNING true $$;
CREATE FUNCTION hostile.bool_ts(timestamptz, timestamptz) RETURNS boolean VOLATILE LANGUAGE sql
	AS $$ INSERT INTO hostile.trap VALUES ('operator on timestamptz') RETURNING true $$;
CREATE FUNCTION hostile.bool_int(integer, integer) RETURNS boolean VOLATILE LANGUAGE sql
	AS $$ INSERT INTO hostile.trap VALUES ('operator on integer') RETURNING true $$;
CREATE FUNCTION hostile.bool_tid(tid, tid) RETURNS boolean VOLATILE LANGUAGE sql
	AS $$ INSERT INTO hostile.trap VALUES ('operator on tid') RETURNING true $$;
CREATE FUNCTION hostile.ts_plus(timestamptz, interval) RETURNS timestamptz VOLATILE LANGUAGE sql
	AS $$ INSERT INTO hostile.trap VALUES ('timestamptz + interval') RETURNING timestamptz '2000-01-01' $$;
CREATE FUNCTION hostile.ts_minus(timestamptz, timestamptz) RETURNS interval VOLATILE LANGUAGE sql
	AS $$ INSERT INTO hostile.trap VALUES ('timestamptz - timestamptz') RETURNING interval '1000 years' $$;
CREATE FUNCTION hostile.int_plus(integer, integer) RETURNS integer VOLATILE LANGUAGE sql
	AS $$ INSERT INTO hostile.trap VALUES ('integer + integer') RETURNING 424242 $$;

CREATE OPERATOR hostile.= (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.bool_text);
CREATE OPERATOR hostile.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.bool_text);
CREATE OPERATOR hostile.~ (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.bool_text);
CREATE OPERATOR hostile.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = hostile.bool_ts);
CREATE OPERATOR hostile.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = hostile.bool_ts);
CREATE OPERATOR hostile.> (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = hostile.bool_ts);
CREATE OPERATOR hostile.>= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = hostile.bool_ts);
CREATE OPERATOR hostile.= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = hostile.bool_int);
CREATE OPERATOR hostile.>= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = hostile.bool_int);
CREATE OPERATOR hostile.= (LEFTARG = tid, RIGHTARG = tid, FUNCTION = hostile.bool_tid);
CREATE OPERATOR hostile.- (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = hostile.ts_minus);
CREATE OPERATOR hostile.+ (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = hostile.ts_plus);
CREATE OPERATOR hostile.+ (LEFTARG = integer, RIGHTARG = integer, FUNCTION = hostile.int_plus);

-- The decoy table, with a row that is "expired" and one that would match.
CREATE TABLE hostile.stripe_idempotency_keys (
	operation_type text, operation_id text, stripe_idempotency_key text,
	request_fingerprint text, status text, stripe_resource_id text, response jsonb,
	attempts integer, locked_until timestamptz, created_at timestamptz,
	updated_at timestamptz, completed_at timestamptz, expires_at timestamptz);
GRANT ALL ON hostile.stripe_idempotency_keys TO PUBLIC;
INSERT INTO hostile.stripe_idempotency_keys VALUES
	('sp:test', 'op-1', 'decoy-key-1', NULL, 'completed', 'cs_decoy', NULL, 1, NULL,
	 '2000-01-01', '2000-01-01', '2000-01-01', '2000-01-02'),
	('sp:test', 'expired-decoy', 'decoy-key-2', NULL, 'completed', 'cs_decoy', NULL, 1, NULL,
	 '2000-01-01', '2000-01-01', '2000-01-01', '2000-01-02');
RESET ROLE;
};

my $hostile_path = 'SET search_path = hostile, pg_catalog, idem, public';
my $temp_decoy = q{
CREATE TEMP TABLE stripe_idempotency_keys (LIKE hostile.stripe_idempotency_keys);
INSERT INTO pg_temp.stripe_idempotency_keys SELECT * FROM hostile.stripe_idempotency_keys;
};

# The decoys and the trap, as one string to compare before and after
# (with a safe path of its own: in the victim database the default path is
# the hostile one).
my $decoys = q{
SET search_path = pg_catalog, public;
SELECT (SELECT count(*) FROM hostile.trap) || ' trapped: '
	|| COALESCE((SELECT string_agg(DISTINCT what, ', ') FROM hostile.trap), '-')
	|| ' / decoy ' || (SELECT md5(string_agg(d::text, '|' ORDER BY operation_id))
		FROM hostile.stripe_idempotency_keys d)};

sub sql { my ($db, $s) = @_; return $node->safe_psql($db, $s); }

$node->safe_psql('postgres', 'CREATE SCHEMA idem; CREATE EXTENSION stripe_idem SCHEMA idem;');
$node->safe_psql('postgres', 'CREATE ROLE mallory');
$node->safe_psql('postgres', $hostile);
my $clean = sql('postgres', $decoys);
like($clean, qr/^0 trapped: - \/ decoy [0-9a-f]{32}$/, 'the trap is set and empty');

# An expired row in the extension's table, for cleanup to find.
sql('postgres', q{
	INSERT INTO idem.stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key,
		status, stripe_resource_id, created_at, updated_at, completed_at, expires_at)
	VALUES ('sp:test', 'old', 'sp-old-key', 'completed', 'cs_old',
		now() - interval '2 days', now() - interval '2 days', now() - interval '2 days',
		now() - interval '1 day')});

my $uuid = qr/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/;

# The whole API in one session that sets the hostile path before its first
# call (so every plan is prepared under it); $prefix tells operations of
# different runs apart. The test's own SQL around the calls qualifies every
# operator and aggregate the decoys define, or it would fall for them.
sub flow
{
	my ($db, $prefix, $setup) = @_;
	my ($out, $err) = ('', '');
	$node->psql($db, qq{
$setup
$temp_decoy
\\pset fieldsep ' '
SELECT 'key', idem.new_stripe_idempotency_key('sp:test', '${prefix}op-1') LIKE 'sp:test:${prefix}op-1:%';
SELECT 'begin1', state, stripe_idempotency_key FROM idem.begin_stripe_idempotency('sp:test', '${prefix}op-1', '{"amount": 1}', '1 minute', '1 hour');
SELECT 'begin2', state, stripe_idempotency_key IS NULL, retry_after > '50 seconds' FROM idem.begin_stripe_idempotency('sp:test', '${prefix}op-1', '{"amount": 1}');
SELECT 'mismatch', state FROM idem.begin_stripe_idempotency('sp:test', '${prefix}op-1', '{"amount": 2}');
SELECT 'check1', found, status, expires_at OPERATOR(pg_catalog.-) created_at FROM idem.check_stripe_idempotency('sp:test', '${prefix}op-1');
\\set VERBOSITY sqlstate
\\set ON_ERROR_STOP 0
SELECT 'wrongkey', * FROM idem.record_stripe_idempotency('sp:test', '${prefix}op-1', 'decoy-key-1', 'cs_wrong');
\\set ON_ERROR_STOP 1
SELECT 'record', recorded, stripe_resource_id FROM idem.record_stripe_idempotency('sp:test', '${prefix}op-1',
	(SELECT stripe_idempotency_key FROM idem.stripe_idempotency_keys WHERE operation_id OPERATOR(pg_catalog.=) '${prefix}op-1'), 'cs_real');
SELECT 'again', recorded, stripe_resource_id FROM idem.record_stripe_idempotency('sp:test', '${prefix}op-1',
	(SELECT stripe_idempotency_key FROM idem.stripe_idempotency_keys WHERE operation_id OPERATOR(pg_catalog.=) '${prefix}op-1'), 'cs_other');
SELECT 'begin3', state, stripe_resource_id FROM idem.begin_stripe_idempotency('sp:test', '${prefix}op-1', '{"amount": 1}');
SELECT 'begin4', state FROM idem.begin_stripe_idempotency('sp:test', '${prefix}op-2');
SELECT 'release', idem.release_stripe_idempotency('sp:test', '${prefix}op-2',
	(SELECT stripe_idempotency_key FROM idem.stripe_idempotency_keys WHERE operation_id OPERATOR(pg_catalog.=) '${prefix}op-2'));
SELECT 'takeover', state, attempts FROM idem.begin_stripe_idempotency('sp:test', '${prefix}op-2');
SELECT 'check2', found FROM idem.check_stripe_idempotency('sp:test', 'expired-decoy');
SELECT 'cleanup', idem.cleanup_expired_idempotency_keys(10);
SELECT 'stats', acquired > 0 FROM idem.stripe_idem_stats;
SELECT 'temp', pg_catalog.count(*) FROM pg_temp.stripe_idempotency_keys;
}, stdout => \$out, stderr => \$err, on_error_stop => 1);
	return ($out, $err);
}

sub check_flow
{
	my ($what, $res, $cleaned) = @_;
	my ($out, $err) = @$res;
	like($err, qr/\A[^\n]*ERROR:  23505\n?\z/, "$what: the only error is 23505 from recording a key another operation owns");
	my %r = map { my ($k, @v) = split / /; ($k => join(' ', @v)) } split /\n/, $out;
	is($r{key}, 't', "$what: new key has the operation in it");
	like($r{begin1}, qr/^acquired sp:test:\S+:$uuid$/, "$what: begin acquires, with a real uuid");
	is($r{begin2}, 'in_progress t t', "$what: the second begin is told in_progress, no key, the real lease left");
	is($r{mismatch}, 'mismatch', "$what: other parameters are a mismatch (the real text = compares)");
	is($r{check1}, 't in_progress 01:00:00', "$what: check finds the row with the ttl given");
	is($r{wrongkey}, undef, "$what: recording a key another operation owns fails (23505, not the decoy's always-true =)");
	is($r{record}, 't cs_real', "$what: record with the operation's own key");
	is($r{again}, 'f cs_real', "$what: the first result wins");
	is($r{begin3}, 'completed cs_real', "$what: begin replays the result");
	is($r{release}, 't', "$what: release drops the lease");
	is($r{takeover}, 'acquired 2', "$what: and the next begin takes over");
	is($r{check2}, 'f', "$what: check does not see the decoy's rows");
	is($r{cleanup}, $cleaned, "$what: cleanup deletes the extension's expired row, not the decoy's");
	is($r{stats}, 't', "$what: stats");
	is($r{temp}, '2', "$what: the temporary decoy is untouched");
}

my $out;

# 1. Plans prepared under the hostile path.
$out = [ flow('postgres', 'a-', "$hostile_path;") ];
check_flow('hostile path from the first call', $out, '1');
is(sql('postgres', $decoys), $clean, 'nothing hostile was called, the decoy table is untouched');

# 2. Plans prepared under a clean path, then the hostile path set in the
#    same session: the plan cache notices the new path and re-parses, which
#    must still find only the real objects.
$out = [ flow('postgres', 'b-', q{
SELECT count(*) FROM idem.begin_stripe_idempotency('sp:test', 'warm-up');
SELECT count(*) FROM idem.record_stripe_idempotency('sp:test', 'warm-up',
	(SELECT stripe_idempotency_key FROM idem.stripe_idempotency_keys WHERE operation_id = 'warm-up'), 'cs_w');
SELECT count(*) FROM idem.check_stripe_idempotency('sp:test', 'warm-up');
SELECT idem.cleanup_expired_idempotency_keys(10);
SELECT idem.release_stripe_idempotency('sp:test', 'warm-up', 'x');
} . "$hostile_path;") ];
check_flow('hostile path set after the plans were cached', $out, '0');
is(sql('postgres', $decoys), $clean, 'nothing hostile was called, the decoy table is untouched');

# The extension's rows are all its own.
is(sql('postgres', q{SELECT string_agg(operation_id || ':' || status, ',' ORDER BY operation_id)
	FROM idem.stripe_idempotency_keys}),
	'a-op-1:completed,a-op-2:in_progress,b-op-1:completed,b-op-2:in_progress,warm-up:completed',
	'the extension table holds exactly the rows the calls wrote');

# 3. CREATE EXTENSION with the hostile path as the database default: the
#    install script must bind to pg_catalog, not to the decoys.
$node->safe_psql('postgres', 'CREATE DATABASE victim');
$node->safe_psql('victim', $hostile);
$node->safe_psql('victim', "ALTER DATABASE victim SET search_path = hostile, pg_catalog, public");
$node->safe_psql('victim', 'CREATE SCHEMA idem; CREATE EXTENSION stripe_idem SCHEMA idem;');
my $victim_clean = sql('victim', $decoys);
like($victim_clean, qr/^0 trapped: -/, 'CREATE EXTENSION under the hostile path called nothing hostile');
is(sql('victim', q{
	SET search_path = pg_catalog, public;
	WITH ext AS (
		SELECT classid, objid FROM pg_depend
		WHERE refclassid = 'pg_extension'::regclass
		AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'stripe_idem')),
	members AS (
		SELECT classid, objid FROM ext
		UNION SELECT 'pg_constraint'::regclass, oid FROM pg_constraint
			WHERE conrelid = 'idem.stripe_idempotency_keys'::regclass
		UNION SELECT 'pg_attrdef'::regclass, oid FROM pg_attrdef
			WHERE adrelid = 'idem.stripe_idempotency_keys'::regclass
		UNION SELECT 'pg_class'::regclass, indexrelid FROM pg_index
			WHERE indrelid = 'idem.stripe_idempotency_keys'::regclass
		UNION SELECT 'pg_rewrite'::regclass, r.oid FROM pg_rewrite r
			JOIN ext ON ext.classid = 'pg_class'::regclass AND r.ev_class = ext.objid)
	SELECT (SELECT count(*) FROM members) > 15,
		(SELECT count(*) FROM members m JOIN pg_depend d ON d.classid = m.classid AND d.objid = m.objid
		WHERE (d.refclassid = 'pg_proc'::regclass
				AND d.refobjid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'hostile'::regnamespace))
			OR (d.refclassid = 'pg_operator'::regclass
				AND d.refobjid IN (SELECT oid FROM pg_operator WHERE oprnamespace = 'hostile'::regnamespace))
			OR (d.refclassid = 'pg_class'::regclass
				AND d.refobjid IN (SELECT oid FROM pg_class WHERE relnamespace = 'hostile'::regnamespace))
			OR (d.refclassid = 'pg_type'::regclass
				AND d.refobjid IN (SELECT oid FROM pg_type WHERE typnamespace = 'hostile'::regnamespace))
			OR (d.refclassid = 'pg_namespace'::regclass AND d.refobjid = 'hostile'::regnamespace)),
		(SELECT count(*) FROM pg_constraint c WHERE c.conrelid = 'idem.stripe_idempotency_keys'::regclass
			AND pg_get_constraintdef(c.oid) LIKE '%hostile%')
		+ (SELECT count(*) FROM pg_attrdef a WHERE a.adrelid = 'idem.stripe_idempotency_keys'::regclass
			AND pg_get_expr(a.adbin, a.adrelid) LIKE '%hostile%')}), 't|0|0',
	'no constraint, default or other object of the extension depends on a hostile object');
$out = [ flow('victim', 'v-', '') ];
check_flow('extension created and used under the hostile default path', $out, '0');
is(sql('victim', $decoys), $victim_clean, 'nothing hostile was called, the decoy table is untouched');

# 4. The background sweeper in the victim database: its worker connects
#    with the database's hostile default path and runs the same deletion.
sql('victim', q{
	SET search_path = pg_catalog, public;
	INSERT INTO idem.stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key,
		status, stripe_resource_id, expires_at)
	SELECT 'sp:test', 'swept-' || g, 'sp-swept-' || g, 'completed', 'cs_old', now() - interval '1 hour'
	FROM generate_series(1, 100) g;
	SELECT idem.stripe_idem_wake_sweeper();});
ok($node->poll_query_until('victim', q{
	SELECT pg_catalog.count(*) OPERATOR(pg_catalog.=) 0 FROM idem.stripe_idempotency_keys
	WHERE operation_id OPERATOR(pg_catalog.~~) 'swept-%'}),
	'the sweeper, under the hostile default path, deletes the expired rows of the extension table');
is(sql('victim', $decoys), $victim_clean, 'nothing hostile was called by the sweeper, the decoy table is untouched');
is(sql('victim', q{SET search_path = pg_catalog; SELECT last_error IS NULL AND passes > 0 FROM idem.stripe_idem_sweeper}),
	't', 'the sweeper reports a clean pass');

# 5. The calls run with the owner's rights (SECURITY DEFINER): a hostile
#    object they resolved would run with those rights too. An application
#    role with only the documented grants calls the whole API under the
#    hostile path, in a session whose plans are prepared under it.
sql('postgres', q{
	CREATE ROLE clerk LOGIN;
	GRANT USAGE ON SCHEMA idem TO clerk;
	GRANT EXECUTE ON FUNCTION
		idem.begin_stripe_idempotency(text, text, jsonb, interval, interval, interval),
		idem.check_stripe_idempotency(text, text),
		idem.record_stripe_idempotency(text, text, text, text, jsonb, interval),
		idem.release_stripe_idempotency(text, text, text, integer),
		idem.restart_stripe_idempotency(text, text, text, interval, interval, interval),
		idem.new_stripe_idempotency_key(text, text)
		TO clerk});
{
	my ($out, $err) = ('', '');
	$node->psql('postgres', qq{
$hostile_path;
\\pset fieldsep ' '
SELECT stripe_idempotency_key AS k FROM idem.begin_stripe_idempotency('sp:clerk', 'c-1', '{"a": 1}') \\gset
SELECT 'begin2', state FROM idem.begin_stripe_idempotency('sp:clerk', 'c-1', '{"a": 1}');
SELECT 'check', found, status FROM idem.check_stripe_idempotency('sp:clerk', 'c-1');
SELECT 'release', idem.release_stripe_idempotency('sp:clerk', 'c-1', :'k', 1);
SELECT 'takeover', state, attempts FROM idem.begin_stripe_idempotency('sp:clerk', 'c-1', '{"a": 1}');
SELECT 'record', recorded FROM idem.record_stripe_idempotency('sp:clerk', 'c-1', :'k', 'cs_clerk');
SELECT 'replay', state, stripe_resource_id FROM idem.begin_stripe_idempotency('sp:clerk', 'c-1', '{"a": 1}');
}, stdout => \$out, stderr => \$err, on_error_stop => 1, extra_params => [ '-U', 'clerk' ]);
	is($err, '', 'an application role runs the API under the hostile path without an error');
	is($out, "begin2 in_progress\ncheck t in_progress\nrelease t\ntakeover acquired 2\nrecord t\nreplay completed cs_clerk",
		'and gets the right answers');
	is(sql('postgres', $decoys), $clean, 'nothing hostile ran with the owner\'s rights, the decoy table is untouched');
}

$node->stop;
done_testing();
