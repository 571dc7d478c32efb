/*-------------------------------------------------------------------------
 *
 * sweeper_state.c
 *	  The background sweeper's shared memory, and the SQL functions that
 *	  read it (the stripe_idem_sweeper view) or poke the launcher
 *	  (stripe_idem_wake_sweeper).
 *
 * One slot per listed database keeps that database's history: when its
 * last pass started and finished, how many rows it deleted, why it last
 * failed. The launcher assigns slots to the names in stripe_idem.databases
 * (keeping a slot, and its history, for as long as the name stays listed);
 * a per-database worker writes only its own slot, and only while the
 * slot's generation is the one it was started for. One LWLock protects the
 * lot: it is taken a few times per batch, never across anything slow.
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#define SI_SWEEPER_TRANCHE	"stripe_idem sweeper"

PG_FUNCTION_INFO_V1(stripe_idem_sweeper);
PG_FUNCTION_INFO_V1(stripe_idem_wake_sweeper);
PG_FUNCTION_INFO_V1(stripe_idem_wake_sweeper_1_1);

SiSweeperShared *si_sweeper = NULL;

void
si_sweeper_request_shmem(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(SiSweeperShared)));
	RequestNamedLWLockTranche(SI_SWEEPER_TRANCHE, 1);
}

/*
 * With stripe_idem.databases empty (the default) the launcher finds the
 * databases itself, every pass, in pg_database: see sweeper_launcher.c.
 */
bool
si_sweeper_discovering(void)
{
	return si_sweep_database_list == NULL || si_sweep_database_list->count == 0;
}

/*
 * Point the slots at the names now swept (listed, or found by the
 * launcher when discovered is true); the caller holds the lock.
 */
static void
publish_names_locked(const NameData *names, int count, bool discovered)
{
	int			slot_of[SI_SWEEPER_MAX_DATABASES];
	int			i,
				s;

	for (s = 0; s < SI_SWEEPER_MAX_DATABASES; s++)
		si_sweeper->slots[s].listed = false;

	/* First keep the slots of names that stay listed... */
	for (i = 0; i < count; i++)
	{
		slot_of[i] = -1;
		for (s = 0; s < SI_SWEEPER_MAX_DATABASES; s++)
		{
			SiSweepSlot *slot = &si_sweeper->slots[s];

			if (slot->in_use && !slot->listed &&
				strcmp(NameStr(slot->dbname), NameStr(names[i])) == 0)
			{
				slot->listed = true;
				slot->position = i;
				slot->discovered = discovered;
				slot_of[i] = s;
				break;
			}
		}
	}

	/*
	 * ...then give new names a never-used slot, or else the slot of a name
	 * no longer listed. There are as many slots as names may be listed.
	 */
	for (i = 0; i < count; i++)
	{
		SiSweepSlot *slot = NULL;
		uint32		generation;

		if (slot_of[i] >= 0)
			continue;
		for (s = 0; s < SI_SWEEPER_MAX_DATABASES && slot == NULL; s++)
			if (!si_sweeper->slots[s].in_use)
				slot = &si_sweeper->slots[s];
		for (s = 0; s < SI_SWEEPER_MAX_DATABASES && slot == NULL; s++)
			if (!si_sweeper->slots[s].listed)
				slot = &si_sweeper->slots[s];
		Assert(slot != NULL);

		generation = slot->generation + 1;
		memset(slot, 0, sizeof(SiSweepSlot));
		slot->generation = generation;
		slot->in_use = true;
		slot->listed = true;
		slot->position = i;
		slot->discovered = discovered;
		namestrcpy(&slot->dbname, NameStr(names[i]));
	}
}

static void
publish_databases_locked(void)
{
	const SiDatabaseList *list = si_sweep_database_list;

	/*
	 * Without a list the launcher publishes what it finds at its next
	 * pass; until then the databases found last stay.
	 */
	if (si_sweeper_discovering())
		return;
	publish_names_locked(list->names, list->count, false);
}

/* The launcher found these databases in pg_database (no list is set). */
void
si_sweeper_publish_discovered(const NameData *names, int count)
{
	LWLockAcquire(si_sweeper->lock, LW_EXCLUSIVE);
	publish_names_locked(names, count, true);
	LWLockRelease(si_sweeper->lock);
}

void
si_sweeper_startup_shmem(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	si_sweeper = ShmemInitStruct("stripe_idem sweeper", sizeof(SiSweeperShared), &found);
	if (!found)
	{
		memset(si_sweeper, 0, sizeof(SiSweeperShared));
		si_sweeper->lock = &(GetNamedLWLockTranche(SI_SWEEPER_TRANCHE))->lock;
		/* So that the view lists the databases before the launcher runs. */
		publish_databases_locked();
	}
	LWLockRelease(AddinShmemInitLock);
}

/* After a reload: follow changes to stripe_idem.databases. */
void
si_sweeper_publish_databases(void)
{
	LWLockAcquire(si_sweeper->lock, LW_EXCLUSIVE);
	publish_databases_locked();
	LWLockRelease(si_sweeper->lock);
}

