/*-------------------------------------------------------------------------
 *
 * begin.c
 *	  begin_stripe_idempotency: take the lease on an operation before
 *	  calling Stripe, or learn why not.
 *
 * The key is stored and the lease taken *before* the Stripe call, so that:
 *	- of any number of concurrent callers exactly one gets "acquired": the
 *	  primary key decides between inserts, and a conditional UPDATE between
 *	  takeovers;
 *	- a caller that dies after Stripe answered leaves its key behind, and
 *	  the next caller, once the lease has run out, gets the SAME key, so
 *	  Stripe replays the first call instead of creating a second object.
 *
 * An existing operation is the common case for retries, replays and
 * contention, so begin reads the row first and answers from that one read
 * (completed, in_progress, mismatch), writing only to take over a lapsed
 * lease or replace an expired row; only when there is no row does it try
 * the INSERT. Two callers that both find no row still meet at the primary
 * key: the INSERT is ON CONFLICT DO NOTHING, so the second waits for the
 * first to commit, inserts nothing, and reads the row again. Under
 * REPEATABLE READ and SERIALIZABLE the INSERT comes first, as the read
 * would answer from the transaction's snapshot: meeting a row committed
 * after it must fail with 40001 instead (test/t/208_snapshot_isolation.pl).
 *
 * Callers must commit (run it as its own statement in autocommit) before
 * talking to Stripe; an uncommitted row is invisible to everybody else and
 * makes them wait on the primary key instead of seeing "in_progress".
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(begin_stripe_idempotency);

/*
 * How many times to go round insert / read / conditional update when other
 * callers keep changing the row underneath. Each round ends as soon as the
 * row is seen in a stable state, so more than two means heavy churn on one
 * operation (say, a sweep deleting it between our statements).
 */
#define SI_BEGIN_ROUNDS 5

/* Result columns. */
enum
{
	BEGIN_STATE,
	BEGIN_KEY,
	BEGIN_RESOURCE_ID,
	BEGIN_RESPONSE,
	BEGIN_RETRY_AFTER,
	BEGIN_ATTEMPTS,
	BEGIN_NCOLS
};

/*
 * The request's fingerprint and a fresh key, made only on the paths that
 * need them: a replay or a conflict needs neither (unless the stored row
 * has a fingerprint to compare with).
 */
typedef struct BeginArgs
{
	Jsonb	   *params;
	Datum		args[6];		/* type, id, key, fingerprint, lease, ttl */
	char		nulls[7];		/* for these, and for the INSERT's seven */
	bool		have_fingerprint;
	bool		have_key;
} BeginArgs;

static void
need_fingerprint(BeginArgs *b)
{
	if (b->have_fingerprint)
		return;
	if (b->params != NULL)
		b->args[3] = PointerGetDatum(si_fingerprint(b->params));
	else
		b->nulls[3] = 'n';
	b->have_fingerprint = true;
}

static void
need_new_key(BeginArgs *b)
{
	need_fingerprint(b);
	if (b->have_key)
		return;
	b->args[2] = PointerGetDatum(si_make_key((text *) DatumGetPointer(b->args[0]),
											 (text *) DatumGetPointer(b->args[1])));
	b->have_key = true;
}

