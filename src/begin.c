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
 *	  Stripe replays the first call instead of creating a second object;
 *	- but only while Stripe surely remembers the key: a takeover whose
 *	  lease would end after created_at + key window, or an operation whose
 *	  ttl ran out before anybody recorded it, is answered "unresolved" with
 *	  the stored key and no lease. Whether Stripe acted on that key is
 *	  unknown, and a new key could create a second object, so nobody gets
 *	  one until the application has asked Stripe (restart.c, record.c).
 *
 * The row is read first, through the primary key without the executor
 * (result.c, si_read_operation): a replay, a live lease, a mismatch or an
 * unresolved operation is answered from it and nothing is written, and no
 * key is made. Only when there is no row is the new operation inserted
 * (plans.c, SI_PLAN_BEGIN), and only to take over a lapsed lease or replace
 * an absent row is an existing one written. Two callers that both insert
 * meet at the primary key: ON CONFLICT DO NOTHING makes the second wait for
 * the first to commit and insert nothing, and the second reads the row
 * again with a new snapshot. Under REPEATABLE READ and SERIALIZABLE that
 * conflict fails with 40001 instead (test/t/208_snapshot_isolation.pl).
 *
 * Callers must commit (run it as its own statement in autocommit) before
 * talking to Stripe; an uncommitted row is invisible to everybody else and
 * makes them wait on the primary key instead of seeing "in_progress", and
 * a rollback would lose the key. From 1.2 begin refuses to run where its
 * lease could still be rolled back (validate.c).
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

/* 1.0 and 1.1: no key_window argument, no refusal in a transaction block */
PG_FUNCTION_INFO_V1(begin_stripe_idempotency);
PG_FUNCTION_INFO_V1(begin_stripe_idempotency_1_2);

/*
 * How many times to go round insert-or-read / conditional update when
 * other callers keep changing the row underneath. Each round ends as soon
 * as the row is seen in a stable state, so more than two means heavy churn
 * on one operation (say, a sweep deleting it between our statements).
 */
#define SI_BEGIN_ROUNDS 5

/* Result columns, shared with restart.c. */
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

typedef enum BeginState
{
	BEGIN_ACQUIRED,
	BEGIN_COMPLETED,
	BEGIN_IN_PROGRESS,
	BEGIN_MISMATCH,
	BEGIN_UNRESOLVED
} BeginState;

static const char *const state_names[] = {
	[BEGIN_ACQUIRED] = "acquired",
	[BEGIN_COMPLETED] = "completed",
	[BEGIN_IN_PROGRESS] = "in_progress",
	[BEGIN_MISMATCH] = "mismatch",
	[BEGIN_UNRESOLVED] = "unresolved",
};

/*
 * The request's fingerprint and a fresh key, each made only when it is
 * stored or compared.
 */
