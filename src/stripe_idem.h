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
#include "utils/timestamp.h"

#if PG_VERSION_NUM < 150000
#error "stripe_idem requires PostgreSQL 15 or later"
#endif

#define STRIPE_IDEM_EXTNAME		"stripe_idem"
#define STRIPE_IDEM_TABLE		"stripe_idempotency_keys"

/* Limits from the API contract (and the table's CHECK constraints). */
#define SI_MAX_OPERATION_TYPE	64
#define SI_MAX_OPERATION_ID		128
#define SI_MAX_KEY				255		/* Stripe's Idempotency-Key limit */
#define SI_MAX_RESOURCE_ID		255
#define SI_UUID_STRLEN			36

/* Range of the ttl and lease settings, in seconds. */
#define SI_MIN_SECONDS			1
#define SI_MAX_SECONDS			(365 * SECS_PER_DAY)

/* stripe_idem.c: settings */
extern int	si_default_ttl_secs;
extern int	si_default_lease_secs;

/* validate.c: argument checks shared by every SQL-callable function */
extern text *si_required_text(FunctionCallInfo fcinfo, int argno, const char *argname);
extern void si_check_operation_type(const text *value);
extern void si_check_operation_id(const text *value);
extern void si_check_idempotency_key(const text *value);
extern void si_check_resource_id(const text *value);
extern Interval *si_optional_interval(FunctionCallInfo fcinfo, int argno,
									  const char *argname, int default_secs,
									  int64 max_usecs, const char *max_name);
extern int64 si_interval_usecs(const Interval *interval);

/* keygen.c: Stripe Idempotency-Keys */
extern text *si_make_key(const text *operation_type, const text *operation_id);

/* fingerprint.c: sha256 of the request parameters */
extern text *si_fingerprint(Jsonb *params);

/* plans.c: SPI plans prepared once per backend against the extension's table */
typedef enum SiPlanId
{
	SI_PLAN_INSERT_ACQUIRE,
	SI_PLAN_SELECT_ROW,
	SI_PLAN_TAKEOVER,
	SI_PLAN_REPLACE_EXPIRED,
	SI_PLAN_CHECK,
	SI_PLAN_COMPLETE_OWN,
	SI_PLAN_KEY_OWNER,
	SI_PLAN_INSERT_COMPLETED,
	SI_PLAN_REPLACE_EXPIRED_COMPLETED,
	SI_PLAN_RELEASE,
	SI_PLAN_CLEANUP_BATCH,
	SI_NUM_PLANS
} SiPlanId;

extern SPIPlanPtr si_plan(SiPlanId id);
extern bool si_extension_ready(void);

/* result.c: SPI results and the one-row results of the table functions */
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
	bool		lease_live;		/* locked_until > now */
	Datum		lease_left;		/* interval, locked_until - now */
	bool		lease_left_null;
	bool		expired;		/* expires_at <= now */
} SiRow;

extern bool si_fetch_row(Datum operation_type, Datum operation_id, SiRow *row);
extern bool si_text_equal(Datum a, Datum b);
extern void si_return_row(FunctionCallInfo fcinfo, Datum *values, bool *nulls);
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
	SI_NUM_STATS
} SiStat;

extern void si_stats_request_shmem(void);
extern void si_stats_startup_shmem(void);
extern void si_stat_add(SiStat which, int64 n);
extern void si_require_shmem(const char *feature);

/* stripe_idem.c: shared memory hooks chain through here */
extern bool si_preloaded;

#endif							/* STRIPE_IDEM_H */
