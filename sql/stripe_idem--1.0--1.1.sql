/* stripe_idem--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION stripe_idem UPDATE TO '1.1'" to load this file. \quit

--
-- 1.1 keeps the API of 1.0 and adds stripe_idem_wake_sweeper(hurry), for
-- the pauses a pass now makes between its batches (a new C symbol: the 1.0
-- function keeps its own). The table's ten CHECK constraints become one
-- (the executor rebuilt all ten expressions for every INSERT and UPDATE
-- statement). The rules are the same, now in stripe_idem_row_is_valid
-- (src/row_rules.c), a function of the whole row. Adding the constraint
-- checks every existing row, in the same ALTER TABLE that drops the old
-- ones, so the table is never without its rules; a row the old
-- constraints let through is never refused by the new one.
--
CREATE FUNCTION stripe_idem_row_is_valid(stripe_idempotency_keys)
RETURNS boolean
AS 'MODULE_PATHNAME', 'stripe_idem_row_is_valid'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION stripe_idem_row_is_valid(stripe_idempotency_keys) IS
	'The rules of a stripe_idempotency_keys row, for its CHECK constraint (stripe_idem)';

ALTER TABLE stripe_idempotency_keys
	DROP CONSTRAINT operation_type_format,
	DROP CONSTRAINT operation_id_format,
	DROP CONSTRAINT stripe_idempotency_key_format,
	DROP CONSTRAINT request_fingerprint_format,
	DROP CONSTRAINT status_value,
	DROP CONSTRAINT stripe_resource_id_length,
	DROP CONSTRAINT attempts_positive,
	DROP CONSTRAINT completed_has_result,
	DROP CONSTRAINT lease_only_in_progress,
	DROP CONSTRAINT lease_within_expiry,
	ADD CONSTRAINT stripe_idempotency_keys_rules
		CHECK (@extschema@.stripe_idem_row_is_valid(stripe_idempotency_keys));

-- The same with hurry: the pass it starts skips the pauses between batches
-- (stripe_idem.sweep_batch_delay), and so does a pass already running.
-- A second function, not a default argument, so that grants made on the
-- one above are kept by ALTER EXTENSION UPDATE.
CREATE FUNCTION stripe_idem_wake_sweeper(hurry boolean)
RETURNS boolean
AS 'MODULE_PATHNAME', 'stripe_idem_wake_sweeper_1_1'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

REVOKE EXECUTE ON FUNCTION stripe_idem_wake_sweeper(boolean) FROM PUBLIC;
