/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Cumulative counters in shared memory: how begin calls ended, records,
 *	  releases and rows swept since the server started (or the last reset).
 *
 * Counters are atomics, so counting costs one uncontended atomic add and
 * no lock. Without shared_preload_libraries there is no shared memory:
 * counting is skipped and the SQL functions say how to enable it.
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

#include "funcapi.h"
#include "access/htup_details.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(stripe_idem_stats);
PG_FUNCTION_INFO_V1(stripe_idem_stats_reset);

typedef struct SiStatsShared
{
	pg_atomic_uint64 counters[SI_NUM_STATS];
	pg_atomic_uint64 reset_time;	/* TimestampTz */
} SiStatsShared;

static SiStatsShared *si_stats = NULL;

void
si_stats_request_shmem(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(SiStatsShared)));
}

void
si_stats_startup_shmem(void)
{
	bool		found;
	int			i;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	si_stats = ShmemInitStruct("stripe_idem stats", sizeof(SiStatsShared), &found);
	if (!found)
	{
		for (i = 0; i < SI_NUM_STATS; i++)
			pg_atomic_init_u64(&si_stats->counters[i], 0);
		pg_atomic_init_u64(&si_stats->reset_time, (uint64) GetCurrentTimestamp());
	}
	LWLockRelease(AddinShmemInitLock);
}

void
si_stat_add(SiStat which, int64 n)
{
	if (si_stats != NULL && n != 0)
		pg_atomic_fetch_add_u64(&si_stats->counters[which], (uint64) n);
}

/* Raise the error every shared-memory feature gives without the preload. */
void
si_require_shmem(const char *feature)
{
	if (si_stats == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s needs stripe_idem in shared_preload_libraries", feature),
				 errhint("Add stripe_idem to shared_preload_libraries in postgresql.conf and restart the server.")));
}

Datum
stripe_idem_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[SI_NUM_STATS + 1];
	bool		nulls[SI_NUM_STATS + 1] = {0};
	int			ncounters;
	int			i;

	si_require_shmem("stripe_idem_stats");
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	/*
	 * As many counters as the SQL function declares, then stats_reset:
	 * counters are only ever added at the end, so a database still at an
	 * older version (fewer columns) reads the ones it knows.
	 */
	ncounters = Min(tupdesc->natts - 1, SI_NUM_STATS);
	for (i = 0; i < ncounters; i++)
		values[i] = Int64GetDatum((int64) pg_atomic_read_u64(&si_stats->counters[i]));
	values[ncounters] = TimestampTzGetDatum((TimestampTz) pg_atomic_read_u64(&si_stats->reset_time));

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

Datum
stripe_idem_stats_reset(PG_FUNCTION_ARGS)
{
	int			i;

	si_require_shmem("stripe_idem_stats_reset");
	for (i = 0; i < SI_NUM_STATS; i++)
		pg_atomic_write_u64(&si_stats->counters[i], 0);
	pg_atomic_write_u64(&si_stats->reset_time, (uint64) GetCurrentTimestamp());
	PG_RETURN_VOID();
}
