-- stripe_idem for the checkout and webhook edge functions, and the example's
-- own orders. Replaces the hand-written stripe_idempotency_keys table and
-- functions of the first deployment: the extension brings the table, the
-- functions and the sweeper that expires old keys.

-- In a schema of its own, not exposed through the Data API (PostgREST):
-- nobody but the functions' role should call these. The functions call them
-- schema-qualified (payments.begin_stripe_idempotency), so no search_path
-- is involved, which a transaction pooler would not keep per client anyway.
CREATE SCHEMA IF NOT EXISTS payments;
CREATE EXTENSION IF NOT EXISTS stripe_idem SCHEMA payments;

-- Coming from the first deployment (public.stripe_idempotency_keys with
-- check_stripe_idempotency() and record_stripe_idempotency() in PL/pgSQL):
-- copy its live rows. Recorded results are replayed; a key written before a
-- Stripe call that was never recorded keeps its value and age, so the next
-- begin sends Stripe the same key (or answers "unresolved" once it is older
-- than the key window) instead of creating a second object; expired rows
-- are skipped. Safe to repeat: run it again once no instance of the old
-- functions is serving, to pick up what they wrote meanwhile, then rename
-- the old table and drop the old functions in a later migration (README,
-- "Coming from a hand-written table").
DO $$
BEGIN
	IF to_regclass('public.stripe_idempotency_keys') IS NOT NULL THEN
		RAISE NOTICE 'stripe_idem: copied % rows from public.stripe_idempotency_keys',
			payments.stripe_idem_import('public.stripe_idempotency_keys');
	END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS shop;

-- A signed-in customer's saved cart (id cart_..., user_id and Stripe
-- customer set, written by the app) or a guest's order (id
-- guest_<checkoutSessionId>, email set, written by guest-checkout). Paid when
-- the webhook processes checkout.session.completed.
CREATE TABLE shop.orders (
	id text PRIMARY KEY CHECK (id ~ '^(cart|guest)_[A-Za-z0-9_-]{1,100}$'),
	user_id uuid,                       -- on Supabase: REFERENCES auth.users (id)
	stripe_customer_id text,
	email text,
	currency text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
	items jsonb NOT NULL CHECK (jsonb_typeof(items) = 'array'),
	status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid')),
	checkout_session_id text,
	paid_at timestamptz,
	created_at timestamptz NOT NULL DEFAULT now(),
	CHECK (CASE WHEN id LIKE 'cart\_%' THEN user_id IS NOT NULL AND stripe_customer_id IS NOT NULL AND email IS NULL
	            ELSE user_id IS NULL AND email IS NOT NULL END)
);
CREATE INDEX ON shop.orders (user_id);

-- The Stripe events processed for an order, one row per processing. It stands
-- for side effects no constraint could deduplicate (an email, a warehouse
-- call), which is why it has no unique key: exactly once comes from the
-- webhook's lease, and the tests count these rows to prove it.
CREATE TABLE shop.order_events (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	order_id text NOT NULL REFERENCES shop.orders (id),
	stripe_event_id text NOT NULL,
	event_type text NOT NULL,
	processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON shop.order_events (order_id);

-- The functions' privileges, on a role of their own. NOLOGIN: the login role
-- and its password are made per environment, outside migrations:
--   CREATE ROLE checkout_fn LOGIN PASSWORD '…' IN ROLE edge_checkout;
-- and the secret CHECKOUT_DB_URL points the functions at it (the pooler,
-- port 6543, as that role).
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'edge_checkout') THEN
		CREATE ROLE edge_checkout NOLOGIN;
	END IF;
END
$$;

GRANT USAGE ON SCHEMA payments, shop TO edge_checkout;
-- The extension's functions run with its owner's rights (SECURITY DEFINER)
-- and none is executable by PUBLIC: the role gets EXECUTE on the calls the
-- functions make and no privilege on payments.stripe_idempotency_keys, so
-- it cannot write a row by hand (a forged "completed" every retry would
-- replay). Expiry is the sweeper's job, not the role's.
GRANT EXECUTE ON FUNCTION
	payments.begin_stripe_idempotency(text, text, jsonb, interval, interval, interval),
	payments.check_stripe_idempotency(text, text),
	payments.record_stripe_idempotency(text, text, text, text, jsonb, interval),
	payments.release_stripe_idempotency(text, text, text, integer),
	payments.restart_stripe_idempotency(text, text, text, interval, interval, interval),
	payments.new_stripe_idempotency_key(text, text)
	TO edge_checkout;

-- Load saved carts, write guest orders, mark orders paid.
GRANT SELECT, INSERT, UPDATE ON shop.orders TO edge_checkout;
GRANT INSERT ON shop.order_events TO edge_checkout;
