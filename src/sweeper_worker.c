/*-------------------------------------------------------------------------
 *
 * sweeper_worker.c
 *	  The per-database sweeper: a background worker the launcher starts for
 *	  one pass over one database. It connects, deletes expired keys batch
 *	  by batch, reports into its shared memory slot and exits.
 *
 * Each batch is one short transaction running si_cleanup_batch(), the rule
 * cleanup_expired_idempotency_keys() uses too: expired, no live lease,
 * rows locked by others skipped. Interrupts are checked between batches
 * and inside each (the executor checks them), so neither fast shutdown nor
 * pg_terminate_backend waits for more than the batch under way. The pass
 * ends with the first batch that deletes fewer than sweep_batch_size rows,
 * or early when DROP DATABASE (or another command that needs the database
 * to itself) is waiting for the sessions in it to leave.
 *
 * Between batches the worker pauses (stripe_idem.sweep_batch_delay), so
 * that a long pass leaves the clients their share of the machine: a sweep
 * at full speed takes a whole core for as long as it runs. The pause is a
 * latch wait outside any transaction, so SIGTERM (shutdown,
 * pg_terminate_backend), a reload and stripe_idem_wake_sweeper(true) all
 * end it at once.
 *
 * A database without the extension, or with it still being created, is
 * not an error: the pass does nothing and the launcher logs that once. An
 * error ends the pass; it is logged when it differs from the previous
 * pass's error, and it stays in last_error until a pass succeeds.
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* The pause between batches, as shown in pg_stat_activity.wait_event. */
static uint32 pause_event = 0;

/* Which slot this process reports into, and for which generation. */
static int	my_slot = -1;
static uint32 my_generation = 0;
static bool pass_reported = false;

/* The error that ended the process, caught on its way to the log. */
static char exit_message[SI_SWEEPER_ERRLEN];
static emit_log_hook_type prev_emit_log_hook = NULL;

