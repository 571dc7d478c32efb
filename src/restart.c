/*-------------------------------------------------------------------------
 *
 * restart.c
 *	  restart_stripe_idempotency: start an unresolved operation over under
 *	  a fresh key, once the application knows Stripe made nothing with the
 *	  old one.
 *
 * begin answers "unresolved" when an operation's outcome is unknown and its
 * key can no longer be sent safely (stripe_idem.h). Only the application
 * can find out what happened, by asking Stripe (a Checkout Session or a
 * PaymentIntent carries the metadata the application sent). If it finds
 * the object, it records it with the stored key (record.c) and every retry
 * replays it. If it finds none, this call hands out a new key with a lease,
 * as begin does for a new operation.
 *
 * It acts only on an unresolved row under the key the caller names (the
 * key it checked at Stripe) whose last lease ended at least
 * stripe_idem.settle_time ago: a request the SDK gave up on may still be
 * acted on by Stripe for a while, and the application may have asked
 * before it was. Anything else is refused with 55000 and
 * nothing is written: a completed operation has its answer; under a live
 * lease or inside the key window the old key may still be in use, and
 * begin takes it over with that key; under another key somebody restarted
 * it already. Of two racing restarts one gets the new key, the other finds
 * the key changed and is refused.
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

PG_FUNCTION_INFO_V1(restart_stripe_idempotency);

#define SI_RESTART_ROUNDS 5

/* The result columns are begin's. */
#define RESTART_NCOLS 6

static void
refuse(text *operation_type, text *operation_id, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("operation %s/%s is not unresolved under this stripe_idempotency_key",
					text_to_cstring(operation_type), text_to_cstring(operation_id)),
			 errdetail_internal("%s", why),
			 errhint("Call begin_stripe_idempotency and act on the state it returns.")));
}

Datum
restart_stripe_idempotency(PG_FUNCTION_ARGS)
{
	text	   *operation_type;
	text	   *operation_id;
	text	   *key;
	Interval   *ttl;
	Interval   *lease;
	int64		window_usecs;
	Datum		args[7];
	Datum		values[RESTART_NCOLS];
	bool		isnull[RESTART_NCOLS];
	int			round;
	int			rc;

	si_refuse_in_transaction_block("restart_stripe_idempotency");
	operation_type = si_required_text(fcinfo, 0, "operation_type");
	operation_id = si_required_text(fcinfo, 1, "operation_id");
	key = si_required_text(fcinfo, 2, "stripe_idempotency_key");
	si_check_operation_type(operation_type);
	si_check_operation_id(operation_id);
	si_check_idempotency_key(key);
	ttl = si_optional_interval(fcinfo, 4, "ttl", si_default_ttl_secs,
							   (int64) SI_MAX_SECONDS * USECS_PER_SEC, "365 days");
	window_usecs = si_optional_interval(fcinfo, 5, "key_window", si_key_window_secs,
										(int64) SI_MAX_SECONDS * USECS_PER_SEC,
										"365 days")->time;
	if (window_usecs < ttl->time)
		lease = si_optional_interval(fcinfo, 3, "lease", si_default_lease_secs,
									 window_usecs, "the key_window");
	else
		lease = si_optional_interval(fcinfo, 3, "lease", si_default_lease_secs,
									 ttl->time, "the ttl");

	args[0] = PointerGetDatum(operation_type);
	args[1] = PointerGetDatum(operation_id);
	args[2] = PointerGetDatum(key);
	args[3] = PointerGetDatum(si_make_key(operation_type, operation_id));
	args[4] = IntervalPGetDatum(lease);
	args[5] = IntervalPGetDatum(ttl);
	args[6] = TimestampTzGetDatum(si_settle_cutoff());

	SPI_connect();
	for (round = 0;; round++)
	{
		SiRow		row;

		CHECK_FOR_INTERRUPTS();
		if (round == SI_RESTART_ROUNDS)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not restart operation because it kept changing concurrently"),
					 errdetail("The row was changed by other sessions %d times in a row.",
							   SI_RESTART_ROUNDS),
					 errhint("Retry the call.")));

		if (!si_fetch_row(args[0], args[1], &row) || row.absent)
			refuse(operation_type, operation_id,
				   "There is no such operation, or it has expired: begin_stripe_idempotency starts it under a new key.");
		if (!si_text_equal(row.key, args[2]))
			refuse(operation_type, operation_id,
				   "It is under another key: it was restarted or begun anew since.");
		if (row.completed)
			refuse(operation_type, operation_id,
				   "It is completed: its recorded result is the answer.");
		if (row.lease_live)
			refuse(operation_type, operation_id,
				   "A caller holds its lease and may be sending the key to Stripe now.");
		if (!si_row_unresolved(&row, lease->time, window_usecs))
			refuse(operation_type, operation_id,
				   "Its key may still be sent to Stripe: begin_stripe_idempotency takes it over with the same key.");
		if (!row.settled)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("operation %s/%s cannot be restarted yet",
							text_to_cstring(operation_type), text_to_cstring(operation_id)),
					 errdetail("Its last lease ended less than stripe_idem.settle_time (%d s) ago: Stripe may still act on a request sent under it.",
							   si_settle_secs),
					 errhint("Ask Stripe again once that time has passed, then restart or record.")));

		rc = SPI_execute_plan(si_plan(SI_PLAN_RESTART), args, NULL, false, 0);
		si_spi_check(rc, SPI_OK_UPDATE, "restarting the operation");
		if (SPI_processed == 1)
			break;
		/* changed since we read it: judge it again */
	}

	memset(isnull, true, sizeof(isnull));
	values[0] = CStringGetTextDatum("acquired");
	values[1] = args[3];
	values[5] = Int32GetDatum(1);
	isnull[0] = isnull[1] = isnull[5] = false;
	si_return_row(fcinfo, values, isnull);
	SPI_finish();

	si_stat_add(SI_STAT_ACQUIRED, 1);
	/* The new key must survive a crash once it was handed out; see begin.c. */
	ForceSyncCommit();
	return (Datum) 0;
}
