/*-------------------------------------------------------------------------
 *
 * sweeper_launcher.c
 *	  The sweeper's launcher: a background worker that, once per
 *	  stripe_idem.sweep_interval, starts a short-lived worker in each
 *	  listed database and waits for it to finish.
 *
 * The launcher attaches to no database (like PostgreSQL's logical
 * replication launcher it can read only the shared catalogs), so it never
 * stands in the way of DROP DATABASE or ALTER DATABASE RENAME; the
 * per-database workers are connected only while they sweep. It reads
 * pg_database and pg_authid before each pass, so that a listed database
 * that does not exist or takes no connections, or a sweep_role that
 * cannot log in, is logged once instead of failing a worker every pass.
 *
 * With stripe_idem.databases empty (the default) the launcher sweeps every
 * database that has the extension: at the start of each pass it lists the
 * databases that accept connections (not templates) from pg_database, and
 * the per-database worker finds out itself whether the extension is
 * installed there, which the launcher, attached to no database, cannot
 * see. A database without it costs one short connection per pass and is
 * neither logged nor shown in stripe_idem_sweeper; one that gets the
 * extension later is swept from the next pass on, and that is logged once.
 *
 * Databases are swept one after another, so the sweeper never uses more
 * than two background worker slots. Nothing runs while the server is in
 * recovery: the launcher starts only once recovery has finished, and each
 * pass checks again. It is restarted SI_LAUNCHER_RESTART_SECS after it
 * exits abnormally (a crash, pg_terminate_backend).
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

/* Seconds before the postmaster starts a launcher that exited abnormally. */
#define SI_LAUNCHER_RESTART_SECS	5

/* Longest single sleep; the loop recomputes its deadline after each. */
#define SI_MAX_NAP_MS				(3600 * 1000L)

/* One listed database, as the launcher sees it at the start of a pass. */
typedef struct SiPassTarget
{
	int			slot;
	uint32		generation;
	NameData	dbname;
	Oid			dboid;
	SiSweepNote problem;		/* SI_NOTE_NONE when it can be swept */
} SiPassTarget;

/* Reset after every pass. */
static MemoryContext pass_cxt = NULL;

/* More databases than slots was logged (discovery only); once per launcher. */
static bool too_many_logged = false;

/* Wait events named in pg_stat_activity from PostgreSQL 17 (compat.h). */
static uint32 nap_event = 0;
static uint32 wait_worker_event = 0;

/*
 * Register the launcher; called from _PG_init while preloading. Not in
 * binary upgrade mode: pg_upgrade's servers must not change any data.
 */
void
si_sweeper_register_launcher(void)
{
	BackgroundWorker worker;

	if (IsBinaryUpgrade)
		return;

	memset(&worker, 0, sizeof(worker));
	strlcpy(worker.bgw_name, "stripe_idem launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "stripe_idem launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_library_name, "stripe_idem", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "si_sweeper_launcher_main", BGW_MAXLEN);
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = SI_LAUNCHER_RESTART_SECS;
	worker.bgw_main_arg = (Datum) 0;
	worker.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&worker);
}

static void
launcher_detach(int code, Datum arg)
{
	LWLockAcquire(si_sweeper->lock, LW_EXCLUSIVE);
	if (si_sweeper->launcher_pid == MyProcPid)
	{
		si_sweeper->launcher_pid = 0;
		si_sweeper->launcher_latch = NULL;
		si_sweeper->next_pass_at = 0;
	}
	LWLockRelease(si_sweeper->lock);
}

/* Tell stripe_idem_wake_sweeper() where to find us. */
static void
launcher_attach(void)
{
	LWLockAcquire(si_sweeper->lock, LW_EXCLUSIVE);
	si_sweeper->launcher_pid = MyProcPid;
	si_sweeper->launcher_latch = MyLatch;
	LWLockRelease(si_sweeper->lock);

	before_shmem_exit(launcher_detach, (Datum) 0);
}

/*
 * Take a pending stripe_idem_wake_sweeper() request, if any; *hurried is
 * how many hurried requests had been made by now.
 */
static bool
take_wake_request(uint64 *hurried)
{
	bool		woken;

	LWLockAcquire(si_sweeper->lock, LW_EXCLUSIVE);
	woken = si_sweeper->wake_requested;
	si_sweeper->wake_requested = false;
	*hurried = si_sweeper->hurry_requests;
	LWLockRelease(si_sweeper->lock);
	return woken;
}

