/*-------------------------------------------------------------------------
 *
 * release.c
 *	  release_stripe_idempotency: give the lease back after a transient
 *	  failure.
 *
 * After a network error, a 5xx, a 409 or a 429 from Stripe, nothing is
 * known to have happened, so the operation stays in_progress with its key;
 * releasing the lease only lets the next begin acquire it at once instead
 * of waiting for the lease to run out. Because the key is kept, the retry
 * is safe even if the first call did reach Stripe: Stripe replays it.
 *
 * A takeover keeps the key, so the key alone cannot tell the current holder
 * from one whose lease already ran out. The optional attempt argument (the
 * attempts value begin returned with "acquired") can: every acquisition
 * increments it, so a late release from an earlier holder matches nothing.
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

PG_FUNCTION_INFO_V1(release_stripe_idempotency);

/*
 * Returns true if the caller's in_progress row (same key, same attempt if
 * given, not expired) was found and its lease dropped; false if there is no
 * such row (completed, expired, gone, under another key, or taken over).
 */
Datum
release_stripe_idempotency(PG_FUNCTION_ARGS)
{
	text	   *operation_type = si_required_text(fcinfo, 0, "operation_type");
	text	   *operation_id = si_required_text(fcinfo, 1, "operation_id");
	text	   *key = si_required_text(fcinfo, 2, "stripe_idempotency_key");
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		released;
	int			rc;

	si_check_operation_type(operation_type);
	si_check_operation_id(operation_id);
	si_check_idempotency_key(key);

	args[0] = PointerGetDatum(operation_type);
	args[1] = PointerGetDatum(operation_id);
	args[2] = PointerGetDatum(key);
	if (PG_ARGISNULL(3))
	{
		args[3] = (Datum) 0;
		nulls[3] = 'n';
	}
	else
		args[3] = PG_GETARG_DATUM(3);

	SPI_connect();
	rc = SPI_execute_plan(si_plan(SI_PLAN_RELEASE), args, nulls, false, 0);
	si_spi_check(rc, SPI_OK_UPDATE, "releasing the operation");
	released = (SPI_processed == 1);
	SPI_finish();

	if (released)
		si_stat_add(SI_STAT_RELEASES, 1);
	PG_RETURN_BOOL(released);
}
