/*-------------------------------------------------------------------------
 *
 * stripe_idem.c
 *	  Module entry point: settings and shared memory hooks.
 *
 * The SQL functions work whether or not the library is preloaded. Shared
 * memory (statistics, the sweeper's state) and the background sweeper need
 * shared_preload_libraries = 'stripe_idem'.
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/guc.h"

/* From PostgreSQL 18, pg_get_loaded_modules() names the library and its version. */
#if PG_VERSION_NUM >= 180000
PG_MODULE_MAGIC_EXT(.name = STRIPE_IDEM_EXTNAME, .version = STRIPE_IDEM_LIBRARY_VERSION);
#else
PG_MODULE_MAGIC;
#endif

int			si_default_ttl_secs = SECS_PER_DAY;
int			si_default_lease_secs = 90;
bool		si_preloaded = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);

static void
si_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	si_stats_request_shmem();
	si_sweeper_request_shmem();
}

static void
si_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	si_stats_startup_shmem();
	si_sweeper_startup_shmem();
}

void
_PG_init(void)
{
	DefineCustomIntVariable("stripe_idem.default_ttl",
							"How long a key is kept when the caller passes no ttl.",
							"After this the operation counts as new again and the sweeper may delete it.",
							&si_default_ttl_secs,
							SECS_PER_DAY,
							SI_MIN_SECONDS, SI_MAX_SECONDS,
							PGC_USERSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stripe_idem.default_lease",
							"How long begin_stripe_idempotency holds an operation when the caller passes no lease.",
							"Choose it longer than the Stripe client's timeout times its attempts; it may not exceed the ttl.",
							&si_default_lease_secs,
							90,
							SI_MIN_SECONDS, SI_MAX_SECONDS,
							PGC_USERSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	if (process_shared_preload_libraries_in_progress)
	{
		si_preloaded = true;

		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = si_shmem_request;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = si_shmem_startup;

		si_sweeper_define_gucs();
		si_sweeper_register_launcher();
	}

	MarkGUCPrefixReserved("stripe_idem");
}
