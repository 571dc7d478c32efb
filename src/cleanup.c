/*-------------------------------------------------------------------------
 *
 * cleanup.c
 *	  Deleting expired keys: cleanup_expired_idempotency_keys and the batch
 *	  the background sweeper runs in each of its transactions.
 *
 * The rule, the same for both: a row goes when it has expired and holds no
 * live lease, and is either completed or has been expired for longer than
 * stripe_idem.unresolved_retention (an expired in_progress row is an
 * operation whose outcome is unknown: begin answers "unresolved" for it,
 * and deleting it would let the next begin hand out a new key). Rows
 * locked by other sessions are skipped, never waited for.
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

#include "miscadmin.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(cleanup_expired_idempotency_keys);

/*
 * One batch over the shards of a distributed table held by this node: at
 * most batch_size rows in all, shard after shard, so that a full batch
 * still means "there may be more". The lower bound is not used: it belongs
 * to one index, and each shard has its own.
 */
static int64
cleanup_shards_batch(List *shards, int batch_size)
{
	ListCell   *lc;
	int64		deleted = 0;

	foreach(lc, shards)
	{
		Datum		args[3];
		bool		isnull;
		int			rc;

		args[0] = Int32GetDatum(batch_size - (int) deleted);
		args[1] = TimestampTzGetDatum(DT_NOBEGIN);
		args[2] = TimestampTzGetDatum(si_retention_cutoff());
		rc = si_execute_on(SI_PLAN_CLEANUP_BATCH, (const char *) lfirst(lc), args, 1);
		si_spi_check(rc, SPI_OK_SELECT, "deleting expired keys from a shard");
		deleted += DatumGetInt64(si_spi_value(0, 1, &isnull));
		if (deleted >= batch_size)
			break;
	}
	return deleted;
}

/*
 * Delete at most batch_size expired rows whose expires_at is at least
 * *lower_bound, oldest first, and advance *lower_bound to the newest
 * expires_at deleted. Returns the number of rows deleted. The caller is
 * connected to SPI, inside a transaction with a snapshot.
 */
int64
si_cleanup_batch(int batch_size, TimestampTz *lower_bound)
{
	Datum		args[3] = {Int32GetDatum(batch_size), TimestampTzGetDatum(*lower_bound),
	TimestampTzGetDatum(si_retention_cutoff())};
	bool		isnull;
	bool		distributed;
	int64		deleted;
	Datum		newest;
	List	   *shards;
	int			rc;

	shards = si_citus_local_shards(&distributed);
	if (distributed)
		return cleanup_shards_batch(shards, batch_size);

	rc = SPI_execute_plan(si_plan(SI_PLAN_CLEANUP_BATCH), args, NULL, false, 1);
	si_spi_check(rc, SPI_OK_SELECT, "deleting expired keys");

	deleted = DatumGetInt64(si_spi_value(0, 1, &isnull));
	newest = si_spi_value(0, 2, &isnull);
	if (!isnull)
		*lower_bound = DatumGetTimestampTz(newest);
	return deleted;
}

/*
 * On the coordinator of a distributed table, the rows the workers deleted
 * from their shards; 0 anywhere else.
 */
static int64
coordinator_cleanup(int batch_size)
{
	bool		distributed;

	(void) si_citus_local_shards(&distributed);
	if (!distributed || !si_citus_is_coordinator())
		return 0;
	return si_citus_cleanup_workers(batch_size);
}

/*
 * cleanup_expired_idempotency_keys(batch_size integer DEFAULT 10000) RETURNS bigint
 *
 * Runs in the caller's transaction, batch after batch until a batch comes
 * back short (on the Citus coordinator the workers' part runs in their own
 * transactions, see citus.c), so the statement's memory stays bounded by one batch. The
 * sweeper commits between batches instead; this function is for callers
 * without the preloaded worker, or who want to clean up now.
 */
Datum
cleanup_expired_idempotency_keys(PG_FUNCTION_ARGS)
{
	int32		batch_size;
	TimestampTz lower_bound = DT_NOBEGIN;
	int64		total = 0;
	int64		distributed_rows;
	int64		deleted;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("batch_size must not be null")));
	batch_size = PG_GETARG_INT32(0);
	if (batch_size < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be at least 1"),
				 errdetail("batch_size was %d.", batch_size)));

	SPI_connect();
	do
	{
		CHECK_FOR_INTERRUPTS();
		deleted = si_cleanup_batch(batch_size, &lower_bound);
		total += deleted;
	} while (deleted == batch_size);

	/*
	 * On the Citus coordinator the shards live on the workers: each deletes
	 * from its own (above, the coordinator did so for any it holds). The
	 * worker counters count those rows; this node's count only its own.
	 */
	distributed_rows = coordinator_cleanup(batch_size);
	SPI_finish();

	si_stat_add(SI_STAT_ROWS_SWEPT, total);
	PG_RETURN_INT64(total + distributed_rows);
}