static void
remember_error(ErrorData *edata)
{
	if (edata->elevel >= ERROR && edata->message != NULL)
		strlcpy(exit_message, edata->message, sizeof(exit_message));
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/*
 * Take the lock and return our slot; NULL, with the lock released, if the
 * slot has changed hands (the database is no longer listed).
 */
static SiSweepSlot *
lock_my_slot(void)
{
	SiSweepSlot *slot = &si_sweeper->slots[my_slot];

	LWLockAcquire(si_sweeper->lock, LW_EXCLUSIVE);
	if (slot->generation != my_generation)
	{
		LWLockRelease(si_sweeper->lock);
		return NULL;
	}
	return slot;
}

/* The pass is over: record how it ended. */
static void
report_end(SiSweepOutcome outcome, const char *error)
{
	SiSweepSlot *slot = lock_my_slot();

	pass_reported = true;
	if (slot == NULL)
		return;
	slot->outcome = outcome;
	slot->last_finished = GetCurrentTimestamp();
	slot->worker_pid = 0;
	if (outcome == SI_SWEEP_OK)
		slot->passes++;
	si_sweeper_set_error(slot, error);
	LWLockRelease(si_sweeper->lock);
}

/*
 * Exit callback: a FATAL error (pg_terminate_backend, shutdown, a failed
 * connection) ended the pass before it could report.
 */
static void
worker_exit(int code, Datum arg)
{
	if (pass_reported)
		return;
	report_end(SI_SWEEP_FAILED,
			   exit_message[0] ? exit_message : "sweeper worker exited before finishing its pass");
}

/*
 * Claim the slot for this pass. False if the slot changed hands since the
 * launcher started us, or another worker is sweeping there already.
 */
static bool
report_start(char *previous_error, NameData *dbname)
{
	SiSweepSlot *slot = lock_my_slot();

	if (slot == NULL)
		return false;
	if (slot->worker_pid != 0)
	{
		LWLockRelease(si_sweeper->lock);
		return false;
	}
	strlcpy(previous_error, slot->last_error, SI_SWEEPER_ERRLEN);
	*dbname = slot->dbname;
	slot->worker_pid = MyProcPid;
	slot->outcome = SI_SWEEP_RUNNING;
	slot->last_started = GetCurrentTimestamp();
	slot->last_rows_deleted = 0;
	LWLockRelease(si_sweeper->lock);
	return true;
}

static void
report_progress(int64 deleted)
{
	SiSweepSlot *slot = lock_my_slot();

	if (slot == NULL)
		return;
	slot->last_rows_deleted += deleted;
	slot->total_rows_deleted += deleted;
	LWLockRelease(si_sweeper->lock);
}

/*
 * On a table distributed by Citus this node sweeps only the shards it
 * holds (src/citus.c): say so once, and again when the number changes
 * (shards moved by a rebalance), not every pass. Needs a transaction.
 */
static void
report_citus(void)
{
	bool		distributed;
	int			nshards = list_length(si_citus_local_shards(&distributed));
	SiSweepSlot *slot;
	bool		changed = false;

	if (!distributed)
		return;
	slot = lock_my_slot();
	if (slot == NULL)
		return;
	if (slot->citus_logged != nshards + 1)
	{
		slot->citus_logged = nshards + 1;
		changed = true;
	}
	LWLockRelease(si_sweeper->lock);
	if (changed)
		ereport(LOG,
				(errmsg("stripe_idem sweeper: the keys in database \"%s\" are distributed by Citus; this node sweeps the %d shards it holds",
						get_database_name(MyDatabaseId), nshards),
				 errdetail("Every node with shards needs its own sweeper; cleanup_expired_idempotency_keys() on the coordinator reaches every shard.")));
}

/* What sweep_batch returns when it deleted nothing for a reason. */
#define SI_BATCH_NOT_INSTALLED	(-1)
#define SI_BATCH_GIVE_WAY		(-2)

/*
 * One batch in its own transaction. Returns the number of rows deleted,
 * or one of the two codes above.
 */
static int64
sweep_batch(int batch_size, TimestampTz *lower_bound, int64 done)
{
	int64		deleted = SI_BATCH_NOT_INSTALLED;
	char		activity[128];
	LOCKTAG		tag;

	snprintf(activity, sizeof(activity),
			 "stripe_idem sweeper: deleting expired keys, %lld deleted so far",
			 (long long) done);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();

	/*
	 * DROP DATABASE, ALTER DATABASE RENAME and CREATE DATABASE ... TEMPLATE
	 * lock the database, then wait (five seconds at most) for the sessions
	 * in it to leave. Give way to them: end the pass when the lock a new
	 * session would take is not free. Held to the end of the batch, so such
	 * a command waits for one batch at most.
	 */
	SET_LOCKTAG_OBJECT(tag, InvalidOid, DatabaseRelationId, MyDatabaseId, 0);
	if (LockAcquire(&tag, RowExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
	{
		CommitTransactionCommand();
		return SI_BATCH_GIVE_WAY;
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);

	if (si_extension_ready())
	{
		if (done == 0)
			report_citus();
		deleted = si_cleanup_batch(batch_size, lower_bound);
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	return deleted;
}

/*
 * Pause after a batch that took batch_ms: stripe_idem.sweep_batch_delay
 * milliseconds, or with -1 half as long as the batch took (a duty cycle of
 * two thirds, whatever the machine's speed), at most the setting's
 * maximum. A reload is applied at once (and may end the pause); a hurried
 * wake request ends it.
 */
static void
pause_after_batch(long batch_ms)
{
	TimestampTz start = GetCurrentTimestamp();

	for (;;)
	{
		long		delay;
		long		left;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		delay = si_sweep_batch_delay_ms >= 0 ? si_sweep_batch_delay_ms :
			Min(batch_ms / 2, (long) SI_MAX_BATCH_DELAY_MS);
		left = delay - (long) TimestampDifferenceMilliseconds(start, GetCurrentTimestamp());
		if (left <= 0 || si_sweeper_hurried())
			return;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, left,
						 si_wait_event(pause_event, "StripeIdemSweeperBatchDelay"));
		ResetLatch(MyLatch);
	}
}

void
si_sweeper_worker_main(Datum main_arg)
{
	SiSweepOrder order;
	char		previous_error[SI_SWEEPER_ERRLEN];
	NameData	dbname;
	MemoryContext worker_cxt;
	TimestampTz started;
	TimestampTz lower_bound = DT_NOBEGIN;
	volatile int64 total = 0;
	volatile int batches = 0;
	volatile SiSweepOutcome outcome = SI_SWEEP_OK;
	volatile bool gave_way = false;
	char		failure[SI_SWEEPER_ERRLEN] = "";

	memcpy(&order, MyBgworkerEntry->bgw_extra, sizeof(order));
	my_slot = DatumGetInt32(main_arg);
	my_generation = order.generation;
	if (my_slot < 0 || my_slot >= SI_SWEEPER_MAX_DATABASES || si_sweeper == NULL)
		elog(ERROR, "stripe_idem sweeper started with invalid slot %d", my_slot);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (!report_start(previous_error, &dbname))
		proc_exit(0);
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = remember_error;
	before_shmem_exit(worker_exit, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(order.dboid, order.roleoid, 0);

	/*
	 * The statements name every object by schema, but this session may run
	 * as a superuser in a database whose owner has set search_path; take
	 * it out of play, as autovacuum does.
	 */
	SetConfigOption("search_path", "", PGC_SUSET, PGC_S_OVERRIDE);

	worker_cxt = AllocSetContextCreate(TopMemoryContext, "stripe_idem sweeper",
									   ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(worker_cxt);
	started = GetCurrentTimestamp();

	PG_TRY();
	{
		for (;;)
		{
			int			batch_size;
			int64		deleted;
			TimestampTz batch_start;

			CHECK_FOR_INTERRUPTS();
			if (ConfigReloadPending)
			{
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
			}
			batch_size = si_sweep_batch_size;

			batch_start = GetCurrentTimestamp();
			deleted = sweep_batch(batch_size, &lower_bound, total);
			MemoryContextSwitchTo(worker_cxt);
			if (deleted == SI_BATCH_NOT_INSTALLED)
			{
				outcome = SI_SWEEP_NOT_INSTALLED;
				break;
			}
			if (deleted == SI_BATCH_GIVE_WAY)
			{
				outcome = SI_SWEEP_FAILED;
				gave_way = true;
				break;
			}
			batches++;
			total += deleted;
			si_stat_add(SI_STAT_ROWS_SWEPT, deleted);
			report_progress(deleted);
			if (deleted < batch_size)
				break;
			pause_after_batch((long) TimestampDifferenceMilliseconds(batch_start,
																	 GetCurrentTimestamp()));
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(worker_cxt);
		edata = CopyErrorData();
		strlcpy(failure, edata->message ? edata->message : "unknown error", sizeof(failure));

		/* Log an error once, not every pass: again only when it changes. */
		if (strcmp(failure, previous_error) != 0)
			EmitErrorReport();
		else
			ereport(DEBUG1,
					(errmsg_internal("stripe_idem sweeper: same error as last pass: %s",
									 failure)));
		FlushErrorState();
		AbortOutOfAnyTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
		outcome = SI_SWEEP_FAILED;
		RESUME_INTERRUPTS();
	}
	PG_END_TRY();

	if (outcome == SI_SWEEP_NOT_INSTALLED)
		report_end(outcome, "extension \"" STRIPE_IDEM_EXTNAME "\" is not installed in this database");
	else if (gave_way)
	{
		report_end(outcome, "pass cut short: another session needed the database to itself");
		ereport(LOG,
				(errmsg("stripe_idem sweeper cut its pass in database \"%s\" short",
						NameStr(dbname)),
				 errdetail("Another session (DROP DATABASE, ALTER DATABASE, CREATE DATABASE with it as template) needed the database to itself.")));
	}
	else
		report_end(outcome, failure);

	if (si_log_sweeps && total > 0)
		ereport(LOG,
				(errmsg("stripe_idem sweeper deleted %lld expired keys in database \"%s\" in %.3f s",
						(long long) total, NameStr(dbname),
						(double) (GetCurrentTimestamp() - started) / USECS_PER_SEC),
				 errdetail_plural("The pass committed %d batch.",
								  "The pass committed %d batches.",
								  batches, batches)));

	proc_exit(0);
}
