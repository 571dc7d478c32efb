-- The baselines' table: a copy of the extension's stripe_idempotency_keys
-- (sql/stripe_idem--1.0.sql), column for column and constraint for
-- constraint, so that every variant writes the same rows through the same
-- checks. bench/run.sh compares it with the installed extension's table and
-- stops when they drift apart.
--
--   psql -v schema=NAME -f table.sql
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
	created_at				timestamptz	NOT NULL DEFAULT pg_catalog.statement_timestamp(),
	updated_at				timestamptz	NOT NULL DEFAULT pg_catalog.statement_timestamp(),
	completed_at			timestamptz,
	expires_at				timestamptz	NOT NULL,

	CONSTRAINT stripe_idempotency_keys_pkey
		PRIMARY KEY (operation_type, operation_id),
	CONSTRAINT stripe_idempotency_keys_key_key
		UNIQUE (stripe_idempotency_key),
	CONSTRAINT operation_type_format
		CHECK (operation_type OPERATOR(pg_catalog.~) '^[A-Za-z0-9_.:-]{1,64}$'),
	CONSTRAINT operation_id_format
		CHECK (operation_id OPERATOR(pg_catalog.~) '^[!-~]{1,128}$'),
	CONSTRAINT stripe_idempotency_key_format
		CHECK (stripe_idempotency_key OPERATOR(pg_catalog.~) '^[!-~]{1,255}$'),
	CONSTRAINT request_fingerprint_format
		CHECK (request_fingerprint OPERATOR(pg_catalog.~) '^[0-9a-f]{64}$'),
	CONSTRAINT status_value
		CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['in_progress', 'completed'])),
	CONSTRAINT stripe_resource_id_length
		CHECK (pg_catalog.char_length(stripe_resource_id) OPERATOR(pg_catalog.<=) 255),
	CONSTRAINT attempts_positive
		CHECK (attempts OPERATOR(pg_catalog.>=) 1),
	CONSTRAINT completed_has_result
		CHECK (status OPERATOR(pg_catalog.<>) 'completed'
			   OR stripe_resource_id IS NOT NULL OR response IS NOT NULL),
	CONSTRAINT lease_only_in_progress
		CHECK (locked_until IS NULL OR status OPERATOR(pg_catalog.=) 'in_progress'),
	CONSTRAINT lease_within_expiry
		CHECK (locked_until OPERATOR(pg_catalog.<=) expires_at)
);

CREATE INDEX stripe_idempotency_keys_expires_at_idx
	ON :"schema".stripe_idempotency_keys (expires_at);
