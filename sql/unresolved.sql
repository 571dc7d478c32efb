--
-- 1.2: an operation whose outcome is unknown is never handed a new key,
-- and no key is leased past the moment Stripe may have forgotten it.
--
-- Time is moved by ageing rows: pg_temp.age() shifts every timestamp of an
-- operation into the past, as if that much time had gone by.
--
\set VERBOSITY sqlstate
CREATE PROCEDURE pg_temp.age(op text, by interval) LANGUAGE sql AS $$
	UPDATE stripe_idempotency_keys
	SET created_at = created_at - by, updated_at = updated_at - by,
	    locked_until = locked_until - by, expires_at = expires_at - by,
	    completed_at = completed_at - by
	WHERE operation_id = op $$;

-- Sections 1 to 5 leave out stripe_idem.settle_time (section 6), the margin
-- kept for requests Stripe acts on after the lease they were sent under.
SET stripe_idem.settle_time = 0;

-- 1. The key window. Stripe keeps a key for at least 24 hours
--    (stripe_idem.key_window). A takeover keeps the key, so it is allowed
--    only while the new lease ends inside the window.
SELECT stripe_idempotency_key AS key_w FROM begin_stripe_idempotency('payment_intent:create', 'pi_w') \gset
CALL pg_temp.age('pi_w', '23 hours 57 minutes');
-- three minutes left: a 90 second lease fits, and expiry stays inside the window
SELECT state, stripe_idempotency_key = :'key_w' AS same_key, attempts
FROM begin_stripe_idempotency('payment_intent:create', 'pi_w');
SELECT expires_at <= created_at + interval '24 hours' AS expiry_inside_window,
       locked_until <= created_at + interval '24 hours' AS lease_inside_window
FROM stripe_idempotency_keys WHERE operation_id = 'pi_w';
-- that caller died too; 89 seconds left now, less than a 90 second lease:
-- unresolved, for every caller, with the stored key and no lease taken
CALL pg_temp.age('pi_w', '91 seconds');
SELECT locked_until AS lease_before FROM stripe_idempotency_keys WHERE operation_id = 'pi_w' \gset
SELECT state, stripe_idempotency_key = :'key_w' AS same_key, retry_after, attempts
FROM begin_stripe_idempotency('payment_intent:create', 'pi_w');
SELECT state, stripe_idempotency_key = :'key_w' AS same_key, attempts
FROM begin_stripe_idempotency('payment_intent:create', 'pi_w');
SELECT locked_until = :'lease_before' AS nothing_written, attempts
FROM stripe_idempotency_keys WHERE operation_id = 'pi_w';
-- a lease that still fits is granted, with the same key
SELECT state, stripe_idempotency_key = :'key_w' AS same_key, attempts
FROM begin_stripe_idempotency('payment_intent:create', 'pi_w', NULL, '30 seconds');
-- and once it lapsed with 28 seconds left, not even that
CALL pg_temp.age('pi_w', '61 seconds');
SELECT state FROM begin_stripe_idempotency('payment_intent:create', 'pi_w', NULL, '30 seconds');
-- check says so too: found, status unresolved
SELECT found, status, stripe_idempotency_key = :'key_w' AS same_key
FROM check_stripe_idempotency('payment_intent:create', 'pi_w');

-- 2. The ttl ran out with the operation in progress (its caller died after
--    Stripe answered, and nobody retried in time). 1.1 answered "acquired"
--    under a new key; the first object may exist, so it is unresolved.
SELECT stripe_idempotency_key AS key_x FROM begin_stripe_idempotency('checkout:create', 'cs_x', '{"cart": 7}', '1 minute', '1 hour') \gset
CALL pg_temp.age('cs_x', '2 hours');
SELECT state, stripe_idempotency_key = :'key_x' AS same_key, attempts
FROM begin_stripe_idempotency('checkout:create', 'cs_x', '{"cart": 7}');
-- other parameters are still a mismatch
SELECT state FROM begin_stripe_idempotency('checkout:create', 'cs_x', '{"cart": 8}');
SELECT found, status FROM check_stripe_idempotency('checkout:create', 'cs_x');
-- cleanup (and the sweeper, with the same rule) keeps it
SELECT cleanup_expired_idempotency_keys() AS deleted;
SELECT count(*) AS kept FROM stripe_idempotency_keys WHERE operation_id = 'cs_x';
-- recording it under another key is refused: that key may hide the first object
SELECT * FROM record_stripe_idempotency('checkout:create', 'cs_x', 'checkout:create:cs_x:other', 'cs_2');
-- a release does nothing to it
SELECT release_stripe_idempotency('checkout:create', 'cs_x', :'key_x');

-- 3. Reconciling. The application asks Stripe about the stored key.
--    (a) Stripe has the object: record it with the stored key; every retry
--        replays it from then on.
SELECT recorded FROM record_stripe_idempotency('checkout:create', 'cs_x', :'key_x', 'cs_test_found',
	'{"id": "cs_test_found"}');
SELECT state, stripe_resource_id, stripe_idempotency_key = :'key_x' AS same_key
FROM begin_stripe_idempotency('checkout:create', 'cs_x', '{"cart": 7}');
--    (b) Stripe has nothing: restart hands out a new key with a lease.
SELECT state, stripe_idempotency_key <> :'key_w' AS new_key, attempts
FROM restart_stripe_idempotency('payment_intent:create', 'pi_w', :'key_w');
SELECT state FROM begin_stripe_idempotency('payment_intent:create', 'pi_w');
-- a second restart with the old key is refused: it was restarted already
SELECT * FROM restart_stripe_idempotency('payment_intent:create', 'pi_w', :'key_w');
-- a completed operation, or one whose key may still be taken over, is never restarted
SELECT * FROM restart_stripe_idempotency('checkout:create', 'cs_x', :'key_x');
SELECT stripe_idempotency_key AS key_y FROM begin_stripe_idempotency('checkout:create', 'cs_y') \gset
SELECT * FROM restart_stripe_idempotency('checkout:create', 'cs_y', :'key_y');
UPDATE stripe_idempotency_keys SET locked_until = NULL WHERE operation_id = 'cs_y';
SELECT * FROM restart_stripe_idempotency('checkout:create', 'cs_y', :'key_y');

