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
int			si_key_window_secs = SECS_PER_DAY;
int			si_settle_secs = 10 * SECS_PER_MINUTE;
int			si_unresolved_retention_secs = 30 * SECS_PER_DAY;
bool		si_allow_begin_in_transaction = false;
int			si_max_request_params_bytes = 1024 * 1024;
int			si_max_response_bytes = 1024 * 1024;
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

	/*
	 * Stripe keeps an Idempotency-Key for at least 24 hours and may forget
	 * it any time after; a key sent later may create a second object.
	 */
	DefineCustomIntVariable("stripe_idem.key_window",
							"How long after a key was made begin_stripe_idempotency may still hand it out.",
							"A lease that would end later is refused and the operation answered \"unresolved\". Stripe keeps keys for at least 24 hours: raise it only for an account whose keys are kept longer, or per call for keys that never reach Stripe.",
							&si_key_window_secs,
							SECS_PER_DAY,
							SI_MIN_SECONDS, SI_MAX_SECONDS,
							PGC_USERSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	/*
	 * A request the Stripe SDK gave up on (its timeout, at the end of the
	 * lease) may still be acted on by Stripe a while later. A takeover must
	 * leave that much of the key window, and a restart under a new key
	 * must wait that long after the last lease ended, or the late request
	 * could create an object with a key Stripe forgot, or after the
	 * application found none. An operator's setting.
	 */
	DefineCustomIntVariable("stripe_idem.settle_time",
							"How long after a lease ended Stripe may still act on a request sent under it.",
							"Takeovers keep this much of the key window free, and restart_stripe_idempotency waits this long after the last lease ended.",
							&si_settle_secs,
							10 * SECS_PER_MINUTE,
							0, SECS_PER_DAY,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	/*
	 * One value for every session and the sweeper, from the configuration
	 * file: a session must not be able to make cleanup delete an
	 * unresolved operation sooner.
	 */
	DefineCustomIntVariable("stripe_idem.unresolved_retention",
							"How long an expired operation whose outcome is unknown is kept.",
							"Until then begin answers \"unresolved\" and cleanup keeps the row; after it the row counts as absent.",
							&si_unresolved_retention_secs,
							30 * SECS_PER_DAY,
							SECS_PER_DAY, SI_MAX_RETENTION_SECONDS,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("stripe_idem.allow_begin_in_transaction",
							 "Lets begin_stripe_idempotency run inside a transaction block.",
							 "Only for callers that commit before they send the key to Stripe: a lease rolled back after its key was sent is lost, and the retry gets a new key.",
							 &si_allow_begin_in_transaction,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	/* An operator's limits: an application role must not raise its own. */
	DefineCustomIntVariable("stripe_idem.max_request_params_size",
							"Largest request_params begin_stripe_idempotency accepts.",
							"Larger values are refused before any work, with SQLSTATE 54000.",
							&si_max_request_params_bytes,
							1024 * 1024,
							SI_MIN_SIZE_LIMIT, SI_MAX_SIZE_LIMIT,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stripe_idem.max_response_size",
							"Largest response record_stripe_idempotency accepts.",
							"Larger values are refused before any work, with SQLSTATE 54000.",
							&si_max_response_bytes,
							1024 * 1024,
							SI_MIN_SIZE_LIMIT, SI_MAX_SIZE_LIMIT,
							PGC_SUSET,
							GUC_UNIT_BYTE,
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