/*
 * A hurried request is served by the first pass that started after it and
 * has ended; one made during a pass hurries that pass and the next.
 */
static void
end_hurry(uint64 hurried)
{
	LWLockAcquire(si_sweeper->lock, LW_EXCLUSIVE);
	if (si_sweeper->hurry_served < hurried)
		si_sweeper->hurry_served = hurried;
	LWLockRelease(si_sweeper->lock);
}

static void
set_next_pass(TimestampTz at)
{
	LWLockAcquire(si_sweeper->lock, LW_EXCLUSIVE);
	si_sweeper->next_pass_at = at;
	LWLockRelease(si_sweeper->lock);
}

/*
 * Log a condition of one database once, and again only after it changed.
 * With a message, the database was skipped and last_error says why; the
 * worker has already reported the other outcomes itself.
 */
static void
note_database(const SiPassTarget *target, SiSweepNote note, const char *message)
{
	SiSweepSlot *slot = &si_sweeper->slots[target->slot];
	bool		first = false;
	bool		announce = false;

	LWLockAcquire(si_sweeper->lock, LW_EXCLUSIVE);
	if (slot->generation == target->generation)
	{
		first = (note != SI_NOTE_NONE && slot->note != note);

		/*
		 * A database found in pg_database rather than listed: that it lacks
		 * the extension is the normal case, not worth a line, and one that
		 * vanished since the pass began is simply gone. That it has the
		 * extension is worth one line, the first time a pass succeeds.
		 */
		if (slot->discovered)
		{
			first = false;
			if (note == SI_NOTE_NONE && message == NULL &&
				slot->outcome == SI_SWEEP_OK && !slot->announced)
				announce = slot->announced = true;
			if (note == SI_NOTE_NOT_INSTALLED)
				slot->announced = false;
		}
		slot->note = note;
		if (message != NULL)
		{
			si_sweeper_set_error(slot, message);
			slot->outcome = SI_SWEEP_SKIPPED;
		}
	}
	LWLockRelease(si_sweeper->lock);

	if (announce)
		ereport(LOG,
				(errmsg("stripe_idem sweeper: sweeping database \"%s\", where extension \"%s\" is installed",
						NameStr(target->dbname), STRIPE_IDEM_EXTNAME),
				 errdetail("stripe_idem.databases is empty, so every database that has the extension is swept; this is logged once.")));
	if (!first)
		return;

	switch (note)
	{
		case SI_NOTE_NOT_INSTALLED:
			ereport(LOG,
					(errmsg("stripe_idem sweeper: extension \"%s\" is not installed in database \"%s\"",
							STRIPE_IDEM_EXTNAME, NameStr(target->dbname)),
					 errdetail("The database is skipped until the extension is created there; this is logged once."),
					 errhint("Create the extension there, or remove the database from stripe_idem.databases.")));
			break;
		case SI_NOTE_NO_DATABASE:
			ereport(LOG,
					(errmsg("stripe_idem sweeper: database \"%s\" does not exist",
							NameStr(target->dbname)),
					 errdetail("It is listed in stripe_idem.databases; it is skipped, and this is logged once."),
					 errhint("Remove it from stripe_idem.databases.")));
			break;
		case SI_NOTE_NO_CONNECTIONS:
			ereport(LOG,
					(errmsg("stripe_idem sweeper: database \"%s\" does not accept connections",
							NameStr(target->dbname)),
					 errdetail("It is listed in stripe_idem.databases; it is skipped, and this is logged once.")));
			break;
		case SI_NOTE_NONE:
			break;
	}
}

/*
 * Look up sweep_role. Returns false, having logged the problem once (and
 * shown it in every listed database's last_error), when it cannot be used.
 */
static bool
lookup_sweep_role(Oid *roleoid, char *problem)
{
	HeapTuple	tuple;

	*roleoid = InvalidOid;
	problem[0] = '\0';
	if (si_sweep_role == NULL || si_sweep_role[0] == '\0')
		return true;

	tuple = SearchSysCache1(AUTHNAME, CStringGetDatum(si_sweep_role));
	if (!HeapTupleIsValid(tuple))
		snprintf(problem, SI_SWEEPER_ERRLEN,
				 "role \"%s\" named by stripe_idem.sweep_role does not exist", si_sweep_role);
	else
	{
		Form_pg_authid form = (Form_pg_authid) GETSTRUCT(tuple);

		if (!form->rolcanlogin)
			snprintf(problem, SI_SWEEPER_ERRLEN,
					 "role \"%s\" named by stripe_idem.sweep_role is not permitted to log in",
					 si_sweep_role);
		*roleoid = form->oid;
		ReleaseSysCache(tuple);
	}
	return problem[0] == '\0';
}