-- 4. After stripe_idem.unresolved_retention (30 days) past its expiry an
--    unresolved operation counts as absent: cleanup deletes it, and begin
--    starts it over.
SELECT stripe_idempotency_key AS key_z FROM begin_stripe_idempotency('refund:create', 're_z', NULL, '1 minute', '1 hour') \gset
CALL pg_temp.age('re_z', '29 days');
SELECT state FROM begin_stripe_idempotency('refund:create', 're_z');
CALL pg_temp.age('re_z', '2 days');
SELECT found FROM check_stripe_idempotency('refund:create', 're_z');
SELECT state, stripe_idempotency_key <> :'key_z' AS new_key, attempts
FROM begin_stripe_idempotency('refund:create', 're_z');
-- an expired completed operation counts as absent at once, as before
CALL pg_temp.age('cs_x', '25 hours');
SELECT state, stripe_idempotency_key <> :'key_x' AS new_key
FROM begin_stripe_idempotency('checkout:create', 'cs_x', '{"cart": 7}');

-- 5. A webhook's key never reaches Stripe: its processing and its record
--    commit together, so its outcome is never unknown, and Stripe redelivers
--    an event for up to three days. It passes a key window as long as its
--    ttl, and a redelivery 30 hours after a failed first delivery is
--    processed, with the same key.
SELECT stripe_idempotency_key AS key_evt FROM begin_stripe_idempotency('webhook:checkout.session.completed',
	'evt_1', NULL, '1 minute', '7 days', '7 days') \gset
-- the first delivery's processing failed: its transaction rolled back
BEGIN;
CREATE TEMP TABLE orders (id text);
INSERT INTO orders VALUES ('order for evt_1');
ROLLBACK;
CALL pg_temp.age('evt_1', '30 hours');
SELECT state, stripe_idempotency_key = :'key_evt' AS same_key, attempts
FROM begin_stripe_idempotency('webhook:checkout.session.completed', 'evt_1', NULL, '1 minute', '7 days', '7 days');
BEGIN;
CREATE TEMP TABLE orders (id text);
INSERT INTO orders VALUES ('order for evt_1');
SELECT recorded FROM record_stripe_idempotency('webhook:checkout.session.completed', 'evt_1', :'key_evt',
	NULL, '{"processed": true}', '7 days');
COMMIT;
SELECT state, response FROM begin_stripe_idempotency('webhook:checkout.session.completed', 'evt_1',
	NULL, '1 minute', '7 days', '7 days');
-- with the default 24 hour window the same redelivery would be unresolved
SELECT stripe_idempotency_key AS key_evt2 FROM begin_stripe_idempotency('webhook:checkout.session.completed',
	'evt_2', NULL, '1 minute', '7 days') \gset
CALL pg_temp.age('evt_2', '30 hours');
SELECT state FROM begin_stripe_idempotency('webhook:checkout.session.completed', 'evt_2', NULL, '1 minute', '7 days');

-- 6. The settle time (stripe_idem.settle_time, 10 minutes by default). A
--    request the Stripe SDK gave up on may still be acted on by Stripe a
--    while after its lease ended. So a takeover must leave that much of the
--    key window free as well as its lease...
RESET stripe_idem.settle_time;
SELECT stripe_idempotency_key AS key_s FROM begin_stripe_idempotency('payment_intent:create', 'pi_s') \gset
CALL pg_temp.age('pi_s', '23 hours 49 minutes');
-- 11 minutes left: a 90 second lease and the 10 minutes do not fit, 30 seconds do
SELECT state FROM begin_stripe_idempotency('payment_intent:create', 'pi_s');
SELECT state, attempts FROM begin_stripe_idempotency('payment_intent:create', 'pi_s', NULL, '30 seconds');
--    ...and an operation is answered unresolved (and may be restarted under
--    a new key) only once its last lease ended that long ago: before that,
--    the application could ask Stripe before a late request made the
--    object. Until then it is in_progress, with the time left. A release
--    ends the lease now, so it counts too.
SELECT release_stripe_idempotency('payment_intent:create', 'pi_s', :'key_s', 2) AS released;
SELECT state, stripe_idempotency_key, retry_after > '0' AND retry_after <= '10 minutes' AS settles_within_ten_minutes
FROM begin_stripe_idempotency('payment_intent:create', 'pi_s');
SELECT found, status FROM check_stripe_idempotency('payment_intent:create', 'pi_s');
SELECT * FROM restart_stripe_idempotency('payment_intent:create', 'pi_s', :'key_s');
\set VERBOSITY default
SELECT * FROM restart_stripe_idempotency('payment_intent:create', 'pi_s', :'key_s');
\set VERBOSITY sqlstate
CALL pg_temp.age('pi_s', '10 minutes');
SELECT state, stripe_idempotency_key = :'key_s' AS same_key
FROM begin_stripe_idempotency('payment_intent:create', 'pi_s');
SELECT state, stripe_idempotency_key <> :'key_s' AS new_key, attempts
FROM restart_stripe_idempotency('payment_intent:create', 'pi_s', :'key_s');

DELETE FROM stripe_idempotency_keys;
