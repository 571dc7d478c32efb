/*-------------------------------------------------------------------------
 *
 * plans.c
 *	  SPI plans against the extension's own table, prepared once per backend.
 *
 * Every statement names the table with the extension's schema, resolved
 * from pg_extension (never from search_path), calls built-ins as
 * pg_catalog.f() and writes operators as OPERATOR(pg_catalog.op), so no
 * object a caller puts first in search_path can change what runs. Only
 * the schema-qualified table name is substituted into the statement text;
 * every value travels as a $n parameter.
 *
 * Plans are prepared lazily, on first use, and kept for the life of the
 * backend. The plan cache itself replans them when the table changes; what
 * it cannot notice is the extension being dropped and created again in
 * another schema (the old text would name the old schema). So a relcache
 * invalidation of our table, or any pg_namespace change, marks the cache
 * for a recheck of which schema the extension lives in, and the plans are
 * thrown away only when that answer changed.
 *
 * "now" is pg_catalog.statement_timestamp() throughout: fresh for every
 * client statement even inside a long transaction (so a lease is never
 * granted already half spent), and one value for all the checks that a
 * single call makes.
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#define SI_NOW "pg_catalog.statement_timestamp()"
#define SI_EQ " OPERATOR(pg_catalog.=) "
#define SI_WHERE_PK " WHERE operation_type" SI_EQ "$1 AND operation_id" SI_EQ "$2"

#define SI_MAX_PLAN_ARGS 7

typedef struct SiPlanDef
{
	const char *sql;			/* "@table@" stands for the qualified table */
	int			nargs;
	Oid			argtypes[SI_MAX_PLAN_ARGS];
} SiPlanDef;

