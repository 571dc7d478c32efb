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

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"
#include "utils/typcache.h"

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
 * The first SI_NCOLS columns of a stripe_idempotency_keys row value (a
 * composite datum). The values point into the datum.
 */
void
si_deform_row(Datum row, Datum *values, bool *nulls)
{
	HeapTupleHeader rec = DatumGetHeapTupleHeader(row);
	HeapTupleData tuple;
	TupleDesc	tupdesc;
	Datum	   *all_values;
	bool	   *all_nulls;

	tupdesc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(rec),
									 HeapTupleHeaderGetTypMod(rec));
	if (tupdesc->natts < SI_NCOLS)
		elog(ERROR, "row of type %u has %d columns, expected at least %d",
			 HeapTupleHeaderGetTypeId(rec), tupdesc->natts, SI_NCOLS);
	tuple.t_len = HeapTupleHeaderGetDatumLength(rec);
	ItemPointerSetInvalid(&(tuple.t_self));
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = rec;

	if (tupdesc->natts == SI_NCOLS)
		heap_deform_tuple(&tuple, tupdesc, values, nulls);
	else
	{
		/* columns added by hand after ours: deform all, keep ours */
		all_values = palloc(tupdesc->natts * sizeof(Datum));
		all_nulls = palloc(tupdesc->natts * sizeof(bool));
		heap_deform_tuple(&tuple, tupdesc, all_values, all_nulls);
		memcpy(values, all_values, SI_NCOLS * sizeof(Datum));
		memcpy(nulls, all_nulls, SI_NCOLS * sizeof(bool));
		pfree(all_values);
		pfree(all_nulls);
	}
	ReleaseTupleDesc(tupdesc);
}

/*
 * Judge a stripe_idempotency_keys row, given as its first SI_NCOLS columns,
 * as of statement_timestamp(), the "now" of every plan. The row's Datums
 * are kept, not copied.
 */
static void
judge_row(Datum *values, bool *nulls, SiRow *row)
{
	TimestampTz stmt_now = GetCurrentStatementStartTimestamp();
	text	   *status;

	row->key = values[SI_COL_KEY - 1];
	row->fingerprint = values[SI_COL_FINGERPRINT - 1];
	row->fingerprint_null = nulls[SI_COL_FINGERPRINT - 1];
	status = DatumGetTextPP(values[SI_COL_STATUS - 1]);
	row->completed = VARSIZE_ANY_EXHDR(status) == strlen("completed") &&
		memcmp(VARDATA_ANY(status), "completed", strlen("completed")) == 0;
	row->resource_id = values[SI_COL_RESOURCE_ID - 1];
	row->resource_id_null = nulls[SI_COL_RESOURCE_ID - 1];
	row->response = values[SI_COL_RESPONSE - 1];
	row->response_null = nulls[SI_COL_RESPONSE - 1];
	row->attempts = DatumGetInt32(values[SI_COL_ATTEMPTS - 1]);
	if (nulls[SI_COL_LOCKED_UNTIL - 1])
	{
		row->lease_live = false;	/* no lease at all */
		row->settled = true;
		row->lease_left = (Datum) 0;
		row->lease_left_null = true;
	}
	else
	{
		TimestampTz locked_until = DatumGetTimestampTz(values[SI_COL_LOCKED_UNTIL - 1]);

		row->lease_live = locked_until > stmt_now;
		row->settled = locked_until <= si_settle_cutoff();
		row->lease_end = locked_until;
		/* the interval locked_until - now, exactly as the operator makes it */
		row->lease_left = DirectFunctionCall2(timestamp_mi,
											  TimestampTzGetDatum(locked_until),
											  TimestampTzGetDatum(stmt_now));
		row->lease_left_null = false;
	}
	row->status = values[SI_COL_STATUS - 1];
	row->created_at = DatumGetTimestampTz(values[SI_COL_CREATED_AT - 1]);
	row->expires_at = DatumGetTimestampTz(values[SI_COL_EXPIRES_AT - 1]);
	row->expired = row->expires_at <= stmt_now;
	row->absent = row->expired &&
		(row->completed || row->expires_at <= si_retention_cutoff());
}

/*
 * Judge a whole stripe_idempotency_keys row (a composite datum). The values
 * point into the datum.
 */
void
si_read_row(Datum whole_row, SiRow *row)
{
	Datum		values[SI_NCOLS];
	bool		nulls[SI_NCOLS];

	si_deform_row(whole_row, values, nulls);
	judge_row(values, nulls, row);
}

/*
 * Look the operation's row up through the primary key index, as catalog
 * lookups do (systable_beginscan), without the executor: no plan to set up
 * and tear down for one index probe. The table is found by OID (plans.c
 * keeps it current), its primary key index from the relcache; nothing is
 * named, so search_path plays no part. The table is locked as a SELECT
 * locks it, and the row is read without a row lock under the given
 * snapshot, as si_fetch_row reads it. Returns false if no row is visible;
 * the row's values are copied into the current memory context.
 *
 * Only for a table that lives on this node: under Citus the coordinator's
 * table is an empty shell (si_direct_reads_ok).
 */
