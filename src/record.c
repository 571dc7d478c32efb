/*-------------------------------------------------------------------------
 *
 * record.c
 *	  record_stripe_idempotency: store what Stripe answered.
 *
 * Two flows end here:
 *	- begin/record: the caller holds the in_progress row and completes it
 *	  (one UPDATE, the common case);
 *	- check-then-record: no row yet, so a completed row is inserted.
 * Whatever the flow, the first recorded result wins: once an operation is
 * completed, later calls change nothing and get the stored result back, so
 * every retry hands the client the same Stripe object.
 *
 * A key that another operation already owns, or a different key than the
 * one an in_progress row was begun with, is refused with 23505: recording
 * it would tie one Stripe object to two operations, or hide the object the
 * first key may have created. That holds for an unresolved operation too
 * (stripe_idem.h): record with the stored key is how the application says
 * what it found at Stripe, and the operation is completed from then on.
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

PG_FUNCTION_INFO_V1(record_stripe_idempotency);

#define SI_RECORD_ROUNDS 5

enum
{
	RECORD_RECORDED,
	RECORD_RESOURCE_ID,
	RECORD_RESPONSE,
	RECORD_NCOLS
};

/* Refuse a key that belongs to a different operation. */
static void
check_key_owner(text *operation_type, text *operation_id, text *key)
{
	Datum		args[1] = {PointerGetDatum(key)};
	Datum		owner_type;
	Datum		owner_id;
	bool		isnull;
	int			rc;

	rc = SPI_execute_plan(si_plan(SI_PLAN_KEY_OWNER), args, NULL, false, 1);
	si_spi_check(rc, SPI_OK_SELECT, "looking up the key's operation");
	if (SPI_processed == 0)
		return;

	owner_type = si_spi_value(0, 1, &isnull);
	owner_id = si_spi_value(0, 2, &isnull);
	if (si_text_equal(owner_type, PointerGetDatum(operation_type)) &&
		si_text_equal(owner_id, PointerGetDatum(operation_id)))
		return;

	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("stripe_idempotency_key is already used by operation %s/%s",
					TextDatumGetCString(owner_type), TextDatumGetCString(owner_id)),
			 errdetail("It cannot be recorded for operation %s/%s.",
					   text_to_cstring(operation_type), text_to_cstring(operation_id)),
			 errhint("Record each operation with the key begin_stripe_idempotency returned for it.")));
}

Datum
record_stripe_idempotency(PG_FUNCTION_ARGS)
{
	text	   *operation_type = si_required_text(fcinfo, 0, "operation_type");
	text	   *operation_id = si_required_text(fcinfo, 1, "operation_id");
	text	   *key = si_required_text(fcinfo, 2, "stripe_idempotency_key");
	Interval   *ttl;
	Datum		args[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Datum		values[RECORD_NCOLS];
	bool		isnull[RECORD_NCOLS];
	bool		key_checked = false;
	int			round;
	int			rc;

	if (PG_ARGISNULL(3) && PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stripe_resource_id and response must not both be null"),
				 errdetail("A completed operation must carry the Stripe object id, the response, or both.")));

	si_check_operation_type(operation_type);
	si_check_operation_id(operation_id);
	si_check_idempotency_key(key);
	if (!PG_ARGISNULL(3))
		si_check_resource_id(PG_GETARG_TEXT_PP(3));
	si_check_size(fcinfo, 4, "response", si_max_response_bytes,
				  "stripe_idem.max_response_size");
	ttl = si_optional_interval(fcinfo, 5, "ttl", si_default_ttl_secs,
							   (int64) SI_MAX_SECONDS * USECS_PER_SEC, "365 days");

	args[0] = PointerGetDatum(operation_type);
	args[1] = PointerGetDatum(operation_id);
	args[2] = PointerGetDatum(key);
	args[3] = PG_ARGISNULL(3) ? (Datum) 0 : PointerGetDatum(PG_GETARG_TEXT_PP(3));
	args[4] = PG_ARGISNULL(4) ? (Datum) 0 : PointerGetDatum(PG_GETARG_JSONB_P(4));
	args[5] = IntervalPGetDatum(ttl);
	args[6] = TimestampTzGetDatum(si_retention_cutoff());
	if (PG_ARGISNULL(3))
		nulls[3] = 'n';
	if (PG_ARGISNULL(4))
		nulls[4] = 'n';

	/* What we return when our result is the one stored. */
	values[RECORD_RECORDED] = BoolGetDatum(true);
	values[RECORD_RESOURCE_ID] = args[3];
	values[RECORD_RESPONSE] = args[4];
	isnull[RECORD_RECORDED] = false;
	isnull[RECORD_RESOURCE_ID] = PG_ARGISNULL(3);
	isnull[RECORD_RESPONSE] = PG_ARGISNULL(4);

	SPI_connect();

	for (round = 0;; round++)
	{
		SiRow		row;

		CHECK_FOR_INTERRUPTS();
		if (round == SI_RECORD_ROUNDS)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not record operation because it kept changing concurrently"),
					 errdetail("The row was changed by other sessions %d times in a row.",
							   SI_RECORD_ROUNDS),
					 errhint("Retry the call.")));

		/* The caller's own in_progress row: one statement. */
		rc = SPI_execute_plan(si_plan(SI_PLAN_COMPLETE_OWN), args, nulls, false, 0);
		si_spi_check(rc, SPI_OK_UPDATE, "completing the operation");
		if (SPI_processed == 1)
			break;

		if (!key_checked)
		{
			check_key_owner(operation_type, operation_id, key);
			key_checked = true;
		}

		rc = SPI_execute_plan(si_plan(SI_PLAN_INSERT_COMPLETED), args, nulls, false, 0);
		si_spi_check(rc, SPI_OK_INSERT, "inserting the completed operation");
		if (SPI_processed == 1)
			break;

		if (!si_fetch_row(args[0], args[1], &row))
			continue;			/* deleted meanwhile: insert again */

		if (row.absent)
		{
			rc = SPI_execute_plan(si_plan(SI_PLAN_REPLACE_EXPIRED_COMPLETED),
								  args, nulls, false, 0);
			si_spi_check(rc, SPI_OK_UPDATE, "replacing the expired operation");
			if (SPI_processed == 1)
				break;
			continue;
		}

		if (row.completed)
		{
			/* First result wins; hand it back unchanged. */
			values[RECORD_RECORDED] = BoolGetDatum(false);
			values[RECORD_RESOURCE_ID] = row.resource_id;
			values[RECORD_RESPONSE] = row.response;
			isnull[RECORD_RESOURCE_ID] = row.resource_id_null;
			isnull[RECORD_RESPONSE] = row.response_null;
			break;
		}

		if (si_text_equal(row.key, args[2]))
			continue;			/* ours after all; it changed under us */

		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("operation %s/%s is in progress under a different stripe_idempotency_key",
						text_to_cstring(operation_type), text_to_cstring(operation_id)),
				 errdetail("Only the key returned by begin_stripe_idempotency can complete it."),
				 errhint("Call begin_stripe_idempotency and use the key it returns.")));
	}

	si_return_row(fcinfo, values, isnull);
	SPI_finish();

	if (DatumGetBool(values[RECORD_RECORDED]))
	{
		si_stat_add(SI_STAT_RECORDS, 1);
		/* Durable even under synchronous_commit = off; see begin.c. */
		ForceSyncCommit();
	}
	return (Datum) 0;
}