Datum
begin_stripe_idempotency(PG_FUNCTION_ARGS)
{
	text	   *operation_type = si_required_text(fcinfo, 0, "operation_type");
	text	   *operation_id = si_required_text(fcinfo, 1, "operation_id");
	Interval   *ttl;
	Interval   *lease;
	BeginArgs	b;
	Datum		values[BEGIN_NCOLS];
	bool		isnull[BEGIN_NCOLS];
	SiStat		outcome = SI_STAT_ACQUIRED;
	bool		insert_first = IsolationUsesXactSnapshot();
	int			round;
	int			rc;

	/* Everything is checked before anything is read or written. */
	si_check_operation_type(operation_type);
	si_check_operation_id(operation_id);
	ttl = si_optional_interval(fcinfo, 4, "ttl", si_default_ttl_secs,
							   (int64) SI_MAX_SECONDS * USECS_PER_SEC, "365 days");
	lease = si_optional_interval(fcinfo, 3, "lease", si_default_lease_secs,
								 ttl->time, "the ttl");

	memset(isnull, true, sizeof(isnull));
	memset(&b, 0, sizeof(b));
	memset(b.nulls, ' ', sizeof(b.nulls));
	b.params = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	b.args[0] = PointerGetDatum(operation_type);
	b.args[1] = PointerGetDatum(operation_id);
	b.args[4] = IntervalPGetDatum(lease);
	b.args[5] = IntervalPGetDatum(ttl);

	SPI_connect();

	for (round = 0;; round++)
	{
		SiRow		row;
		bool		have_row = false;

		CHECK_FOR_INTERRUPTS();
		if (round == SI_BEGIN_ROUNDS)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not begin operation because it kept changing concurrently"),
					 errdetail("The row was changed by other sessions %d times in a row.",
							   SI_BEGIN_ROUNDS),
					 errhint("Retry the call.")));

		if (!insert_first)
			have_row = si_fetch_row(b.args[0], b.args[1], &row);

		if (!have_row)
		{
			/*
			 * A new operation: one INSERT. "now" is statement_timestamp(),
			 * as in every other statement (plans.c); computed here once.
			 */
			TimestampTz stmt_now = GetCurrentStatementStartTimestamp();
			Datum		iargs[7];

			need_new_key(&b);
			iargs[0] = b.args[0];
			iargs[1] = b.args[1];
			iargs[2] = b.args[2];
			iargs[3] = b.args[3];
			iargs[4] = TimestampTzGetDatum(stmt_now);
			iargs[5] = DirectFunctionCall2(timestamptz_pl_interval, iargs[4], b.args[4]);
			iargs[6] = DirectFunctionCall2(timestamptz_pl_interval, iargs[4], b.args[5]);
			rc = SPI_execute_plan(si_plan(SI_PLAN_INSERT_ACQUIRE), iargs, b.nulls, false, 0);
			si_spi_check(rc, SPI_OK_INSERT, "inserting the operation");
			if (SPI_processed == 1)
			{
				values[BEGIN_KEY] = b.args[2];
				values[BEGIN_ATTEMPTS] = Int32GetDatum(1);
				isnull[BEGIN_KEY] = isnull[BEGIN_ATTEMPTS] = false;
				break;
			}
			/* somebody else's row: committed now, or we would still wait */
			if (!si_fetch_row(b.args[0], b.args[1], &row))
				continue;		/* deleted since the insert saw it */
		}

		if (row.expired)
		{
			/* Expired counts as absent: start over under a new key. */
			need_new_key(&b);
			rc = SPI_execute_plan(si_plan(SI_PLAN_REPLACE_EXPIRED), b.args, b.nulls, false, 0);
			si_spi_check(rc, SPI_OK_UPDATE, "replacing the expired operation");
			if (SPI_processed == 1)
			{
				values[BEGIN_KEY] = b.args[2];
				values[BEGIN_ATTEMPTS] = Int32GetDatum(1);
				isnull[BEGIN_KEY] = isnull[BEGIN_ATTEMPTS] = false;
				break;
			}
			continue;
		}

		/*
		 * The same operation id with other parameters is a client bug (or a
		 * changed cart): replaying the first result would be wrong, and so
		 * would a second Stripe call. Nothing is returned but the verdict.
		 * Without a fingerprint on either side there is nothing to compare.
		 */
		if (b.params != NULL && !row.fingerprint_null)
		{
			need_fingerprint(&b);
			if (!si_text_equal(b.args[3], row.fingerprint))
			{
				outcome = SI_STAT_MISMATCHES;
				break;
			}
		}

		if (row.completed)
		{
			values[BEGIN_KEY] = row.key;
			values[BEGIN_RESOURCE_ID] = row.resource_id;
			values[BEGIN_RESPONSE] = row.response;
			values[BEGIN_ATTEMPTS] = Int32GetDatum(row.attempts);
			isnull[BEGIN_KEY] = isnull[BEGIN_ATTEMPTS] = false;
			isnull[BEGIN_RESOURCE_ID] = row.resource_id_null;
			isnull[BEGIN_RESPONSE] = row.response_null;
			outcome = SI_STAT_COMPLETED_REPLAYS;
			break;
		}

		if (row.lease_live)
		{
			/*
			 * Somebody holds it. The key is withheld: whoever reads
			 * "in_progress" must not call Stripe, so it gets nothing to call
			 * Stripe with.
			 */
			values[BEGIN_RETRY_AFTER] = row.lease_left;
			values[BEGIN_ATTEMPTS] = Int32GetDatum(row.attempts);
			isnull[BEGIN_RETRY_AFTER] = row.lease_left_null;
			isnull[BEGIN_ATTEMPTS] = false;
			outcome = SI_STAT_IN_PROGRESS_CONFLICTS;
			break;
		}

		/* Lease ran out or was released: take over, keeping the key. */
		{
			Datum		targs[4] = {b.args[0], b.args[1], row.key, b.args[4]};

			rc = SPI_execute_plan(si_plan(SI_PLAN_TAKEOVER), targs, NULL, false, 0);
			si_spi_check(rc, SPI_OK_UPDATE_RETURNING, "taking over the operation");
			if (SPI_processed == 1)
			{
				bool		n;

				values[BEGIN_KEY] = row.key;
				values[BEGIN_ATTEMPTS] = si_spi_value(0, 1, &n);
				isnull[BEGIN_KEY] = isnull[BEGIN_ATTEMPTS] = false;
				break;
			}
		}
	}

	values[BEGIN_STATE] = CStringGetTextDatum(outcome == SI_STAT_ACQUIRED ? "acquired" :
											  outcome == SI_STAT_COMPLETED_REPLAYS ? "completed" :
											  outcome == SI_STAT_IN_PROGRESS_CONFLICTS ? "in_progress" :
											  "mismatch");
	isnull[BEGIN_STATE] = false;
	si_return_row(fcinfo, values, isnull);

	SPI_finish();
	si_stat_add(outcome, 1);

	/*
	 * An acquired key must survive a crash once the caller has seen it: if
	 * it were lost, the retry would get a new key and Stripe would create a
	 * second object. So the commit is synchronous even when the session
	 * runs with synchronous_commit = off (as CREATE DATABASE forces it).
	 */
	if (outcome == SI_STAT_ACQUIRED)
		ForceSyncCommit();

	return (Datum) 0;
}