bool
si_probe_row(Datum operation_type, Datum operation_id, Snapshot snapshot, SiRow *row)
{
	Oid			table_oid;
	Relation	rel;
	Relation	index;
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	AclResult	aclresult;
	bool		found;

	(void) si_table_identity(&table_oid);

	/*
	 * A SELECT would check the caller's privilege on the table; so must a
	 * read that does not go through the executor. From 1.2 the functions
	 * run as the table's owner and this passes at once, but a database
	 * still at 1.0 or 1.1 calls them with the caller's own rights.
	 */
	aclresult = pg_class_aclcheck(table_oid, GetUserId(), ACL_SELECT);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, get_rel_name(table_oid));

	rel = table_open(table_oid, AccessShareLock);
	index = index_open(si_primary_key_index(rel), AccessShareLock);
	if (IndexRelationGetNumberOfKeyAttributes(index) != 2)
		elog(ERROR, "primary key of \"%s\" has %d columns, expected 2",
			 RelationGetRelationName(rel), IndexRelationGetNumberOfKeyAttributes(index));

	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ, operation_type);
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[1], F_TEXTEQ, operation_id);
	slot = table_slot_create(rel, NULL);
	scan = si_index_beginscan(rel, index, snapshot, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found)
	{
		TupleDesc	tupdesc = RelationGetDescr(rel);
		HeapTuple	tuple = ExecCopySlotHeapTuple(slot);
		Datum	   *values = palloc(tupdesc->natts * sizeof(Datum));
		bool	   *nulls = palloc(tupdesc->natts * sizeof(bool));

		if (tupdesc->natts < SI_NCOLS)
			elog(ERROR, "table \"%s\" has %d columns, expected at least %d",
				 RelationGetRelationName(rel), tupdesc->natts, SI_NCOLS);
		heap_deform_tuple(tuple, tupdesc, values, nulls);
		judge_row(values, nulls, row);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	/* the locks are kept to the end of the transaction, as the executor keeps them */
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return found;
}

/*
 * Read the operation's row with a new snapshot (or the transaction's, under
 * REPEATABLE READ), as the next SPI statement would: through the primary
 * key directly where the table is local, else with SI_PLAN_SELECT_ROW. The
 * caller is connected to SPI.
 */
bool
si_read_operation(Datum operation_type, Datum operation_id, SiRow *row)
{
	bool		found;

	if (!si_direct_reads_ok())
		return si_fetch_row(operation_type, operation_id, row);

	/* see what this transaction's earlier statements did, as SPI would */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	found = si_probe_row(operation_type, operation_id, GetActiveSnapshot(), row);
	PopActiveSnapshot();
	return found;
}

/*
 * Read the operation's row, without locking it: every decision taken from
 * it is either read-only or made by a conditional UPDATE that re-checks the
 * same conditions, so a concurrent change shows up as "0 rows updated" and
 * the caller reads again. Returns false if there is no row. The values stay
 * valid until SPI_finish.
 *
 * The plan returns the whole row as its one column, the least result there
 * is for the executor to set up; the comparisons with "now" are made here.
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

	si_read_row(si_spi_value(0, 1, &isnull), row);
	return true;
}

/*
 * The earliest created_at whose key may still get a lease of lease_usecs:
 * the lease, and the settle time after it in which Stripe may still act on
 * a request sent under it, must end inside the key window. As a timestamp,
 * so that the takeover's UPDATE can re-check it as one comparison.
 */
TimestampTz
si_takeover_cutoff(int64 lease_usecs, int64 window_usecs)
{
	return GetCurrentStatementStartTimestamp() + lease_usecs +
		(int64) si_settle_secs * USECS_PER_SEC - window_usecs;
}

/* Leases that ended before this are settled (stripe_idem.settle_time). */
TimestampTz
si_settle_cutoff(void)
{
	return GetCurrentStatementStartTimestamp() -
		(int64) si_settle_secs * USECS_PER_SEC;
}

/* Rows that expired before this are absent (stripe_idem.unresolved_retention). */
TimestampTz
si_retention_cutoff(void)
{
	return GetCurrentStatementStartTimestamp() -
		(int64) si_unresolved_retention_secs * USECS_PER_SEC;
}

/*
 * An in_progress row nobody may take a lease on, and which must not get a
 * new key either: see stripe_idem.h. The caller has ruled out completed
 * and absent rows.
 */
bool
si_row_unresolved(const SiRow *row, int64 lease_usecs, int64 window_usecs)
{
	Assert(!row->completed && !row->absent);
	if (row->lease_live)
		return false;
	return row->expired ||
		row->created_at < si_takeover_cutoff(lease_usecs, window_usecs);
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