static const SiPlanDef plan_defs[SI_NUM_PLANS] = {
	[SI_PLAN_BEGIN] = {
		/*
		 * $1 type, $2 id, $3 new key, $4 fingerprint, $5 now, $6 end of the
		 * lease, $7 expiry. The times are computed by the caller from
		 * statement_timestamp() (see begin.c): a VALUES row of parameters
		 * is the cheapest there is for the executor to set up.
		 *
		 * Run only after the row was read and not found (begin.c): nothing
		 * but the insert, no RETURNING. A row inserted meanwhile by another
		 * caller makes it insert nothing, and the caller reads again.
		 */
		"INSERT INTO @table@ (operation_type, operation_id,"
		" stripe_idempotency_key, request_fingerprint, status, attempts,"
		" locked_until, created_at, updated_at, expires_at)"
		" VALUES ($1, $2, $3, $4, 'in_progress', 1, $6, $5, $5, $7)"
		" ON CONFLICT (operation_type, operation_id) DO NOTHING",
		7, {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID}
	},
	[SI_PLAN_SELECT_ROW] = {
		/* the whole row as one column; result.c reads it */
		"SELECT k FROM @table@ k" SI_WHERE_PK,
		2, {TEXTOID, TEXTOID}
	},
	[SI_PLAN_TAKEOVER] = {
		/*
		 * $3 the stored key, $4 lease, $5 the earliest created_at whose key
		 * may still be leased (now + lease - key window: the lease must end
		 * before Stripe may forget the key). The WHERE clause re-checks
		 * everything the caller saw, so of two racing takeovers the second
		 * finds the lease live again (after waiting for the first) and
		 * updates nothing. The lease may reach past expires_at; expiry moves
		 * with it so that a row with a live lease is never expired, but never
		 * past the key window, which the lease ends inside.
		 */
		"UPDATE @table@ SET attempts = attempts OPERATOR(pg_catalog.+) 1,"
		" locked_until = " SI_NOW " OPERATOR(pg_catalog.+) $4,"
		" expires_at = GREATEST(expires_at, " SI_NOW " OPERATOR(pg_catalog.+) $4),"
		" updated_at = " SI_NOW
		SI_WHERE_PK
		" AND status" SI_EQ "'in_progress'"
		" AND stripe_idempotency_key" SI_EQ "$3"
		" AND (locked_until IS NULL OR locked_until OPERATOR(pg_catalog.<=) " SI_NOW ")"
		" AND expires_at OPERATOR(pg_catalog.>) " SI_NOW
		" AND created_at OPERATOR(pg_catalog.>=) $5"
		" RETURNING attempts",
		5, {TEXTOID, TEXTOID, TEXTOID, INTERVALOID, TIMESTAMPTZOID}
	},
	[SI_PLAN_REPLACE_EXPIRED] = {
		/*
		 * An absent row (completed and expired, or expired for longer than
		 * the retention of unresolved operations; $7 is now - retention):
		 * start over with a new key.
		 */
		"UPDATE @table@ SET stripe_idempotency_key = $3,"
		" request_fingerprint = $4, status = 'in_progress',"
		" stripe_resource_id = NULL, response = NULL, attempts = 1,"
		" locked_until = " SI_NOW " OPERATOR(pg_catalog.+) $5,"
		" created_at = " SI_NOW ", updated_at = " SI_NOW ", completed_at = NULL,"
		" expires_at = " SI_NOW " OPERATOR(pg_catalog.+) $6"
		SI_WHERE_PK
		" AND expires_at OPERATOR(pg_catalog.<=) " SI_NOW
		" AND (status" SI_EQ "'completed' OR expires_at OPERATOR(pg_catalog.<=) $7)",
		7, {TEXTOID, TEXTOID, TEXTOID, TEXTOID, INTERVALOID, INTERVALOID, TIMESTAMPTZOID}
	},
	[SI_PLAN_CHECK] = {
		/*
		 * Exactly check's result row, so the row goes straight to the
		 * caller. $3 the takeover cutoff for the default lease and key
		 * window, $4 now - retention, $5 now - settle time (see
		 * stripe_idem.h): a settled unresolved operation is reported as
		 * such, and only an absent row is not found.
		 */
		"SELECT true,"
		" CASE WHEN status" SI_EQ "'in_progress'"
		"  AND (locked_until IS NULL OR locked_until OPERATOR(pg_catalog.<=) $5)"
		"  AND (expires_at OPERATOR(pg_catalog.<=) " SI_NOW
		"   OR created_at OPERATOR(pg_catalog.<) $3)"
		" THEN 'unresolved' ELSE status END,"
		" stripe_idempotency_key, stripe_resource_id, response,"
		" created_at, expires_at"
		" FROM @table@" SI_WHERE_PK
		" AND (expires_at OPERATOR(pg_catalog.>) " SI_NOW
		"  OR (status" SI_EQ "'in_progress' AND expires_at OPERATOR(pg_catalog.>) $4))",
		5, {TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID}
	},
	[SI_PLAN_COMPLETE_OWN] = {
		/* $3 key, $4 resource id, $5 response, $6 ttl */
		"UPDATE @table@ SET status = 'completed',"
		" stripe_resource_id = $4, response = $5, locked_until = NULL,"
		" completed_at = " SI_NOW ", updated_at = " SI_NOW ","
		" expires_at = " SI_NOW " OPERATOR(pg_catalog.+) $6"
		SI_WHERE_PK
		" AND status" SI_EQ "'in_progress'"
		" AND stripe_idempotency_key" SI_EQ "$3",
		6, {TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, INTERVALOID}
	},
	[SI_PLAN_KEY_OWNER] = {
		"SELECT operation_type, operation_id FROM @table@"
		" WHERE stripe_idempotency_key" SI_EQ "$1",
		1, {TEXTOID}
	},
	[SI_PLAN_INSERT_COMPLETED] = {
		/* the check-then-record flow: no begin, record straight away */
		"INSERT INTO @table@ (operation_type, operation_id,"
		" stripe_idempotency_key, status, stripe_resource_id, response,"
		" attempts, created_at, updated_at, completed_at, expires_at)"
		" VALUES ($1, $2, $3, 'completed', $4, $5, 1,"
		" " SI_NOW ", " SI_NOW ", " SI_NOW ","
		" " SI_NOW " OPERATOR(pg_catalog.+) $6)"
		" ON CONFLICT (operation_type, operation_id) DO NOTHING",
		6, {TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, INTERVALOID}
	},
	[SI_PLAN_REPLACE_EXPIRED_COMPLETED] = {
		"UPDATE @table@ SET stripe_idempotency_key = $3,"
		" request_fingerprint = NULL, status = 'completed',"
		" stripe_resource_id = $4, response = $5, attempts = 1,"
		" locked_until = NULL, created_at = " SI_NOW ", updated_at = " SI_NOW ","
		" completed_at = " SI_NOW ","
		" expires_at = " SI_NOW " OPERATOR(pg_catalog.+) $6"
		SI_WHERE_PK
		" AND expires_at OPERATOR(pg_catalog.<=) " SI_NOW
		" AND (status" SI_EQ "'completed' OR expires_at OPERATOR(pg_catalog.<=) $7)",
		7, {TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, INTERVALOID, TIMESTAMPTZOID}
	},
	[SI_PLAN_RELEASE] = {
		/*
		 * $4 the caller's attempt number, or NULL for "any holder". The
		 * lease ends now rather than vanishing: when it ended is what
		 * tells, later, whether a request sent under it may still reach
		 * Stripe (stripe_idem.settle_time).
		 */
		"UPDATE @table@ SET locked_until = " SI_NOW ", updated_at = " SI_NOW
		SI_WHERE_PK
		" AND status" SI_EQ "'in_progress'"
		" AND stripe_idempotency_key" SI_EQ "$3"
		" AND ($4 IS NULL OR attempts" SI_EQ "$4)"
		" AND expires_at OPERATOR(pg_catalog.>) " SI_NOW,
		4, {TEXTOID, TEXTOID, TEXTOID, INT4OID}
	},
	[SI_PLAN_RESTART] = {
		/*
		 * $3 the stored key, $4 a new key, $5 lease, $6 ttl, $7 now - the
		 * settle time. The caller saw the row unresolved and settled; as
		 * long as the key is the same and no lease was taken since, it
		 * still is (nothing but a restart changes created_at without
		 * changing the key).
		 */
		"UPDATE @table@ SET stripe_idempotency_key = $4, attempts = 1,"
		" locked_until = " SI_NOW " OPERATOR(pg_catalog.+) $5,"
		" created_at = " SI_NOW ", updated_at = " SI_NOW ", completed_at = NULL,"
		" expires_at = " SI_NOW " OPERATOR(pg_catalog.+) $6"
		SI_WHERE_PK
		" AND status" SI_EQ "'in_progress'"
		" AND stripe_idempotency_key" SI_EQ "$3"
		" AND (locked_until IS NULL OR locked_until OPERATOR(pg_catalog.<=) $7)",
		7, {TEXTOID, TEXTOID, TEXTOID, TEXTOID, INTERVALOID, INTERVALOID, TIMESTAMPTZOID}
	},
	[SI_PLAN_CLEANUP_BATCH] = {
		/*
		 * $1 batch size, $2 lower bound on expires_at, $3 now - retention:
		 * an expired in_progress row is an operation whose outcome is
		 * unknown and stays until then (stripe_idem.h). Oldest first along
		 * the expires_at index; SKIP LOCKED so a sweep never waits behind
		 * (or blocks) a caller working on a row. Starting each batch where
		 * the previous one ended keeps a long run inside one transaction
		 * from rescanning the index entries it already deleted.
		 */
		"WITH deleted AS ("
		" DELETE FROM @table@ WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
		"  SELECT ctid FROM @table@"
		"  WHERE expires_at OPERATOR(pg_catalog.<=) " SI_NOW
		"  AND expires_at OPERATOR(pg_catalog.>=) $2"
		"  AND (locked_until IS NULL OR locked_until OPERATOR(pg_catalog.<=) " SI_NOW ")"
		"  AND (status" SI_EQ "'completed' OR expires_at OPERATOR(pg_catalog.<=) $3)"
		"  ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED))"
		" RETURNING expires_at)"
		" SELECT pg_catalog.count(*), pg_catalog.max(expires_at) FROM deleted",
		3, {INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID}
	},
};