/*
 * Find the listed databases in pg_database; the caller is in a
 * transaction. Without a database the shared catalogs' indexes may not be
 * usable yet, so this is a plain heap scan, like autovacuum's launcher.
 */
static void
lookup_databases(SiPassTarget *targets, int ntargets)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	int			i;

	for (i = 0; i < ntargets; i++)
	{
		targets[i].dboid = InvalidOid;
		targets[i].problem = SI_NOTE_NO_DATABASE;
	}

	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tuple = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database form = (Form_pg_database) GETSTRUCT(tuple);

		for (i = 0; i < ntargets; i++)
		{
			if (strcmp(NameStr(form->datname), NameStr(targets[i].dbname)) != 0)
				continue;
			targets[i].dboid = form->oid;
			targets[i].problem = SI_NOTE_NONE;
			if (!form->datallowconn)
				targets[i].problem = SI_NOTE_NO_CONNECTIONS;
#ifdef DATCONNLIMIT_INVALID_DB
			/* left behind by an interrupted DROP DATABASE */
			if (form->datconnlimit == DATCONNLIMIT_INVALID_DB)
				targets[i].problem = SI_NOTE_NO_DATABASE;
#endif
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
}

static int
compare_found(const void *a, const void *b)
{
	Oid			oa = ((const SiPassTarget *) a)->dboid;
	Oid			ob = ((const SiPassTarget *) b)->dboid;

	return oa < ob ? -1 : (oa > ob ? 1 : 0);
}

/*
 * No stripe_idem.databases: find every database that accepts connections
 * and is not a template, in one short transaction, and make them the ones
 * this pass visits, in the order of their OIDs (the oldest first: with more
 * than SI_SWEEPER_MAX_DATABASES the rest are left out, which is logged
 * once). Whether the extension is installed there is each worker's to find
 * out.
 */
static void
discover_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	SiPassTarget *found;
	int			nfound = 0;
	int			cap = SI_SWEEPER_MAX_DATABASES * 2;
	NameData	names[SI_SWEEPER_MAX_DATABASES];
	int			i;

	found = palloc(sizeof(SiPassTarget) * cap);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tuple = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database form = (Form_pg_database) GETSTRUCT(tuple);

		if (!form->datallowconn || form->datistemplate)
			continue;
#ifdef DATCONNLIMIT_INVALID_DB
		if (form->datconnlimit == DATCONNLIMIT_INVALID_DB)
			continue;
#endif
		if (nfound == cap)
		{
			cap *= 2;
			found = repalloc(found, sizeof(SiPassTarget) * cap);
		}
		found[nfound].dboid = form->oid;
		found[nfound].dbname = form->datname;
		nfound++;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(pass_cxt);

	qsort(found, nfound, sizeof(SiPassTarget), compare_found);
	if (nfound > SI_SWEEPER_MAX_DATABASES && !too_many_logged)
	{
		too_many_logged = true;
		ereport(LOG,
				(errmsg("stripe_idem sweeper: %d databases accept connections, more than the %d it can sweep",
						nfound, SI_SWEEPER_MAX_DATABASES),
				 errdetail("The %d oldest are visited; this is logged once.", SI_SWEEPER_MAX_DATABASES),
				 errhint("List the databases that have the extension in stripe_idem.databases.")));
	}
	for (i = 0; i < nfound && i < SI_SWEEPER_MAX_DATABASES; i++)
		names[i] = found[i].dbname;
	si_sweeper_publish_discovered(names, i);
}

/*
 * Start the worker for one database and wait until it has exited. Returns
 * false if no background worker slot was free: the pass stops there and
 * the next one tries again.
 */
