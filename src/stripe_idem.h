/*-------------------------------------------------------------------------
 *
 * stripe_idem.h
 *	  Declarations shared by the stripe_idem source files.
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STRIPE_IDEM_H
#define STRIPE_IDEM_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/jsonb.h"
#include "utils/snapshot.h"
#include "utils/timestamp.h"

#include "compat.h"

#define STRIPE_IDEM_EXTNAME		"stripe_idem"
#define STRIPE_IDEM_TABLE		"stripe_idempotency_keys"
/* The library's own version: the newest SQL version it serves. */
#define STRIPE_IDEM_LIBRARY_VERSION	"1.2"

/* Limits from the API contract (and the table's CHECK constraints). */
#define SI_MAX_OPERATION_TYPE	64
#define SI_MAX_OPERATION_ID		128
#define SI_MAX_KEY				255		/* Stripe's Idempotency-Key limit */
#define SI_MAX_RESOURCE_ID		255
#define SI_UUID_STRLEN			36

/*
 * Column numbers of stripe_idempotency_keys, fixed by the install scripts,
 * for the code that reads whole rows (the CHECK function, the row fetch).
 */
typedef enum SiColumn
{
	SI_COL_OPERATION_TYPE = 1,
	SI_COL_OPERATION_ID,
	SI_COL_KEY,
	SI_COL_FINGERPRINT,
	SI_COL_STATUS,
	SI_COL_RESOURCE_ID,
	SI_COL_RESPONSE,
	SI_COL_ATTEMPTS,
	SI_COL_LOCKED_UNTIL,
	SI_COL_CREATED_AT,
	SI_COL_UPDATED_AT,
	SI_COL_COMPLETED_AT,
	SI_COL_EXPIRES_AT
} SiColumn;
#define SI_NCOLS	SI_COL_EXPIRES_AT

/* Range of the ttl and lease settings, in seconds. */
#define SI_MIN_SECONDS			1
#define SI_MAX_SECONDS			(365 * SECS_PER_DAY)

/* stripe_idem.c: settings */
extern int	si_default_ttl_secs;
extern int	si_default_lease_secs;
extern int	si_key_window_secs;
extern int	si_settle_secs;
extern int	si_unresolved_retention_secs;
extern bool si_allow_begin_in_transaction;
extern int	si_max_request_params_bytes;
extern int	si_max_response_bytes;

/* Longest stripe_idem.unresolved_retention: ten years, in seconds. */
#define SI_MAX_RETENTION_SECONDS	(3650 * SECS_PER_DAY)
/* Range of the size limits, in bytes. */
#define SI_MIN_SIZE_LIMIT		1024
#define SI_MAX_SIZE_LIMIT		(1024 * 1024 * 1024)

/* validate.c: argument checks shared by every SQL-callable function */
extern text *si_required_text(FunctionCallInfo fcinfo, int argno, const char *argname);
extern void si_check_operation_type(const text *value);
extern void si_check_operation_id(const text *value);
extern void si_check_idempotency_key(const text *value);
extern void si_check_resource_id(const text *value);
extern bool si_is_type_char(unsigned char c);
extern bool si_is_printable_char(unsigned char c);
extern Interval *si_optional_interval(FunctionCallInfo fcinfo, int argno,
									  const char *argname, int default_secs,
									  int64 max_usecs, const char *max_name);
extern int64 si_interval_usecs(const Interval *interval);
extern void si_check_size(FunctionCallInfo fcinfo, int argno, const char *argname,
						  int limit, const char *setting);
extern void si_refuse_in_transaction_block(const char *funcname);

/* keygen.c: Stripe Idempotency-Keys */
extern text *si_make_key(const text *operation_type, const text *operation_id);

/* fingerprint.c: sha256 of the request parameters */
extern text *si_fingerprint(Jsonb *params);

/* plans.c: SPI plans prepared once per backend against the extension's table */
typedef enum SiPlanId
{
	SI_PLAN_BEGIN,
	SI_PLAN_SELECT_ROW,
	SI_PLAN_TAKEOVER,
	SI_PLAN_REPLACE_EXPIRED,
	SI_PLAN_CHECK,
	SI_PLAN_COMPLETE_OWN,
	SI_PLAN_KEY_OWNER,
	SI_PLAN_INSERT_COMPLETED,
	SI_PLAN_REPLACE_EXPIRED_COMPLETED,
	SI_PLAN_RELEASE,
	SI_PLAN_RESTART,
	SI_PLAN_CLEANUP_BATCH,
	SI_NUM_PLANS
} SiPlanId;