/* Set a slot's last_error ("" or NULL clears it); the caller holds the lock. */
void
si_sweeper_set_error(SiSweepSlot *slot, const char *message)
{
	strlcpy(slot->last_error, message ? message : "", SI_SWEEPER_ERRLEN);
}

/*
 * stripe_idem_sweeper() RETURNS SETOF record
 *
 * One row per listed database, in the order of stripe_idem.databases;
 * without a list, one per database found where the extension is installed
 * (a database whose worker found no extension is left out, and so is one
 * not visited yet), in the order of their OIDs.
 */
Datum
stripe_idem_sweeper(PG_FUNCTION_ARGS)
{
#define SI_SWEEPER_COLS 8
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SiSweepSlot *rows;
	int			nrows = 0;
	TimestampTz next_pass_at;
	int			i,
				s;

	si_require_shmem("stripe_idem_sweeper");
	InitMaterializedSRF(fcinfo, 0);

	/* Copy under the lock, build tuples after releasing it. */
	rows = palloc(sizeof(SiSweepSlot) * SI_SWEEPER_MAX_DATABASES);
	LWLockAcquire(si_sweeper->lock, LW_SHARED);
	next_pass_at = si_sweeper->launcher_pid != 0 ? si_sweeper->next_pass_at : 0;
	for (i = 0; i < SI_SWEEPER_MAX_DATABASES; i++)
	{
		for (s = 0; s < SI_SWEEPER_MAX_DATABASES; s++)
		{
			SiSweepSlot *slot = &si_sweeper->slots[s];

			if (slot->listed && slot->position == i)
			{
				if (!slot->discovered ||
					(slot->last_started != 0 && slot->note != SI_NOTE_NOT_INSTALLED &&
					 slot->outcome != SI_SWEEP_NOT_INSTALLED))
					rows[nrows++] = *slot;
				break;
			}
		}
	}
	LWLockRelease(si_sweeper->lock);

	for (i = 0; i < nrows; i++)
	{
		SiSweepSlot *slot = &rows[i];
		Datum		values[SI_SWEEPER_COLS];
		bool		nulls[SI_SWEEPER_COLS] = {0};

		values[0] = NameGetDatum(&slot->dbname);
		values[1] = TimestampTzGetDatum(slot->last_started);
		nulls[1] = slot->last_started == 0;
		values[2] = TimestampTzGetDatum(slot->last_finished);
		nulls[2] = slot->last_finished == 0;
		/* "last" describes the most recent pass, also while it is running */
		values[3] = Int64GetDatum(slot->last_rows_deleted);
		nulls[3] = slot->last_started == 0;
		values[4] = Int64GetDatum(slot->total_rows_deleted);
		values[5] = Int64GetDatum(slot->passes);
		values[6] = CStringGetTextDatum(slot->last_error);
		nulls[6] = slot->last_error[0] == '\0';
		values[7] = TimestampTzGetDatum(next_pass_at);
		nulls[7] = next_pass_at == 0;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	return (Datum) 0;
}

/*
 * Ask the launcher for a pass now, even while sweep_interval is 0. With
 * hurry, the pass runs without the pauses between batches
 * (stripe_idem.sweep_batch_delay), and so does the rest of a pass already
 * running: its worker is woken from the pause it is in. False when no
 * launcher is running (not yet started, restarting, or the server is in
 * recovery).
 */
static bool
wake_sweeper(bool hurry)
{
	bool		woken = false;
	int			s;

	si_require_shmem("stripe_idem_wake_sweeper");

	LWLockAcquire(si_sweeper->lock, LW_EXCLUSIVE);
	if (si_sweeper->launcher_pid != 0 && si_sweeper->launcher_latch != NULL)
	{
		si_sweeper->wake_requested = true;
		if (hurry)
			si_sweeper->hurry_requests++;
		SetLatch(si_sweeper->launcher_latch);
		woken = true;
	}
	if (hurry)
	{
		for (s = 0; s < SI_SWEEPER_MAX_DATABASES; s++)
		{
			pid_t		pid = si_sweeper->slots[s].worker_pid;
			PGPROC	   *proc = pid != 0 ? BackendPidGetProc(pid) : NULL;

			if (proc != NULL)
				SetLatch(&proc->procLatch);
		}
	}
	LWLockRelease(si_sweeper->lock);

	return woken;
}

/* True while a stripe_idem_wake_sweeper(true) request is in force. */
bool
si_sweeper_hurried(void)
{
	bool		hurry;

	LWLockAcquire(si_sweeper->lock, LW_SHARED);
	hurry = si_sweeper->hurry_requests != si_sweeper->hurry_served;
	LWLockRelease(si_sweeper->lock);
	return hurry;
}

/* stripe_idem_wake_sweeper() RETURNS boolean, as in 1.0 */
Datum
stripe_idem_wake_sweeper(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(wake_sweeper(false));
}

/* stripe_idem_wake_sweeper(hurry boolean) RETURNS boolean, from 1.1 */
Datum
stripe_idem_wake_sweeper_1_1(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(wake_sweeper(!PG_ARGISNULL(0) && PG_GETARG_BOOL(0)));
}
