/*-------------------------------------------------------------------------
 *
 * citus.c
 *	  The table distributed by Citus: which shards this node holds, and
 *	  cleanup on the other nodes.
 *
 * Citus refuses FOR UPDATE in a query that spans shards, so expired keys
 * are deleted shard by shard, on the node that holds each shard, with the
 * same statement as on a single node (src/plans.c) run against the shard
 * itself. Everything about Citus is read through SQL, by name, and only
 * once pg_extension shows citus installed in this database: the library
 * neither links against Citus nor needs it. The queries are not kept as
 * plans: they run once per cleanup batch at most, and the Citus catalogs
 * they read may be created or dropped at any time.
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"

#define CITUS_EXTNAME "citus"

/* Whether this node's Citus metadata records the table as distributed. */
static bool
table_is_distributed(Oid table_oid)
{
	Datum		args[1] = {ObjectIdGetDatum(table_oid)};
	Oid			types[1] = {OIDOID};
	bool		isnull;
	int			rc;

	rc = SPI_execute_with_args("SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition"
							   " WHERE logicalrelid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass)",
							   1, types, args, NULL, true, 1);
	si_spi_check(rc, SPI_OK_SELECT, "reading the Citus metadata");
	return DatumGetBool(si_spi_value(0, 1, &isnull));
}

/*
 * The schema-qualified names of the table's shards placed on this node, or
 * NIL. *distributed says whether the table is distributed at all (false
 * without Citus). The caller is connected to SPI.
 */
List *
si_citus_local_shards(bool *distributed)
{
	Oid			table_oid;
	const char *schema = si_table_identity(&table_oid);
	Datum		args[1] = {ObjectIdGetDatum(table_oid)};
	Oid			types[1] = {OIDOID};
	List	   *shards = NIL;
	uint64		i;
	int			rc;

	*distributed = false;
	if (!OidIsValid(get_extension_oid(CITUS_EXTNAME, true)) ||
		!table_is_distributed(table_oid))
		return NIL;
	*distributed = true;

	rc = SPI_execute_with_args("SELECT s.shardid FROM pg_catalog.pg_dist_shard s"
							   " JOIN pg_catalog.pg_dist_placement p"
							   "  ON p.shardid OPERATOR(pg_catalog.=) s.shardid"
							   " JOIN pg_catalog.pg_dist_local_group g"
							   "  ON p.groupid OPERATOR(pg_catalog.=) g.groupid"
							   " WHERE s.logicalrelid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass"
							   " ORDER BY s.shardid",
							   1, types, args, NULL, true, 0);
	si_spi_check(rc, SPI_OK_SELECT, "listing the shards on this node");

	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		shardid = DatumGetInt64(si_spi_value((int) i, 1, &isnull));
		char		relname[NAMEDATALEN + 32];

		/* Citus names a shard <table>_<shardid>, in the table's schema. */
		snprintf(relname, sizeof(relname), "%s_" INT64_FORMAT,
				 STRIPE_IDEM_TABLE, shardid);
		shards = lappend(shards, quote_qualified_identifier(schema, relname));
	}
	return shards;
}

/* Whether this node is the Citus coordinator. The caller checked for Citus. */
bool
si_citus_is_coordinator(void)
{
	bool		isnull;
	int			rc;

	rc = SPI_execute("SELECT pg_catalog.citus_is_coordinator()", true, 1);
	si_spi_check(rc, SPI_OK_SELECT, "asking Citus for this node's role");
	return DatumGetBool(si_spi_value(0, 1, &isnull));
}

/*
 * Run cleanup_expired_idempotency_keys(batch_size) on every worker node,
 * where it deletes from the shards that node holds, and return how many
 * rows they deleted together. Citus runs each in its own transaction on
 * its node, committed there whatever becomes of the caller's. A node that
 * cannot be reached or fails raises an error naming it (the others have
 * already committed).
 */
int64
si_citus_cleanup_workers(int batch_size)
{
	Oid			table_oid;
	const char *schema = si_table_identity(&table_oid);
	StringInfoData command;
	Datum		args[1];
	Oid			types[1] = {TEXTOID};
	int64		total = 0;
	uint64		i;
	int			rc;

	/*
	 * run_command_on_workers() takes the command as text and has no way to
	 * pass parameters, so the command is spelled out. Nothing in it comes
	 * from a caller's text: the schema is read from the extension's catalog
	 * entry and quoted, the batch size is an integer already checked.
	 */
	initStringInfo(&command);
	appendStringInfo(&command, "SELECT %s(%d)",
					 quote_qualified_identifier(schema, "cleanup_expired_idempotency_keys"),
					 batch_size);
	args[0] = CStringGetTextDatum(command.data);

	rc = SPI_execute_with_args("SELECT nodename, nodeport, success, result"
							   " FROM pg_catalog.run_command_on_workers($1)",
							   1, types, args, NULL, false, 0);
	si_spi_check(rc, SPI_OK_SELECT, "running the cleanup on the worker nodes");

	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		name = si_spi_value((int) i, 1, &isnull);
		int32		port = DatumGetInt32(si_spi_value((int) i, 2, &isnull));
		bool		success = DatumGetBool(si_spi_value((int) i, 3, &isnull));
		Datum		result = si_spi_value((int) i, 4, &isnull);
		char	   *answer = isnull ? "" : TextDatumGetCString(result);

		if (!success)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_EXCEPTION),
					 errmsg("deleting expired keys failed on node %s:%d",
							TextDatumGetCString(name), port),
					 errdetail("The node answered: %s", answer),
					 errhint("Rows deleted on the other nodes stay deleted; run the cleanup again once the node is back.")));
		total += pg_strtoint64(answer);
	}
	return total;
}
