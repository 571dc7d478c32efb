/*-------------------------------------------------------------------------
 *
 * validate.c
 *	  Argument checks shared by the SQL-callable functions.
 *
 * Every function validates all of its arguments before it touches the
 * table, so bad input is rejected with a precise SQLSTATE and nothing is
 * written:
 *	  22004 (null_value_not_allowed)	a required argument is NULL
 *	  22023 (invalid_parameter_value)	a value breaks a documented rule
 *
 * Values are never echoed back in messages: they may be huge or hold
 * control characters. The detail says which rule failed and where.
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

#include "access/detoast.h"
#include "access/xact.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

text *
si_required_text(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname)));
	return PG_GETARG_TEXT_PP(argno);
}

/*
 * Check that value is between 1 and maxlen bytes, each accepted by ok().
 * Byte length equals character length here because every accepted byte is
 * ASCII; a multi-byte character fails at its first byte.
 */
static void
check_ascii_token(const text *value, const char *argname, int maxlen,
				  bool (*ok) (unsigned char c), const char *rule)
{
	const char *p = VARDATA_ANY(value);
	int			len = VARSIZE_ANY_EXHDR(value);
	int			i;

	if (len < 1 || len > maxlen)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s", argname),
				 errdetail("%s must be 1 to %d characters long, but it is %d bytes long.",
						   argname, maxlen, len),
				 errhint("%s", rule)));

	for (i = 0; i < len; i++)
	{
		if (!ok((unsigned char) p[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid %s", argname),
					 errdetail("Character %d of %s (byte 0x%02x) is not allowed.",
							   i + 1, argname, (unsigned char) p[i]),
					 errhint("%s", rule)));
	}
}

bool
si_is_type_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') ||
		c == '_' || c == '.' || c == ':' || c == '-';
}

/* Printable ASCII without space, 0x21 to 0x7E: what Stripe and HTTP headers accept. */
bool
si_is_printable_char(unsigned char c)
{
	return c >= 0x21 && c <= 0x7E;
}

void
si_check_operation_type(const text *value)
{
	check_ascii_token(value, "operation_type", SI_MAX_OPERATION_TYPE,
					  si_is_type_char,
					  "Use letters, digits, \"_\", \".\", \":\" and \"-\", for example \"checkout:create\".");
}

void
si_check_operation_id(const text *value)
{
	check_ascii_token(value, "operation_id", SI_MAX_OPERATION_ID,
					  si_is_printable_char,
					  "Use printable ASCII characters without spaces (0x21 to 0x7E).");
}

void
si_check_idempotency_key(const text *value)
{
	check_ascii_token(value, "stripe_idempotency_key", SI_MAX_KEY,
					  si_is_printable_char,
					  "Pass the key begin_stripe_idempotency returned; Stripe accepts 1 to 255 printable ASCII characters.");
}

/*
 * Stripe object ids are short ASCII strings; the limit is in characters so
 * that a multi-byte value is judged the way char_length() in the table's
 * CHECK constraint judges it.
 */
void
si_check_resource_id(const text *value)
{
	int			nchars = pg_mbstrlen_with_len(VARDATA_ANY(value),
											  VARSIZE_ANY_EXHDR(value));

	if (nchars < 1 || nchars > SI_MAX_RESOURCE_ID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid stripe_resource_id"),
				 errdetail("stripe_resource_id must be 1 to %d characters long, but it is %d characters long.",
						   SI_MAX_RESOURCE_ID, nchars)));
}

/*
 * An interval as a plain number of microseconds, months counted as 30 days
 * and days as 24 hours, the way interval comparison does. Leases and expiry
 * are durations, not calendar arithmetic: "1 day" must not become 23 or 25
 * hours across a daylight saving change. Saturates instead of overflowing,
 * which is enough to reject out-of-range values.
 */
int64
si_interval_usecs(const Interval *interval)
{
	int128		total;

	total = (int128) interval->month * DAYS_PER_MONTH * USECS_PER_DAY +
		(int128) interval->day * USECS_PER_DAY +
		(int128) interval->time;
	if (total > PG_INT64_MAX)
		return PG_INT64_MAX;
	if (total < PG_INT64_MIN)
		return PG_INT64_MIN;
	return (int64) total;
}

/*
 * Fetch an optional interval argument (ttl or lease) and normalize it to a
 * pure-microseconds interval between 1 second and max_usecs. A NULL argument
 * takes default_secs from the corresponding setting, which is checked too:
 * the defaults can make a combination invalid (a default lease longer than
 * a short ttl given by the caller).
 */
Interval *
si_optional_interval(FunctionCallInfo fcinfo, int argno, const char *argname,
					 int default_secs, int64 max_usecs, const char *max_name)
{
	Interval   *result = (Interval *) palloc0(sizeof(Interval));
	int64		usecs;
	bool		defaulted = PG_ARGISNULL(argno);

	if (defaulted)
		usecs = (int64) default_secs * USECS_PER_SEC;
	else
		usecs = si_interval_usecs(PG_GETARG_INTERVAL_P(argno));

	if (usecs < (int64) SI_MIN_SECONDS * USECS_PER_SEC || usecs > max_usecs)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is out of range", argname),
				 errdetail("%s must be at least 1 second and at most %s%s.",
						   argname, max_name,
						   defaulted ? " (the value came from the stripe_idem setting)" : "")));

	result->time = usecs;
	return result;
}

/*
 * Refuse a jsonb argument larger than limit bytes (its size in the table,
 * uncompressed), before anything else is done with it: fingerprinting or
 * storing a huge value would tie up the backend for nothing, since no
 * Stripe object needs it. The size is read from the datum's header without
 * detoasting it.
 */
void
si_check_size(FunctionCallInfo fcinfo, int argno, const char *argname,
			  int limit, const char *setting)
{
	Size		size;

	if (PG_ARGISNULL(argno))
		return;
	size = toast_raw_datum_size(PG_GETARG_DATUM(argno)) - VARHDRSZ;
	if (size > (Size) limit)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too large", argname),
				 errdetail("%s is %zu bytes; the limit is %d bytes.",
						   argname, size, limit),
				 errhint("The limit is the setting %s.", setting)));
}

/*
 * A lease taken inside a transaction block (or a subtransaction) can still
 * be rolled back after its key was returned: the caller may already have
 * sent that key to Stripe, and the retry would find no row and get a new
 * key, so Stripe would create a second object. Refused unless the caller
 * says it commits before using the key.
 */
void
si_refuse_in_transaction_block(const char *funcname)
{
	if (si_allow_begin_in_transaction)
		return;
	if (IsTransactionBlock() || IsSubTransaction())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("%s cannot run inside a transaction block", funcname),
				 errdetail("A rollback after the key was returned would lose it, and the retry would get a new key: Stripe would create a second object."),
				 errhint("Call it as a statement of its own in autocommit mode (psycopg: connection.autocommit = True). "
						 "If the transaction always commits before the key is sent to Stripe, SET LOCAL stripe_idem.allow_begin_in_transaction = on first.")));
}