typedef struct BeginArgs
{
	Jsonb	   *params;
	Datum		args[7];		/* type, id, key, fingerprint, lease, ttl,
								 * retention cutoff */
	char		nulls[7];		/* for these, and for the insert's seven */
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

/*
 * Read the operation's row, or insert the operation if there is none.
 * Returns true with the row in *row when there is one; true with *inserted
 * when the insert went in; false when neither (another caller inserted the
 * row after it was read: read it again).
 */
static bool
read_or_insert(BeginArgs *b, SiRow *row, bool *inserted)
{
	TimestampTz stmt_now;
	Datum		iargs[7];
	int			rc;

	*inserted = false;
	if (si_read_operation(b->args[0], b->args[1], row))
		return true;

	need_new_key(b);
	stmt_now = GetCurrentStatementStartTimestamp();
	iargs[0] = b->args[0];
	iargs[1] = b->args[1];
	iargs[2] = b->args[2];
	iargs[3] = b->args[3];
	iargs[4] = TimestampTzGetDatum(stmt_now);
	iargs[5] = DirectFunctionCall2(timestamptz_pl_interval, iargs[4], b->args[4]);
	iargs[6] = DirectFunctionCall2(timestamptz_pl_interval, iargs[4], b->args[5]);
	rc = SPI_execute_plan(si_plan(SI_PLAN_BEGIN), iargs, b->nulls, false, 0);
	si_spi_check(rc, SPI_OK_INSERT, "inserting the operation");
	*inserted = SPI_processed == 1;
	return *inserted;
}

static Datum
begin_operation(FunctionCallInfo fcinfo, bool api_1_2)
{
	text	   *operation_type;
	text	   *operation_id;
	Interval   *ttl;
	Interval   *lease;
	int64		window_usecs;
	int64		lease_usecs;
	BeginArgs	b;
	Datum		values[BEGIN_NCOLS];
	bool		isnull[BEGIN_NCOLS];
	BeginState	state = BEGIN_ACQUIRED;
	int			round;
	int			rc;

	/* Everything is checked before anything is read or written. */
	if (api_1_2)
		si_refuse_in_transaction_block("begin_stripe_idempotency");
	operation_type = si_required_text(fcinfo, 0, "operation_type");
	operation_id = si_required_text(fcinfo, 1, "operation_id");
	si_check_operation_type(operation_type);
	si_check_operation_id(operation_id);
	si_check_size(fcinfo, 2, "request_params", si_max_request_params_bytes,
				  "stripe_idem.max_request_params_size");
	ttl = si_optional_interval(fcinfo, 4, "ttl", si_default_ttl_secs,
							   (int64) SI_MAX_SECONDS * USECS_PER_SEC, "365 days");
	if (api_1_2)
		window_usecs = si_optional_interval(fcinfo, 5, "key_window", si_key_window_secs,
											(int64) SI_MAX_SECONDS * USECS_PER_SEC,
											"365 days")->time;
	else
		window_usecs = (int64) si_key_window_secs * USECS_PER_SEC;
	if (window_usecs < ttl->time)
		lease = si_optional_interval(fcinfo, 3, "lease", si_default_lease_secs,
									 window_usecs, "the key_window");
	else
		lease = si_optional_interval(fcinfo, 3, "lease", si_default_lease_secs,
									 ttl->time, "the ttl");
	lease_usecs = lease->time;

	memset(isnull, true, sizeof(isnull));
	memset(&b, 0, sizeof(b));
	memset(b.nulls, ' ', sizeof(b.nulls));
	b.params = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	b.args[0] = PointerGetDatum(operation_type);
	b.args[1] = PointerGetDatum(operation_id);
	b.args[4] = IntervalPGetDatum(lease);
	b.args[5] = IntervalPGetDatum(ttl);
	b.args[6] = TimestampTzGetDatum(si_retention_cutoff());

	SPI_connect();

	for (round = 0;; round++)
	{
		SiRow		row;
		bool		inserted;

		CHECK_FOR_INTERRUPTS();
		if (round == SI_BEGIN_ROUNDS)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not begin operation because it kept changing concurrently"),
					 errdetail("The row was changed by other sessions %d times in a row.",
							   SI_BEGIN_ROUNDS),
					 errhint("Retry the call.")));

		if (!read_or_insert(&b, &row, &inserted))
			continue;			/* inserted meanwhile by another caller */
		if (inserted)
		{
			values[BEGIN_KEY] = b.args[2];
			values[BEGIN_ATTEMPTS] = Int32GetDatum(1);
			isnull[BEGIN_KEY] = isnull[BEGIN_ATTEMPTS] = false;
			break;
		}

		if (row.absent)
		{
			/* As good as gone: start over under a new key. */
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
				state = BEGIN_MISMATCH;
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
			state = BEGIN_COMPLETED;
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
			state = BEGIN_IN_PROGRESS;
			break;
		}

		if (si_row_unresolved(&row, lease_usecs, window_usecs) && !row.settled)
		{
			/*
			 * Unresolved, but a request sent under the last lease may still
			 * be acted on by Stripe: asking Stripe now could find nothing
			 * that is made a moment later. Nobody gets the key until the
			 * settle time has passed.
			 */
			TimestampTz settled_at = row.lease_end +
				(int64) si_settle_secs * USECS_PER_SEC;

			values[BEGIN_RETRY_AFTER] =
				DirectFunctionCall2(timestamp_mi, TimestampTzGetDatum(settled_at),
									TimestampTzGetDatum(GetCurrentStatementStartTimestamp()));
			values[BEGIN_ATTEMPTS] = Int32GetDatum(row.attempts);
			isnull[BEGIN_RETRY_AFTER] = isnull[BEGIN_ATTEMPTS] = false;
			state = BEGIN_IN_PROGRESS;
			break;
		}

		if (si_row_unresolved(&row, lease_usecs, window_usecs))
		{
			/*
			 * The key is returned so that the application can ask Stripe
			 * what became of it; no lease is taken and nothing is written.
			 */
			values[BEGIN_KEY] = row.key;
			values[BEGIN_ATTEMPTS] = Int32GetDatum(row.attempts);
			isnull[BEGIN_KEY] = isnull[BEGIN_ATTEMPTS] = false;
			state = BEGIN_UNRESOLVED;
			break;
		}

		/* Lease ran out or was released: take over, keeping the key. */
		{
			Datum		targs[5] = {b.args[0], b.args[1], row.key, b.args[4],
			TimestampTzGetDatum(si_takeover_cutoff(lease_usecs, window_usecs))};

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

	values[BEGIN_STATE] = CStringGetTextDatum(state_names[state]);
	isnull[BEGIN_STATE] = false;
	si_return_row(fcinfo, values, isnull);

	SPI_finish();
	switch (state)
	{
		case BEGIN_ACQUIRED:
			si_stat_add(SI_STAT_ACQUIRED, 1);

			/*
			 * An acquired key must survive a crash once the caller has seen
			 * it: if it were lost, the retry would get a new key and Stripe
			 * would create a second object. So the commit is synchronous
			 * even when the session runs with synchronous_commit = off (as
			 * CREATE DATABASE forces it).
			 */
			ForceSyncCommit();
			break;
		case BEGIN_COMPLETED:
			si_stat_add(SI_STAT_COMPLETED_REPLAYS, 1);
			break;
		case BEGIN_IN_PROGRESS:
			si_stat_add(SI_STAT_IN_PROGRESS_CONFLICTS, 1);
			break;
		case BEGIN_MISMATCH:
			si_stat_add(SI_STAT_MISMATCHES, 1);
			break;
		case BEGIN_UNRESOLVED:
			si_stat_add(SI_STAT_UNRESOLVED, 1);
			break;
	}

	return (Datum) 0;
}

/*
 * begin_stripe_idempotency(operation_type, operation_id, request_params,
 *							lease, ttl, key_window)
 */
Datum
begin_stripe_idempotency_1_2(PG_FUNCTION_ARGS)
{
	return begin_operation(fcinfo, true);
}

/*
 * The 1.0 and 1.1 function, for databases not yet updated: the window is
 * the setting's, and it may run in a transaction block as it always could,
 * so that installing the library breaks no caller before the update.
 */
Datum
begin_stripe_idempotency(PG_FUNCTION_ARGS)
{
	return begin_operation(fcinfo, false);
}