static SPIPlanPtr plans[SI_NUM_PLANS];

/* What the plans were prepared against. */
static Oid	cached_ext_oid = InvalidOid;
static Oid	cached_schema_oid = InvalidOid;
static char *cached_schema_name = NULL;
static Oid	cached_table_oid = InvalidOid;
static char *qualified_table = NULL;

static bool recheck_needed = true;
static bool callbacks_registered = false;

/*
 * Whether the table may be read without SPI (si_probe_row). Not under
 * Citus: there the table on the coordinator is the shell of a distributed
 * table whose rows live in shards on other nodes, and only statements,
 * which Citus plans, reach them. Distributing the table invalidates its
 * relcache entry, so this is looked at again then.
 */
static bool direct_reads_ok = false;

static void
relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == cached_table_oid)
		recheck_needed = true;
}

static void
namespace_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	recheck_needed = true;
}

/*
 * The schema stripe_idem is installed in, or InvalidOid if it is not
 * installed. PostgreSQL 15 does not export get_extension_schema(), so scan
 * pg_extension by OID the way it does.
 */
static Oid
extension_schema(Oid ext_oid)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	Oid			result = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(ext_oid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		result = ((Form_pg_extension) GETSTRUCT(tuple))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	return result;
}

/*
 * True when the extension is installed (not still being created) and its
 * table exists. For the sweeper, which must treat anything else as
 * "nothing to do here". Needs a transaction.
 */
bool
si_extension_ready(void)
{
	Oid			ext_oid = get_extension_oid(STRIPE_IDEM_EXTNAME, true);
	Oid			schema_oid;

	if (!OidIsValid(ext_oid))
		return false;
	if (creating_extension && CurrentExtensionObject == ext_oid)
		return false;
	schema_oid = extension_schema(ext_oid);
	return OidIsValid(schema_oid) &&
		OidIsValid(get_relname_relid(STRIPE_IDEM_TABLE, schema_oid));
}

