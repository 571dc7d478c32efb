/* stripe_idem--1.1--1.2.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION stripe_idem UPDATE TO '1.2'" to load this file. \quit

-- Dropping the extension while Citus distributes its table
--
-- DROP EXTENSION drops the table, and on a Citus coordinator what becomes
-- of the table's shards is then up to Citus, which decides from how the
-- PostgreSQL major reports the dropped table: on 15 the shards stayed and
-- the command failed, on 17 every shard on every node is dropped with the
-- keys in it. This event trigger refuses, before anything is dropped and
-- the same way on every major, a DROP EXTENSION naming stripe_idem while
-- Citus lists shards of its table (2BP01; src/drop_guard.c). The hint names
-- the deliberate way: citus_drop_all_shards() first (docs/CITUS.md).
-- Without Citus it returns at once. Nobody calls the function but the
-- event trigger, which is not checked for EXECUTE: PUBLIC gets nothing.
--
CREATE FUNCTION stripe_idem_drop_guard()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'stripe_idem_drop_guard'
LANGUAGE C;

REVOKE ALL ON FUNCTION stripe_idem_drop_guard() FROM PUBLIC;

CREATE EVENT TRIGGER stripe_idem_drop_guard ON ddl_command_start
	WHEN TAG IN ('DROP EXTENSION')
	EXECUTE FUNCTION @extschema@.stripe_idem_drop_guard();
