-- The baselines' table, as the seed deployment has it (the hand-written
-- version the extension replaces): the columns the API needs, NOT NULL,
-- and the two uniqueness rules the seed has, one operation per
-- (operation_type, operation_id) and one operation per
-- stripe_idempotency_key. Nothing else: no CHECK constraints (the
-- application validates, or nobody does), the database's default
-- collation, keys from gen_random_uuid() and fingerprints from sha256() in
-- the functions that write it (plpgsql_idem.sql).
--
-- No index on expires_at. The seed's cleanup is one DELETE of every
-- expired row, run from a scheduler; between two runs a large share of the
-- table expires, so the planner reads the table sequentially with or
-- without an index, and no other statement of the seed looks rows up by
-- expires_at. An index there would only make every insert and every
-- update of expires_at dearer, which is why the seed has none.
--
-- It is the baselines' own table, not a copy of the extension's, so that
-- whatever the extension changes in its table is not handed to them too.
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
