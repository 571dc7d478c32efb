-- Workload 3 through the API: a new operation is begun (its row and lease
-- written before the Stripe call), then its result recorded.
\set id random(1000000000, 9000000000000000000)
SELECT stripe_idempotency_key AS key
FROM @SCHEMA@.begin_stripe_idempotency('charge', :id,
	'{"amount": 2000, "currency": "usd", "customer": "cus_Nbench0000001"}') \gset
SELECT recorded
FROM @SCHEMA@.record_stripe_idempotency('charge', :id, :key, 'ch_3Nbench0000000000000001',
	'{"id": "ch_3Nbench0000000000000001", "object": "charge", "amount": 2000, "status": "succeeded"}');
