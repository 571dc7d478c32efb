/*-------------------------------------------------------------------------
 *
 * row_rules.c
 *	  stripe_idem_row_is_valid: every rule a row of stripe_idempotency_keys
 *	  must obey, as one function for the table's one CHECK constraint.
 *
 * Version 1.0 spelled the rules as ten CHECK constraints. The executor
 * rebuilds each CHECK expression from its stored text (stringToNode, then
 * expression_planner and ExecInitExpr) for every INSERT or UPDATE
 * statement, so ten expressions of a few dozen nodes each were most of
 * what a one-row write cost. One call with ten column arguments is a small
 * fraction of that to rebuild, and evaluating the rules in C costs less
 * than evaluating them as SQL expressions.
 *
 * The rules are exactly those of 1.0:
 *	  operation_type			1 to 64 of [A-Za-z0-9_.:-]
 *	  operation_id				1 to 128 printable ASCII characters (0x21-0x7E)
 *	  stripe_idempotency_key	1 to 255 printable ASCII characters
 *	  request_fingerprint		NULL, or 64 of [0-9a-f]
 *	  status					'in_progress' or 'completed'
 *	  stripe_resource_id		NULL, or 1 to 255 characters
 *	  attempts					at least 1
 *	  a completed row carries stripe_resource_id or response (or both)
 *	  only an in_progress row holds a lease (locked_until)
 *	  the lease never outlives the row (locked_until <= expires_at)
 * A NULL in a NOT NULL column passes here, as it did in the SQL checks: the
 * NOT NULL constraint reports it, and is checked first.
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

#include "mb/pg_wchar.h"

PG_FUNCTION_INFO_V1(stripe_idem_row_is_valid);

#define SI_FINGERPRINT_LEN	64

/* The arguments, in the order the constraint passes the columns. */
enum
{
	ROW_OPERATION_TYPE,
	ROW_OPERATION_ID,
	ROW_KEY,
	ROW_FINGERPRINT,
	ROW_STATUS,
	ROW_RESOURCE_ID,
	ROW_RESPONSE,
	ROW_ATTEMPTS,
	ROW_LOCKED_UNTIL,
	ROW_EXPIRES_AT
};

/* 1 to maxlen bytes, each accepted by ok(); NULL passes. */
static bool
token_ok(FunctionCallInfo fcinfo, int argno, int minlen, int maxlen,
		 bool (*ok) (unsigned char c))
{
	text	   *value;
	const unsigned char *p;
	int			len;
	int			i;

	if (PG_ARGISNULL(argno))
		return true;
	value = PG_GETARG_TEXT_PP(argno);
	p = (const unsigned char *) VARDATA_ANY(value);
	len = VARSIZE_ANY_EXHDR(value);
	if (len < minlen || len > maxlen)
		return false;
	for (i = 0; i < len; i++)
		if (!ok(p[i]))
			return false;
	return true;
}

static bool
is_lower_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Byte equality of a text argument with a C string. */
static bool
text_is(text *value, const char *s)
{
	size_t		len = strlen(s);

	return VARSIZE_ANY_EXHDR(value) == len && memcmp(VARDATA_ANY(value), s, len) == 0;
}

/*
 * stripe_idem_row_is_valid(operation_type text, operation_id text,
 *		stripe_idempotency_key text, request_fingerprint text, status text,
 *		stripe_resource_id text, response jsonb, attempts integer,
 *		locked_until timestamptz, expires_at timestamptz) RETURNS boolean
 *
 * Not STRICT: a NULL argument must not make the whole check NULL (which a
 * CHECK constraint treats as passing).
 */
Datum
stripe_idem_row_is_valid(PG_FUNCTION_ARGS)
{
	bool		completed = false;
	bool		in_progress = false;

	if (!token_ok(fcinfo, ROW_OPERATION_TYPE, 1, SI_MAX_OPERATION_TYPE, si_is_type_char) ||
		!token_ok(fcinfo, ROW_OPERATION_ID, 1, SI_MAX_OPERATION_ID, si_is_printable_char) ||
		!token_ok(fcinfo, ROW_KEY, 1, SI_MAX_KEY, si_is_printable_char) ||
		!token_ok(fcinfo, ROW_FINGERPRINT, SI_FINGERPRINT_LEN, SI_FINGERPRINT_LEN, is_lower_hex))
		PG_RETURN_BOOL(false);

	if (!PG_ARGISNULL(ROW_STATUS))
	{
		text	   *status = PG_GETARG_TEXT_PP(ROW_STATUS);

		completed = text_is(status, "completed");
		in_progress = !completed && text_is(status, "in_progress");
		if (!completed && !in_progress)
			PG_RETURN_BOOL(false);
	}

	/* In characters, as char_length() counted it: the id may be any text. */
	if (!PG_ARGISNULL(ROW_RESOURCE_ID))
	{
		text	   *id = PG_GETARG_TEXT_PP(ROW_RESOURCE_ID);
		int			len = VARSIZE_ANY_EXHDR(id);

		if (len == 0 ||
			(len > SI_MAX_RESOURCE_ID &&
			 pg_mbstrlen_with_len(VARDATA_ANY(id), len) > SI_MAX_RESOURCE_ID))
			PG_RETURN_BOOL(false);
	}

	if (!PG_ARGISNULL(ROW_ATTEMPTS) && PG_GETARG_INT32(ROW_ATTEMPTS) < 1)
		PG_RETURN_BOOL(false);

	if (completed && PG_ARGISNULL(ROW_RESOURCE_ID) && PG_ARGISNULL(ROW_RESPONSE))
		PG_RETURN_BOOL(false);

	if (!PG_ARGISNULL(ROW_LOCKED_UNTIL))
	{
		/* status NULL passes, as "status = 'in_progress'" was NULL then */
		if (completed)
			PG_RETURN_BOOL(false);
		if (!PG_ARGISNULL(ROW_EXPIRES_AT) &&
			PG_GETARG_TIMESTAMPTZ(ROW_LOCKED_UNTIL) > PG_GETARG_TIMESTAMPTZ(ROW_EXPIRES_AT))
			PG_RETURN_BOOL(false);
	}

	PG_RETURN_BOOL(true);
}