static bool
sweep_one(const SiPassTarget *target, Oid roleoid)
{
	SiSweepSlot *slot = &si_sweeper->slots[target->slot];
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	SiSweepOrder order;
	SiSweepOutcome outcome = SI_SWEEP_NONE;
	bool		busy;

	/*
	 * A worker from before a launcher restart may still be sweeping there;
	 * let it finish rather than start a second one.
	 */
	LWLockAcquire(si_sweeper->lock, LW_EXCLUSIVE);
	busy = slot->generation != target->generation || slot->worker_pid != 0;
	if (!busy)
		slot->outcome = SI_SWEEP_PENDING;
	LWLockRelease(si_sweeper->lock);
	if (busy)
		return true;

	memset(&worker, 0, sizeof(worker));
	snprintf(worker.bgw_name, BGW_MAXLEN, "stripe_idem sweeper for database %s",
			 NameStr(target->dbname));
	strlcpy(worker.bgw_type, "stripe_idem sweeper", BGW_MAXLEN);
	strlcpy(worker.bgw_library_name, "stripe_idem", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "si_sweeper_worker_main", BGW_MAXLEN);
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	worker.bgw_main_arg = Int32GetDatum(target->slot);
	worker.bgw_notify_pid = MyProcPid;
	order.dboid = target->dboid;
	order.roleoid = roleoid;
	order.generation = target->generation;
	StaticAssertStmt(sizeof(SiSweepOrder) <= BGW_EXTRALEN, "SiSweepOrder does not fit bgw_extra");
	memcpy(worker.bgw_extra, &order, sizeof(order));

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		bool		first;

		LWLockAcquire(si_sweeper->lock, LW_EXCLUSIVE);
		first = !si_sweeper->no_slot_logged;
		si_sweeper->no_slot_logged = true;
		if (slot->generation == target->generation)
		{
			slot->outcome = SI_SWEEP_SKIPPED;
			si_sweeper_set_error(slot, "no free background worker slot");
		}
		LWLockRelease(si_sweeper->lock);

		if (first)
			ereport(LOG,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("stripe_idem sweeper: could not start a worker for database \"%s\": no free background worker slot",
							NameStr(target->dbname)),
					 errdetail("The sweeper tries again on its next pass; this is logged once."),
					 errhint("Raise max_worker_processes (now %d); the sweeper needs two slots.",
							 max_worker_processes)));
		return false;
	}

	LWLockAcquire(si_sweeper->lock, LW_EXCLUSIVE);
	si_sweeper->no_slot_logged = false;
	LWLockRelease(si_sweeper->lock);

	/*
	 * The postmaster signals us when the worker starts and stops
	 * (bgw_notify_pid), which sets our latch; the timeout is a safety net.
	 * SIGTERM ends the wait at once; the worker, which the postmaster
	 * signals itself on shutdown, is not waited for then.
	 */
	for (;;)
	{
		pid_t		pid;
		BgwHandleStatus status = GetBackgroundWorkerPid(handle, &pid);

		if (status == BGWH_STOPPED)
			break;
		if (status == BGWH_POSTMASTER_DIED)
			proc_exit(1);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, si_wait_event(wait_worker_event, "StripeIdemSweeperWorker"));
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	pfree(handle);

	LWLockAcquire(si_sweeper->lock, LW_EXCLUSIVE);
	if (slot->generation == target->generation)
	{
		outcome = slot->outcome;
		if (outcome == SI_SWEEP_PENDING)
		{
			/* the worker never got as far as its first report */
			slot->outcome = SI_SWEEP_FAILED;
			si_sweeper_set_error(slot, "sweeper worker exited before starting its pass (see the server log)");
		}
	}
	LWLockRelease(si_sweeper->lock);

	/* The worker connected: forget whatever kept it out before. */
	if (outcome == SI_SWEEP_NOT_INSTALLED)
		note_database(target, SI_NOTE_NOT_INSTALLED, NULL);
	else if (outcome == SI_SWEEP_OK || outcome == SI_SWEEP_FAILED)
		note_database(target, SI_NOTE_NONE, NULL);
	return true;
}