extern SPIPlanPtr si_plan(SiPlanId id);
extern bool si_extension_ready(void);
extern const char *si_table_identity(Oid *table_oid);
extern bool si_direct_reads_ok(void);
extern int	si_execute_on(SiPlanId id, const char *relation, Datum *args, long count);

/* citus.c: the table distributed by Citus (found through SQL, never linked) */
extern List *si_citus_local_shards(bool *distributed);
extern int64 si_citus_cleanup_workers(int batch_size);
extern bool si_citus_is_coordinator(void);

/*
 * result.c: SPI results and the one-row results of the table functions.
 *
 * An operation's row as begin, record and restart judge it, "now" being
 * statement_timestamp():
 *	  expired		expires_at <= now
 *	  absent		gone in all but the sweep: completed and expired, or in
 *					progress and expired longer than stripe_idem.unresolved_retention;
 *					it counts as if there were no row
 *	  unresolved	in progress, no live lease, and either expired (not yet
 *					absent) or too old for its key to be sent again: a new
 *					lease, plus the settle time, would end after created_at +
 *					key window, when Stripe may have forgotten the key.
 *					Whether Stripe acted on the key is unknown, so nobody
 *					gets a lease on it, and no new key either, until the
 *					application reconciles.
 *	  settled		no request sent under a lease can still reach Stripe: the
 *					last lease ended at least stripe_idem.settle_time ago
 *					(a request the SDK gave up on may still be acted on by
 *					Stripe for a while). An unresolved operation is answered
 *					as such only once settled (in_progress until then), so
 *					that the application asks Stripe only when no late
 *					request can still make the object; only then may it be
 *					restarted under a new key.
 */
typedef struct SiRow
{
	Datum		key;			/* text, never null */
	Datum		fingerprint;	/* text */
	bool		fingerprint_null;
	bool		completed;		/* status = 'completed' (else in_progress) */
	Datum		resource_id;	/* text */
	bool		resource_id_null;
	Datum		response;		/* jsonb */
	bool		response_null;
	int32		attempts;
	Datum		status;			/* text, as stored */
	bool		lease_live;		/* locked_until > now */
	bool		settled;		/* locked_until is NULL or <= now - settle time */
	TimestampTz lease_end;		/* locked_until, when not NULL */
	Datum		lease_left;		/* interval, locked_until - now */
	bool		lease_left_null;
	bool		expired;		/* expires_at <= now */
	bool		absent;			/* see above */
	TimestampTz created_at;		/* when the key was made */
	TimestampTz expires_at;
} SiRow;

extern bool si_fetch_row(Datum operation_type, Datum operation_id, SiRow *row);
extern bool si_probe_row(Datum operation_type, Datum operation_id, Snapshot snapshot,
						 SiRow *row);
extern bool si_read_operation(Datum operation_type, Datum operation_id, SiRow *row);
extern void si_read_row(Datum whole_row, SiRow *row);
extern bool si_row_unresolved(const SiRow *row, int64 lease_usecs, int64 window_usecs);
extern TimestampTz si_takeover_cutoff(int64 lease_usecs, int64 window_usecs);
extern TimestampTz si_retention_cutoff(void);
extern TimestampTz si_settle_cutoff(void);
extern bool si_text_equal(Datum a, Datum b);
extern void si_deform_row(Datum row, Datum *values, bool *nulls);
extern void si_return_row(FunctionCallInfo fcinfo, Datum *values, bool *nulls);
extern void si_materialize(FunctionCallInfo fcinfo);
extern Datum si_spi_value(int row, int col, bool *isnull);
extern void si_spi_check(int rc, int expected, const char *what);

/* cleanup.c: the deletion rule shared by the SQL function and the sweeper */
extern int64 si_cleanup_batch(int batch_size, TimestampTz *lower_bound);

/* stats.c: cumulative counters in shared memory (when preloaded) */
typedef enum SiStat
{
	SI_STAT_ACQUIRED,
	SI_STAT_COMPLETED_REPLAYS,
	SI_STAT_IN_PROGRESS_CONFLICTS,
	SI_STAT_MISMATCHES,
	SI_STAT_RECORDS,
	SI_STAT_RELEASES,
	SI_STAT_ROWS_SWEPT,
	SI_STAT_UNRESOLVED,			/* 1.2; new counters go at the end */
	SI_NUM_STATS
} SiStat;

extern void si_stats_request_shmem(void);
extern void si_stats_startup_shmem(void);
extern void si_stat_add(SiStat which, int64 n);
extern void si_require_shmem(const char *feature);

/* stripe_idem.c: shared memory hooks chain through here */
extern bool si_preloaded;

/* ---- background sweeper (sweeper_*.c) ---------------------------------- */

#include "storage/latch.h"
#include "storage/lwlock.h"

