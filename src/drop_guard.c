/*-------------------------------------------------------------------------
 *
 * drop_guard.c
 *	  DROP EXTENSION stripe_idem refused while Citus keeps the table's keys
 *	  in shards.
 *
 * Dropping the extension drops its table. On a Citus coordinator, Citus's
 * own sql_drop trigger then decides from pg_event_trigger_dropped_objects()
 * what becomes of the table's shards. PostgreSQL 15 reports a table dropped
 * with its extension as neither an original nor a normal drop: Citus leaves
 * the shards, the workers' DROP EXTENSION fails on them, and the whole
 * command rolls back. PostgreSQL 17 reports it as a normal drop: Citus drops
 * every shard on every node, and the keys with them. Whether the keys
 * survived was thus an accident of how a major reports dependent objects.
 *
 * This guard does not depend on it: an event trigger on ddl_command_start
 * for DROP EXTENSION, which reads the statement before anything is dropped
 * and refuses (2BP01) when stripe_idem is among the extensions named and
 * Citus lists shards of the extension's table. It refuses CASCADE as well.
 * The deliberate way out, named in the hint, drops the shards first with
 * citus_drop_all_shards(); the table then has no shard left (Citus keeps it
 * in pg_dist_partition until the table itself is dropped), and DROP
 * EXTENSION goes through on the coordinator and on every worker.
 *
 * Citus is looked for in pg_extension and read through SQL by name, as in
 * src/citus.c: without Citus the guard returns at once and DROP EXTENSION
 * works as it always has. Nothing is cached: it runs once per DROP
 * EXTENSION, and the extension it looks for may have been created again
 * in another schema since the last time.
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"

#define CITUS_EXTNAME "citus"

PG_FUNCTION_INFO_V1(stripe_idem_drop_guard);

/* Whether a DROP EXTENSION statement names this extension. */
static bool
names_this_extension(const DropStmt *stmt)
{
	ListCell   *lc;

	if (stmt->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, stmt->objects)
	{
		if (strcmp(strVal(lfirst(lc)), STRIPE_IDEM_EXTNAME) == 0)
			return true;
	}
	return false;
}

/*
 * How many shards Citus lists on this node for the extension's table, whose
 * schema is returned in *schema (NULL, and 0, when there is no such table).
 * One query reads where the extension is installed (PostgreSQL 15 exports
 * no get_extension_schema()) and the shard list. The caller checked that
 * Citus is installed.
 */
static int64
citus_shard_count(char **schema)
{
	Datum		args[2] = {CStringGetTextDatum(STRIPE_IDEM_EXTNAME),
	CStringGetTextDatum(STRIPE_IDEM_TABLE)};
	Oid			types[2] = {TEXTOID, TEXTOID};
	bool		isnull;
	int64		count = 0;
	MemoryContext caller_cxt = CurrentMemoryContext;
	int			rc;

	*schema = NULL;
	rc = SPI_connect();
	if (rc != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(rc));
	rc = SPI_execute_with_args("SELECT n.nspname::pg_catalog.text,"
							   " (SELECT pg_catalog.count(*) FROM pg_catalog.pg_dist_shard s"
							   "   WHERE s.logicalrelid OPERATOR(pg_catalog.=) c.oid)"
							   " FROM pg_catalog.pg_extension e"
							   " JOIN pg_catalog.pg_namespace n"
							   "  ON n.oid OPERATOR(pg_catalog.=) e.extnamespace"
							   " JOIN pg_catalog.pg_class c"
							   "  ON c.relnamespace OPERATOR(pg_catalog.=) e.extnamespace"
							   " AND c.relname OPERATOR(pg_catalog.=) $2::pg_catalog.name"
							   " WHERE e.extname OPERATOR(pg_catalog.=) $1::pg_catalog.name",
							   2, types, args, NULL, false, 1);
	si_spi_check(rc, SPI_OK_SELECT, "reading the Citus shard list");
	if (SPI_processed == 1)
	{
		count = DatumGetInt64(si_spi_value(0, 2, &isnull));
		if (count > 0)
		{
			/* copied out of SPI's memory, for the caller's error message */
			MemoryContext spi_cxt = MemoryContextSwitchTo(caller_cxt);

			*schema = TextDatumGetCString(si_spi_value(0, 1, &isnull));
			MemoryContextSwitchTo(spi_cxt);
		}
	}
	SPI_finish();
	return count;
}

/*
 * The event trigger function: ddl_command_start, WHEN TAG IN ('DROP
 * EXTENSION'). Returns without a word unless the statement would drop this
 * extension while Citus holds shards of its table.
 */
Datum
stripe_idem_drop_guard(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	char	   *schema;
	char	   *table;
	int64		shards;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("stripe_idem_drop_guard() can only be called as an event trigger")));
	trigdata = (EventTriggerData *) fcinfo->context;

	if (trigdata->parsetree == NULL || !IsA(trigdata->parsetree, DropStmt) ||
		!names_this_extension((DropStmt *) trigdata->parsetree))
		PG_RETURN_VOID();

	if (!OidIsValid(get_extension_oid(STRIPE_IDEM_EXTNAME, true)) ||
		!OidIsValid(get_extension_oid(CITUS_EXTNAME, true)))
		PG_RETURN_VOID();

	shards = citus_shard_count(&schema);
	if (shards == 0)
		PG_RETURN_VOID();

	table = quote_qualified_identifier(schema, STRIPE_IDEM_TABLE);
	ereport(ERROR,
			(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
			 errmsg("cannot drop extension %s while Citus keeps its keys in " INT64_FORMAT " shards",
					STRIPE_IDEM_EXTNAME, shards),
			 errdetail("Table %s is distributed by Citus. Dropping the extension drops the table, and Citus may then drop its shards on every node with every key in them.",
					   table),
			 errhint("To delete every key deliberately, drop the shards first: SELECT citus_drop_all_shards(%s::regclass, %s, %s); then DROP EXTENSION %s.",
					 quote_literal_cstr(table), quote_literal_cstr(schema),
					 quote_literal_cstr(STRIPE_IDEM_TABLE), STRIPE_IDEM_EXTNAME)));
	PG_RETURN_VOID();
}