/* One pass over the listed databases. */
static void
run_pass(void)
{
	SiPassTarget targets[SI_SWEEPER_MAX_DATABASES];
	int			ntargets = 0;
	char		role_problem[SI_SWEEPER_ERRLEN];
	bool		role_ok;
	bool		log_role = false;
	Oid			roleoid;
	int			i,
				s;

	if (RecoveryInProgress())
		return;

	if (si_sweeper_discovering())
		discover_databases();

	LWLockAcquire(si_sweeper->lock, LW_SHARED);
	for (i = 0; i < SI_SWEEPER_MAX_DATABASES; i++)
	{
		for (s = 0; s < SI_SWEEPER_MAX_DATABASES; s++)
		{
			SiSweepSlot *slot = &si_sweeper->slots[s];

			if (slot->listed && slot->position == i)
			{
				targets[ntargets].slot = s;
				targets[ntargets].generation = slot->generation;
				targets[ntargets].dbname = slot->dbname;
				ntargets++;
				break;
			}
		}
	}
	LWLockRelease(si_sweeper->lock);
	if (ntargets == 0)
		return;

	/* Read the shared catalogs in one short transaction. */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	role_ok = lookup_sweep_role(&roleoid, role_problem);
	lookup_databases(targets, ntargets);
	CommitTransactionCommand();
	MemoryContextSwitchTo(pass_cxt);

	LWLockAcquire(si_sweeper->lock, LW_EXCLUSIVE);
	if (strcmp(si_sweeper->role_problem, role_problem) != 0)
	{
		log_role = !role_ok;
		strlcpy(si_sweeper->role_problem, role_problem, SI_SWEEPER_ERRLEN);
	}
	if (!role_ok)
	{
		for (i = 0; i < ntargets; i++)
		{
			SiSweepSlot *slot = &si_sweeper->slots[targets[i].slot];

			if (slot->generation == targets[i].generation)
			{
				slot->outcome = SI_SWEEP_SKIPPED;
				si_sweeper_set_error(slot, role_problem);
			}
		}
	}
	LWLockRelease(si_sweeper->lock);
	if (log_role)
		ereport(LOG,
				(errmsg("stripe_idem sweeper: %s", role_problem),
				 errdetail("No database is swept until this is fixed; this is logged once."),
				 errhint("Create the role with LOGIN, or change stripe_idem.sweep_role and restart the server.")));
	if (!role_ok)
		return;

	for (i = 0; i < ntargets; i++)
	{
		SiPassTarget *target = &targets[i];
		char		message[SI_SWEEPER_ERRLEN];

		CHECK_FOR_INTERRUPTS();
		switch (target->problem)
		{
			case SI_NOTE_NO_DATABASE:
				snprintf(message, sizeof(message), "database \"%s\" does not exist",
						 NameStr(target->dbname));
				note_database(target, target->problem, message);
				continue;
			case SI_NOTE_NO_CONNECTIONS:
				snprintf(message, sizeof(message), "database \"%s\" does not accept connections",
						 NameStr(target->dbname));
				note_database(target, target->problem, message);
				continue;
			default:
				break;
		}
		if (RecoveryInProgress() || !sweep_one(target, roleoid))
			break;
	}
}

void
si_sweeper_launcher_main(Datum main_arg)
{
	TimestampTz last_pass_start = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* No database: only the shared catalogs, pg_database and pg_authid. */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	launcher_attach();
	si_sweeper_publish_databases();
	ereport(DEBUG1, (errmsg_internal("stripe_idem launcher started")));

	pass_cxt = AllocSetContextCreate(TopMemoryContext, "stripe_idem launcher",
									 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		TimestampTz now;
		TimestampTz due;
		bool		woken;
		uint64		hurried;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			si_sweeper_publish_databases();
		}

		/*
		 * The first pass runs right after start; then one every interval,
		 * counted from the start of the previous pass. A wake request runs
		 * one now, even while sweeping is paused (interval 0).
		 */
		woken = take_wake_request(&hurried);
		now = GetCurrentTimestamp();
		if (woken)
			due = now;
		else if (si_sweep_interval_secs == 0)
			due = 0;
		else if (last_pass_start == 0)
			due = now;
		else
			due = TimestampTzPlusMilliseconds(last_pass_start,
											  si_sweep_interval_secs * (int64) 1000);

		if (due != 0 && due <= now)
		{
			last_pass_start = now;
			set_next_pass(si_sweep_interval_secs == 0 ? 0 :
						  TimestampTzPlusMilliseconds(now, si_sweep_interval_secs * (int64) 1000));
			MemoryContextSwitchTo(pass_cxt);
			run_pass();
			end_hurry(hurried);
			MemoryContextSwitchTo(TopMemoryContext);
			MemoryContextReset(pass_cxt);
			pgstat_report_stat(true);
			continue;
		}

		set_next_pass(due);
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | (due != 0 ? WL_TIMEOUT : 0),
						 due != 0 ? Min(TimestampDifferenceMilliseconds(now, due), SI_MAX_NAP_MS) : -1L,
						 si_wait_event(nap_event, "StripeIdemSweeperLauncherMain"));
		ResetLatch(MyLatch);
	}
}
