-- The baselines' table, as a team writes it without the extension: the
-- columns the API needs, NOT NULL and the keys, nothing else. No CHECK
-- constraints (the application validates, or nobody does), the database's
-- default collation, keys from gen_random_uuid() and fingerprints from
-- sha256() in the functions that write it (plpgsql_idem.sql). It is the
-- baselines' own table, not a copy of the extension's, so that whatever
-- the extension changes in its table is not handed to them as well.
--
--   psql -v schema=NAME -f plain_table.sql
CREATE SCHEMA :"schema";

CREATE TABLE :"schema".stripe_idempotency_keys (
	operation_type			text		NOT NULL,
	operation_id			text		NOT NULL,
	stripe_idempotency_key	text		NOT NULL,
	request_fingerprint		text,
	status					text		NOT NULL,
	stripe_resource_id		text,
	response				jsonb,
	attempts				integer		NOT NULL DEFAULT 1,
	locked_until			timestamptz,
	created_at				timestamptz	NOT NULL DEFAULT now(),
	updated_at				timestamptz	NOT NULL DEFAULT now(),
	completed_at			timestamptz,
	expires_at				timestamptz	NOT NULL,

	CONSTRAINT stripe_idempotency_keys_pkey
		PRIMARY KEY (operation_type, operation_id),
	CONSTRAINT stripe_idempotency_keys_key_key
		UNIQUE (stripe_idempotency_key)
);

CREATE INDEX stripe_idempotency_keys_expires_at_idx
	ON :"schema".stripe_idempotency_keys (expires_at);
