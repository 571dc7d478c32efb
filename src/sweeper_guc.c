/*-------------------------------------------------------------------------
 *
 * sweeper_guc.c
 *	  Settings of the background sweeper.
 *
 * They exist only when the library is preloaded: without the preload there
 * is no sweeper for them to steer. All are operator settings, read from
 * postgresql.conf (or ALTER SYSTEM) and hidden from ordinary users.
 *
 * stripe_idem.databases is parsed once, by its check hook, into a list
 * the launcher and the views share; the other processes never reparse it.
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/varlena.h"

/* Largest number of rows one sweeper transaction deletes. */
#define SI_MAX_SWEEP_BATCH		1000000

static char *si_sweep_databases = NULL;
const SiDatabaseList *si_sweep_database_list = NULL;
int			si_sweep_interval_secs = 60;
int			si_sweep_batch_size = 10000;
int			si_sweep_batch_delay_ms = -1;
char	   *si_sweep_role = NULL;
bool		si_log_sweeps = true;

/*
 * Parse the list of databases. The parsed list becomes the setting's
 * "extra", which the GUC machinery keeps with the value and frees with it,
 * so it must come from the allocator it frees with (si_guc_malloc: malloc
 * up to 15, guc_malloc from 16).
 */
static bool
check_databases(char **newval, void **extra, GucSource source)
{
	char	   *raw = pstrdup(*newval);
	List	   *names;
	ListCell   *lc;
	SiDatabaseList *list;
	int			i = 0;

	if (!SplitIdentifierString(raw, ',', &names))
	{
		GUC_check_errdetail("List syntax is invalid.");
		list_free(names);
		pfree(raw);
		return false;
	}
	if (list_length(names) > SI_SWEEPER_MAX_DATABASES)
	{
		GUC_check_errdetail("At most %d databases can be listed; %d were given.",
							SI_SWEEPER_MAX_DATABASES, list_length(names));
		list_free(names);
		pfree(raw);
		return false;
	}

	list = si_guc_malloc(offsetof(SiDatabaseList, names) +
						 Max(list_length(names), 1) * sizeof(NameData));
	if (list == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		list_free(names);
		pfree(raw);
		return false;
	}

	foreach(lc, names)
	{
		const char *name = (const char *) lfirst(lc);
		int			j;

		for (j = 0; j < i; j++)
		{
			if (strcmp(NameStr(list->names[j]), name) == 0)
			{
				GUC_check_errdetail("Database \"%s\" is listed more than once.", name);
				si_guc_free(list);
				list_free(names);
				pfree(raw);
				return false;
			}
		}
		namestrcpy(&list->names[i++], name);
	}
	list->count = i;

	list_free(names);
	pfree(raw);
	*extra = list;
	return true;
}

static void
assign_databases(const char *newval, void *extra)
{
	si_sweep_database_list = (const SiDatabaseList *) extra;
}

static bool
check_sweep_role(char **newval, void **extra, GucSource source)
{
	if (strlen(*newval) >= NAMEDATALEN)
	{
		GUC_check_errdetail("A role name is at most %d bytes long.", NAMEDATALEN - 1);
		return false;
	}
	return true;
}

/*
 * Called from _PG_init while shared_preload_libraries is processed, before
 * the prefix is reserved.
 */
void
si_sweeper_define_gucs(void)
{
	DefineCustomStringVariable("stripe_idem.databases",
							   "Databases the background sweeper deletes expired keys in.",
							   "A comma-separated list. Empty (the default): every database that has the extension.",
							   &si_sweep_databases,
							   "",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT | GUC_SUPERUSER_ONLY,
							   check_databases, assign_databases, NULL);

	DefineCustomIntVariable("stripe_idem.sweep_interval",
							"Time between the background sweeper's passes.",
							"0 pauses sweeping; stripe_idem_wake_sweeper() still starts a pass.",
							&si_sweep_interval_secs,
							60,
							0, SI_MAX_SECONDS,
							PGC_SIGHUP,
							GUC_UNIT_S | GUC_SUPERUSER_ONLY,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stripe_idem.sweep_batch_size",
							"Rows the background sweeper deletes per transaction.",
							"A pass commits after every batch and ends with the first short batch.",
							&si_sweep_batch_size,
							10000,
							1, SI_MAX_SWEEP_BATCH,
							PGC_SIGHUP,
							GUC_SUPERUSER_ONLY,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stripe_idem.sweep_batch_delay",
							"Pause of the background sweeper after each batch it commits.",
							"-1 pauses half as long as the batch took; 0 never pauses. stripe_idem_wake_sweeper(true) skips the pauses of the pass it starts.",
							&si_sweep_batch_delay_ms,
							-1,
							-1, SI_MAX_BATCH_DELAY_MS,
							PGC_SIGHUP,
							GUC_UNIT_MS | GUC_SUPERUSER_ONLY,
							NULL, NULL, NULL);

	DefineCustomStringVariable("stripe_idem.sweep_role",
							   "Role the background sweeper connects as.",
							   "Empty means the bootstrap superuser. The role needs LOGIN and SELECT, UPDATE and DELETE on the keys table.",
							   &si_sweep_role,
							   "",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   check_sweep_role, NULL, NULL);

	DefineCustomBoolVariable("stripe_idem.log_sweeps",
							 "Logs one line for each sweeper pass that deleted rows.",
							 NULL,
							 &si_log_sweeps,
							 true,
							 PGC_SIGHUP,
							 GUC_SUPERUSER_ONLY,
							 NULL, NULL, NULL);
}
