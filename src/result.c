/*-------------------------------------------------------------------------
 *
 * result.c
 *	  Small helpers around SPI results and the one-row table results.
 *
 * begin/check/record are declared RETURNS TABLE and always return exactly
 * one row, so callers can SELECT * FROM them and read one row whatever
 * happened.
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

/*
 * Emit the single result row. The tuplestore copies the values, so they may
 * still point into SPI memory.
 */
void
si_return_row(FunctionCallInfo fcinfo, Datum *values, bool *nulls)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	si_materialize(fcinfo);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* Set up the result tuplestore (rsinfo->setResult, with setDesc). */
void
si_materialize(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bits32		flags = 0;

	/* The executor usually knows the row type; saves a catalog lookup per call. */
	if (rsinfo != NULL && IsA(rsinfo, ReturnSetInfo) && rsinfo->expectedDesc != NULL)
		flags = MAT_SRF_USE_EXPECTED_DESC;
	InitMaterializedSRF(fcinfo, flags);
}

/* Column col (1-based) of row of the last SPI result. */
Datum
si_spi_value(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
						 col, isnull);
}

void
si_spi_check(int rc, int expected, const char *what)
{
	if (rc != expected)
		elog(ERROR, "%s failed: %s", what, SPI_result_code_string(rc));
}

/*
 * Read the operation's row, without locking it: every decision taken from
 * it is either read-only or made by a conditional UPDATE that re-checks the
 * same conditions, so a concurrent change shows up as "0 rows updated" and
 * the caller reads again. Returns false if there is no row. The values stay
 * valid until the next SPI call.
 */
bool
si_fetch_row(Datum operation_type, Datum operation_id, SiRow *row)
{
	Datum		args[2] = {operation_type, operation_id};
	bool		isnull;
	int			rc;

	rc = SPI_execute_plan(si_plan(SI_PLAN_SELECT_ROW), args, NULL, false, 1);
	si_spi_check(rc, SPI_OK_SELECT, "reading the operation");
	if (SPI_processed == 0)
		return false;

	row->key = si_spi_value(0, 1, &isnull);
	row->fingerprint = si_spi_value(0, 2, &row->fingerprint_null);
	row->completed = (strcmp(TextDatumGetCString(si_spi_value(0, 3, &isnull)),
							 "completed") == 0);
	row->resource_id = si_spi_value(0, 4, &row->resource_id_null);
	row->response = si_spi_value(0, 5, &row->response_null);
	row->attempts = DatumGetInt32(si_spi_value(0, 6, &isnull));
	row->lease_live = DatumGetBool(si_spi_value(0, 7, &isnull));
	if (isnull)
		row->lease_live = false;	/* no lease at all */
	row->lease_left = si_spi_value(0, 8, &row->lease_left_null);
	row->expired = DatumGetBool(si_spi_value(0, 9, &isnull));
	return true;
}

/* Byte equality of two text datums. */
bool
si_text_equal(Datum a, Datum b)
{
	text	   *ta = DatumGetTextPP(a);
	text	   *tb = DatumGetTextPP(b);

	return VARSIZE_ANY_EXHDR(ta) == VARSIZE_ANY_EXHDR(tb) &&
		memcmp(VARDATA_ANY(ta), VARDATA_ANY(tb), VARSIZE_ANY_EXHDR(ta)) == 0;
}
