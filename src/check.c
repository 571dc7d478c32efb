/*-------------------------------------------------------------------------
 *
 * check.c
 *	  check_stripe_idempotency: read-only look at an operation.
 *
 * For the check-then-record flow and for dashboards. An absent row
 * (stripe_idem.h) counts as not found even before the sweeper deletes it,
 * matching what begin_stripe_idempotency would do with it. An operation
 * whose outcome is unknown is found, with status "unresolved" (judged with
 * the default lease and stripe_idem.key_window): a check-then-record caller
 * must not take it for absent and call Stripe under a new key.
 *
 * The plan's row is exactly the function's result row (found = true and
 * the six columns), so the executor sends it straight into the result
 * tuplestore through a tuplestore DestReceiver, as PL/pgSQL's RETURN QUERY
 * does: no SPI tuple table, no copy out of it and no second tuple formed
 * from the copy. Only a miss forms its row here.
 *
 * That plan is for a table Citus distributes. Where the table is local the
 * row is read through the primary key directly (si_probe_row) and judged
 * here by the same rules: setting up and ending the executor for the plan
 * cost more than the lookup itself.
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

#include "executor/tstoreReceiver.h"
#include "funcapi.h"
#include "nodes/params.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(check_stripe_idempotency);

enum
{
	CHECK_FOUND,
	CHECK_STATUS,
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
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ParamListInfo params;
	SPIExecuteOptions options;
	DestReceiver *dest;
	int			rc;

	si_check_operation_type(operation_type);
	si_check_operation_id(operation_id);

	si_materialize(fcinfo);

	if (si_direct_reads_ok())
	{
		Datum		values[CHECK_NCOLS] = {0};
		bool		isnull[CHECK_NCOLS];
		SiRow		row;

		memset(isnull, true, sizeof(isnull));
		values[CHECK_FOUND] = BoolGetDatum(false);
		isnull[CHECK_FOUND] = false;
		/* STABLE: the caller's snapshot, as the plan would read */
		if (si_probe_row(PointerGetDatum(operation_type), PointerGetDatum(operation_id),
						 GetActiveSnapshot(), &row) && !row.absent)
		{
			values[CHECK_FOUND] = BoolGetDatum(true);
			if (!row.completed && row.settled &&
				si_row_unresolved(&row, (int64) si_default_lease_secs * USECS_PER_SEC,
								  (int64) si_key_window_secs * USECS_PER_SEC))
				values[CHECK_STATUS] = CStringGetTextDatum("unresolved");
			else
				values[CHECK_STATUS] = row.status;
			values[CHECK_KEY] = row.key;
			values[CHECK_RESOURCE_ID] = row.resource_id;
			values[CHECK_RESPONSE] = row.response;
			values[CHECK_CREATED_AT] = TimestampTzGetDatum(row.created_at);
			values[CHECK_EXPIRES_AT] = TimestampTzGetDatum(row.expires_at);
			isnull[CHECK_STATUS] = isnull[CHECK_KEY] = false;
			isnull[CHECK_RESOURCE_ID] = row.resource_id_null;
			isnull[CHECK_RESPONSE] = row.response_null;
			isnull[CHECK_CREATED_AT] = isnull[CHECK_EXPIRES_AT] = false;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
		return (Datum) 0;
	}

	params = makeParamList(5);
	params->numParams = 5;
	params->params[0].value = PointerGetDatum(operation_type);
	params->params[0].isnull = false;
	params->params[0].pflags = PARAM_FLAG_CONST;
	params->params[0].ptype = TEXTOID;
	params->params[1].value = PointerGetDatum(operation_id);
	params->params[1].isnull = false;
	params->params[1].pflags = PARAM_FLAG_CONST;
	params->params[1].ptype = TEXTOID;
	params->params[2].value =
		TimestampTzGetDatum(si_takeover_cutoff((int64) si_default_lease_secs * USECS_PER_SEC,
											   (int64) si_key_window_secs * USECS_PER_SEC));
	params->params[2].isnull = false;
	params->params[2].pflags = PARAM_FLAG_CONST;
	params->params[2].ptype = TIMESTAMPTZOID;
	params->params[3].value = TimestampTzGetDatum(si_retention_cutoff());
	params->params[3].isnull = false;
	params->params[3].pflags = PARAM_FLAG_CONST;
	params->params[3].ptype = TIMESTAMPTZOID;
	params->params[4].value = TimestampTzGetDatum(si_settle_cutoff());
	params->params[4].isnull = false;
	params->params[4].pflags = PARAM_FLAG_CONST;
	params->params[4].ptype = TIMESTAMPTZOID;

	dest = CreateDestReceiver(DestTuplestore);
	SetTuplestoreDestReceiverParams(dest, rsinfo->setResult,
									rsinfo->econtext->ecxt_per_query_memory,
									false, NULL, NULL);

	SPI_connect();
	memset(&options, 0, sizeof(options));
	options.params = params;
	/* read_only: the function is STABLE and runs on the caller's snapshot */
	options.read_only = true;
	options.tcount = 1;
	options.dest = dest;
	rc = SPI_execute_plan_extended(si_plan(SI_PLAN_CHECK), &options);
	si_spi_check(rc, SPI_OK_SELECT, "checking the operation");

	if (SPI_processed == 0)
	{
		Datum		values[CHECK_NCOLS] = {0};
		bool		isnull[CHECK_NCOLS];

		memset(isnull, true, sizeof(isnull));
		values[CHECK_FOUND] = BoolGetDatum(false);
		isnull[CHECK_FOUND] = false;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
	}

	SPI_finish();
	dest->rDestroy(dest);
	return (Datum) 0;
}
