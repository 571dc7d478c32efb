--
-- request_fingerprint is the SHA-256 of request_params' canonical text, as
-- PostgreSQL's own sha256() computes it, for documents of every length
-- from 25 to 325 bytes (across the hash's block and padding boundaries).
--
CREATE EXTENSION IF NOT EXISTS stripe_idem;
TRUNCATE stripe_idempotency_keys;

SELECT count(*) AS begun FROM generate_series(0, 300) n,
	LATERAL begin_stripe_idempotency('fp:test', 'doc-' || n,
		jsonb_build_object('s', repeat('x', n), 'caf' || chr(233), chr(26085))) b
WHERE b.state = 'acquired';

SELECT min(octet_length(p::text)) AS shortest, max(octet_length(p::text)) AS longest,
	count(*) FILTER (WHERE k.request_fingerprint = encode(sha256(convert_to(p::text, 'UTF8')), 'hex')) AS same_as_sha256,
	count(*) AS docs
FROM generate_series(0, 300) n,
	LATERAL (SELECT jsonb_build_object('s', repeat('x', n), 'caf' || chr(233), chr(26085)) AS p) d,
	stripe_idempotency_keys k
WHERE k.operation_type = 'fp:test' AND k.operation_id = 'doc-' || n;

-- The same document spelled differently has the same fingerprint (the
-- lease is live: in_progress); one character more is a mismatch.
SELECT state FROM begin_stripe_idempotency('fp:test', 'doc-3',
	'{"caf\u00e9": "\u65e5",   "s": "xxx"}');
SELECT state FROM begin_stripe_idempotency('fp:test', 'doc-3',
	'{"caf\u00e9": "\u65e5", "s": "xxxx"}');

-- Keys: version 4 UUIDs, all different.
SELECT count(*) AS keys, count(DISTINCT stripe_idempotency_key) AS distinct_keys,
	count(*) FILTER (WHERE split_part(stripe_idempotency_key, ':', 4)
		~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$') AS version_4
FROM stripe_idempotency_keys WHERE operation_type = 'fp:test';
SELECT count(DISTINCT k) AS distinct_new_keys, count(*) AS made
FROM (SELECT new_stripe_idempotency_key('fp:test', 'same') AS k FROM generate_series(1, 1000)) s;

TRUNCATE stripe_idempotency_keys;
