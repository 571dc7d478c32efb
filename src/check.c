/*-------------------------------------------------------------------------
 *
 * check.c
 *	  check_stripe_idempotency: read-only look at an operation.
 *
 * For the check-then-record flow and for dashboards. An expired row counts
 * as not found even before the sweeper deletes it, matching what
 * begin_stripe_idempotency would do with it.
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

PG_FUNCTION_INFO_V1(check_stripe_idempotency);

enum
{
	CHECK_FOUND,
	CHECK_STATUS,				/* then the plan's columns, in this order */
	CHECK_KEY,
	CHECK_RESOURCE_ID,
	CHECK_RESPONSE,
	CHECK_CREATED_AT,
	CHECK_EXPIRES_AT,
	CHECK_NCOLS
};

Datum
check_stripe_idempotency(PG_FUNCTION_ARGS)
{
	text	   *operation_type = si_required_text(fcinfo, 0, "operation_type");
	text	   *operation_id = si_required_text(fcinfo, 1, "operation_id");
	Datum		args[2];
	Datum		values[CHECK_NCOLS];
	bool		isnull[CHECK_NCOLS];
	int			rc;
	int			col;

	si_check_operation_type(operation_type);
	si_check_operation_id(operation_id);

	args[0] = PointerGetDatum(operation_type);
	args[1] = PointerGetDatum(operation_id);

	SPI_connect();
	/* read_only: the function is STABLE and runs on the caller's snapshot */
	rc = SPI_execute_plan(si_plan(SI_PLAN_CHECK), args, NULL, true, 1);
	si_spi_check(rc, SPI_OK_SELECT, "checking the operation");

	memset(isnull, true, sizeof(isnull));
	values[CHECK_FOUND] = BoolGetDatum(SPI_processed == 1);
	isnull[CHECK_FOUND] = false;
	if (SPI_processed == 1)
	{
		for (col = CHECK_STATUS; col < CHECK_NCOLS; col++)
			values[col] = si_spi_value(0, col - CHECK_STATUS + 1, &isnull[col]);
	}
	si_return_row(fcinfo, values, isnull);

	SPI_finish();
	return (Datum) 0;
}
