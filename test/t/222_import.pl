# stripe_idem_import() on a copy of the hand-written deployment users come
# from: public.stripe_idempotency_keys with check_stripe_idempotency() and
# record_stripe_idempotency() in PL/pgSQL, the extension installed beside it
# in a schema of its own. A recorded row becomes completed and is replayed;
# an unrecorded row keeps its key (the next begin takes over with it) or,
# with a key older than the key window, is answered unresolved with it; an
# expired row is skipped; a second run copies nothing; bad sources raise
# the documented SQLSTATEs, name the row and write nothing; the function is
# not executable by PUBLIC.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('import');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'stripe_idem'\n");
$node->start;
sub sql { return $node->safe_psql('postgres', $_[0]); }

# The seed's table and functions (20250128_stripe_idempotency_keys.sql).
sql(q{
CREATE TABLE public.stripe_idempotency_keys (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	operation_type text NOT NULL,
	operation_id text NOT NULL,
	stripe_idempotency_key text NOT NULL UNIQUE,
	stripe_resource_id text,
	response jsonb,
	status text NOT NULL DEFAULT 'pending',
	created_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz NOT NULL DEFAULT now() + interval '24 hours',
	UNIQUE (operation_type, operation_id)
);
CREATE FUNCTION public.check_stripe_idempotency(p_operation_type text, p_operation_id text)
RETURNS TABLE (found boolean, stripe_resource_id text, response jsonb)
LANGUAGE plpgsql AS $$
BEGIN
	RETURN QUERY SELECT true, k.stripe_resource_id, k.response FROM public.stripe_idempotency_keys k
	WHERE k.operation_type = p_operation_type AND k.operation_id = p_operation_id AND k.expires_at > now();
	IF NOT FOUND THEN RETURN QUERY SELECT false, NULL::text, NULL::jsonb; END IF;
END $$;
CREATE FUNCTION public.record_stripe_idempotency(p_operation_type text, p_operation_id text,
	p_key text, p_resource_id text, p_response jsonb)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key,
		stripe_resource_id, response, status)
	VALUES (p_operation_type, p_operation_id, p_key, p_resource_id, p_response, 'completed')
	ON CONFLICT (operation_type, operation_id) DO UPDATE
		SET stripe_resource_id = EXCLUDED.stripe_resource_id, response = EXCLUDED.response, status = 'completed';
END $$;
-- recorded an hour ago
SELECT public.record_stripe_idempotency('checkout:create', 'sess_done', 'checkout:create:sess_done:1111',
	'cs_test_done', '{"id": "cs_test_done"}');
UPDATE public.stripe_idempotency_keys SET created_at = now() - interval '1 hour' WHERE operation_id = 'sess_done';
-- a key written before a Stripe call whose result was never recorded, 10 minutes ago
INSERT INTO public.stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key, created_at)
VALUES ('checkout:create', 'sess_lost', 'checkout:create:sess_lost:2222', now() - interval '10 minutes');
-- the same, 30 hours ago: the key may be forgotten by Stripe
INSERT INTO public.stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key, created_at, expires_at)
VALUES ('checkout:create', 'sess_old', 'checkout:create:sess_old:3333', now() - interval '30 hours',
	now() - interval '6 hours');
-- recorded and expired: nothing to keep
INSERT INTO public.stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key,
	stripe_resource_id, status, created_at, expires_at)
VALUES ('checkout:create', 'sess_gone', 'checkout:create:sess_gone:4444', 'cs_test_gone', 'completed',
	now() - interval '3 days', now() - interval '2 days');
CREATE SCHEMA payments;
CREATE EXTENSION stripe_idem SCHEMA payments;
CREATE ROLE app LOGIN;
});

is(sql(q{SELECT has_function_privilege('app', 'payments.stripe_idem_import(regclass)', 'EXECUTE')}),
	'f', 'stripe_idem_import is not executable by PUBLIC');

is(sql(q{SELECT payments.stripe_idem_import('public.stripe_idempotency_keys')}), '3',
	'three live rows copied, the expired one skipped');
is(sql(q{SELECT string_agg(operation_id || ' ' || status || ' ' || stripe_idempotency_key || ' '
		|| coalesce(stripe_resource_id, '-') || ' ' || (locked_until IS NULL), ', ' ORDER BY operation_id)
	FROM payments.stripe_idempotency_keys}),
	'sess_done completed checkout:create:sess_done:1111 cs_test_done true, '
	  . 'sess_lost in_progress checkout:create:sess_lost:2222 - true, '
	  . 'sess_old in_progress checkout:create:sess_old:3333 - true',
	'completed with its result; unrecorded rows in progress with their old keys and no lease');