static void
forget_plans(void)
{
	int			i;

	for (i = 0; i < SI_NUM_PLANS; i++)
	{
		if (plans[i] != NULL)
			SPI_freeplan(plans[i]);
		plans[i] = NULL;
	}
	if (cached_schema_name)
		pfree(cached_schema_name);
	if (qualified_table)
		pfree(qualified_table);
	cached_schema_name = NULL;
	qualified_table = NULL;
	cached_ext_oid = InvalidOid;
	cached_schema_oid = InvalidOid;
	cached_table_oid = InvalidOid;
}

/*
 * Make sure the cached plans belong to the extension as it is installed
 * now. Cheap unless an invalidation arrived since the last call.
 */
static void
revalidate(void)
{
	Oid			ext_oid;
	Oid			schema_oid;
	char	   *schema_name;
	MemoryContext oldcxt;

	if (!callbacks_registered)
	{
		CacheRegisterRelcacheCallback(relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, namespace_callback, (Datum) 0);
		callbacks_registered = true;
	}

	/* Cleared first: an invalidation arriving during the lookups sets it again. */
	recheck_needed = false;

	ext_oid = get_extension_oid(STRIPE_IDEM_EXTNAME, true);
	schema_oid = OidIsValid(ext_oid) ? extension_schema(ext_oid) : InvalidOid;
	schema_name = OidIsValid(schema_oid) ? get_namespace_name(schema_oid) : NULL;
	if (schema_name == NULL)
	{
		recheck_needed = true;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" is not installed in this database",
						STRIPE_IDEM_EXTNAME),
				 errhint("Run CREATE EXTENSION %s.", STRIPE_IDEM_EXTNAME)));
	}

	direct_reads_ok = !OidIsValid(get_extension_oid("citus", true));

	if (ext_oid == cached_ext_oid && schema_oid == cached_schema_oid &&
		cached_schema_name != NULL && strcmp(schema_name, cached_schema_name) == 0)
		return;

	forget_plans();

	cached_table_oid = get_relname_relid(STRIPE_IDEM_TABLE, schema_oid);
	if (!OidIsValid(cached_table_oid))
	{
		recheck_needed = true;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table \"%s.%s\" of extension \"%s\" does not exist",
						schema_name, STRIPE_IDEM_TABLE, STRIPE_IDEM_EXTNAME),
				 errhint("Drop and create the extension again.")));
	}

	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	cached_schema_name = pstrdup(schema_name);
	qualified_table = pstrdup(quote_qualified_identifier(schema_name, STRIPE_IDEM_TABLE));
	MemoryContextSwitchTo(oldcxt);
	cached_ext_oid = ext_oid;
	cached_schema_oid = schema_oid;
}

/* The statement text with "@table@" replaced by the given table name. */
static char *
render_sql_for(const char *template, const char *table)
{
	StringInfoData buf;
	const char *p = template;
	const char *hit;
	static const char token[] = "@table@";

	initStringInfo(&buf);
	while ((hit = strstr(p, token)) != NULL)
	{
		appendBinaryStringInfo(&buf, p, hit - p);
		appendStringInfoString(&buf, table);
		p = hit + strlen(token);
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

static char *
render_sql(const char *template)
{
	return render_sql_for(template, qualified_table);
}

/*
 * The extension's schema name and its table's OID, as the plans see them.
 * Raises 55000 when the extension is not installed.
 */
const char *
si_table_identity(Oid *table_oid)
{
	if (unlikely(recheck_needed))
		revalidate();
	*table_oid = cached_table_oid;
	return cached_schema_name;
}

/* Whether si_probe_row may read the table (see direct_reads_ok). */
bool
si_direct_reads_ok(void)
{
	if (unlikely(recheck_needed))
		revalidate();
	return direct_reads_ok;
}

/*
 * Run the statement of plan id against another relation of the same shape
 * (a Citus shard of the table), unprepared: shards come and go with
 * rebalancing, so a plan kept for one would soon point at nothing.
 */
int
si_execute_on(SiPlanId id, const char *relation, Datum *args, long count)
{
	const SiPlanDef *def = &plan_defs[id];
	char	   *sql = render_sql_for(def->sql, relation);
	int			rc;

	rc = SPI_execute_with_args(sql, def->nargs, (Oid *) def->argtypes, args,
							   NULL, false, count);
	pfree(sql);
	return rc;
}

/*
 * The plan for id, prepared on first use. The caller must be connected to
 * SPI.
 */
SPIPlanPtr
si_plan(SiPlanId id)
{
	const SiPlanDef *def = &plan_defs[id];
	SPIPlanPtr	plan;
	char	   *sql;

	if (unlikely(recheck_needed))
		revalidate();

	if (likely(plans[id] != NULL))
		return plans[id];

	sql = render_sql(def->sql);
	plan = SPI_prepare(sql, def->nargs, (Oid *) def->argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	pfree(sql);

	plans[id] = plan;
	return plan;
}