/* How many databases stripe_idem.databases may list (shared memory slots). */
#define SI_SWEEPER_MAX_DATABASES	64
/* Longest last_error kept per database, including the terminator. */
#define SI_SWEEPER_ERRLEN			256

/*
 * Longest pause between two sweeper batches. A pass stays connected to its
 * database while it pauses, and DROP DATABASE waits at most five seconds
 * for the sessions in a database to leave: a pause plus one batch must
 * stay well inside that.
 */
#define SI_MAX_BATCH_DELAY_MS	1000

/* sweeper_guc.c: settings, defined only when preloaded */
typedef struct SiDatabaseList
{
	int			count;
	NameData	names[FLEXIBLE_ARRAY_MEMBER];
} SiDatabaseList;

extern const SiDatabaseList *si_sweep_database_list;
extern int	si_sweep_interval_secs;
extern int	si_sweep_batch_size;
extern int	si_sweep_batch_delay_ms;
extern char *si_sweep_role;
extern bool si_log_sweeps;

extern void si_sweeper_define_gucs(void);

/* sweeper_state.c: shared memory, read by the views, written by the workers */
typedef enum SiSweepOutcome
{
	SI_SWEEP_NONE,				/* never attempted */
	SI_SWEEP_PENDING,			/* worker requested, not reported yet */
	SI_SWEEP_RUNNING,			/* worker is sweeping */
	SI_SWEEP_OK,				/* pass completed */
	SI_SWEEP_NOT_INSTALLED,		/* extension missing or being created */
	SI_SWEEP_FAILED,			/* pass ended by an error */
	SI_SWEEP_SKIPPED			/* launcher could not start a worker there */
} SiSweepOutcome;

/* Why the launcher last logged something about a database; logged once. */
typedef enum SiSweepNote
{
	SI_NOTE_NONE,
	SI_NOTE_NOT_INSTALLED,
	SI_NOTE_NO_DATABASE,
	SI_NOTE_NO_CONNECTIONS
} SiSweepNote;

typedef struct SiSweepSlot
{
	bool		in_use;			/* holds a database's history */
	bool		listed;			/* in stripe_idem.databases now */
	int			position;		/* index in that list */
	uint32		generation;		/* bumped whenever the slot changes hands */
	NameData	dbname;
	pid_t		worker_pid;		/* sweeper connected now, or 0 */
	SiSweepOutcome outcome;
	SiSweepNote note;
	TimestampTz last_started;	/* 0 = never */
	TimestampTz last_finished;
	int64		last_rows_deleted;
	int64		total_rows_deleted;
	int64		passes;
	char		last_error[SI_SWEEPER_ERRLEN];	/* "" = none */
	int32		citus_logged;	/* 1 + the local shard count last logged, 0 = none */
	bool		discovered;		/* found in pg_database, not listed by name */
	bool		announced;		/* "sweeping database x" was logged */
} SiSweepSlot;

typedef struct SiSweeperShared
{
	LWLock	   *lock;			/* protects everything below */
	pid_t		launcher_pid;	/* 0 when not running */
	Latch	   *launcher_latch;
	bool		wake_requested;
	uint64		hurry_requests; /* stripe_idem_wake_sweeper(true) calls */
	uint64		hurry_served;	/* of those, made before a pass that ended */
	TimestampTz next_pass_at;	/* 0 = none scheduled */
	bool		no_slot_logged; /* worker slot exhaustion was logged */
	char		role_problem[SI_SWEEPER_ERRLEN];	/* last logged, "" = none */
	SiSweepSlot slots[SI_SWEEPER_MAX_DATABASES];
} SiSweeperShared;

/* What the launcher hands each per-database worker in bgw_extra. */
typedef struct SiSweepOrder
{
	Oid			dboid;
	Oid			roleoid;		/* InvalidOid = bootstrap superuser */
	uint32		generation;
} SiSweepOrder;

extern SiSweeperShared *si_sweeper;

extern void si_sweeper_request_shmem(void);
extern void si_sweeper_startup_shmem(void);
extern void si_sweeper_publish_databases(void);
extern void si_sweeper_publish_discovered(const NameData *names, int count);
extern bool si_sweeper_discovering(void);
extern void si_sweeper_set_error(SiSweepSlot *slot, const char *message);
extern bool si_sweeper_hurried(void);

/* sweeper_launcher.c and sweeper_worker.c: the two kinds of worker */
extern void si_sweeper_register_launcher(void);
extern PGDLLEXPORT void si_sweeper_launcher_main(Datum main_arg);
extern PGDLLEXPORT void si_sweeper_worker_main(Datum main_arg);

/* ---- end of background sweeper ------------------------------------------ */

#endif							/* STRIPE_IDEM_H */