is(sql(q{SELECT bool_and(k.created_at = o.created_at) FROM payments.stripe_idempotency_keys k
	JOIN public.stripe_idempotency_keys o USING (operation_type, operation_id)}),
	't', 'created_at is kept');

is(sql(q{SELECT payments.stripe_idem_import('public.stripe_idempotency_keys')}), '0',
	'a second run copies nothing');

# What begin makes of them.
is(sql(q{SELECT state || ' ' || stripe_resource_id FROM payments.begin_stripe_idempotency('checkout:create', 'sess_done')}),
	'completed cs_test_done', 'the recorded operation is replayed');
is(sql(q{SELECT state || ' ' || stripe_idempotency_key || ' ' || attempts FROM payments.begin_stripe_idempotency('checkout:create', 'sess_lost')}),
	'acquired checkout:create:sess_lost:2222 2', 'the unrecorded one hands the SAME key to Stripe');
is(sql(q{SELECT state || ' ' || stripe_idempotency_key FROM payments.begin_stripe_idempotency('checkout:create', 'sess_old')}),
	'unresolved checkout:create:sess_old:3333', 'past the key window it is unresolved, with its old key');
is(sql(q{SELECT state FROM payments.begin_stripe_idempotency('checkout:create', 'sess_gone')}),
	'acquired', 'the expired one was not copied');

# The extension's rows win over the old table's on a later run: an
# operation recorded in the old table after the first import is left alone.
sql(q{SELECT public.record_stripe_idempotency('checkout:create', 'sess_lost', 'checkout:create:sess_lost:2222',
	'cs_test_late', '{"id": "cs_test_late"}')});
is(sql(q{SELECT payments.stripe_idem_import('public.stripe_idempotency_keys')}), '0',
	'an operation the extension holds is left alone');

# Bad sources: an error naming the problem, and nothing written.
my $before = sql('SELECT count(*) FROM payments.stripe_idempotency_keys');
sub fails
{
	my ($src, $state, $message, $name) = @_;
	my ($out, $err);
	$node->psql('postgres', qq{\\set VERBOSITY verbose
SELECT payments.stripe_idem_import('$src')}, stdout => \$out, stderr => \$err);
	like($err, qr/ERROR:  $state: $message/, $name);
	is(sql('SELECT count(*) FROM payments.stripe_idempotency_keys'), $before, "$name: nothing written");
}
sql(q{
CREATE TABLE public.no_key (operation_type text, operation_id text, stripe_resource_id text);
INSERT INTO public.no_key VALUES ('checkout:create', 'nk1', 'cs_1');
CREATE TABLE public.bad_rows (LIKE public.stripe_idempotency_keys INCLUDING DEFAULTS);
INSERT INTO public.bad_rows SELECT * FROM public.stripe_idempotency_keys;
UPDATE public.bad_rows SET operation_id = 'new_' || operation_id, stripe_idempotency_key = 'new:' || stripe_idempotency_key;
INSERT INTO public.bad_rows (id, operation_type, operation_id, stripe_idempotency_key)
VALUES (gen_random_uuid(), 'checkout:create', 'has space', 'k:5555');
CREATE TABLE public.stolen_key (LIKE public.stripe_idempotency_keys INCLUDING DEFAULTS);
INSERT INTO public.stolen_key (id, operation_type, operation_id, stripe_idempotency_key, stripe_resource_id)
VALUES (gen_random_uuid(), 'checkout:create', 'other', 'checkout:create:sess_done:1111', 'cs_x');
});
fails('public.no_key', '42703', 'column "stripe_idempotency_key" does not exist in public.no_key',
	'a source without a key column');
fails('public.bad_rows', '22023', 'row \d+ of public.bad_rows breaks the rules of stripe_idempotency_keys',
	'a row whose operation_id breaks the rules');
my ($o, $e);
$node->psql('postgres', q{SELECT payments.stripe_idem_import('public.bad_rows')}, stdout => \$o, stderr => \$e);
like($e, qr/DETAIL:  Operation checkout:create\/has space: operation_id must be 1 to 128 printable ASCII characters/,
	'the detail names the operation and the rule');
fails('public.stolen_key', '23505', 'row 1 of public.stolen_key has a stripe_idempotency_key another operation owns',
	'a key another operation owns');
fails('payments.stripe_idempotency_keys', '22023', 'cannot import', 'the extension\'s own table');

# The extension's table, once dropped, keeps nothing of the function.
$node->stop;
done_testing();
