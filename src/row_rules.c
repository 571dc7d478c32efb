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
 * what a one-row write cost. The whole row as the one argument keeps the
 * stored expression to a function call over a single Var, the least there
 * is to rebuild (ten column arguments were ten Vars, a third of a write's
 * constraint cost by themselves), and evaluating the rules in C costs less
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

/* minlen to maxlen bytes, each accepted by ok(); NULL passes. */
static bool
token_ok(Datum value, bool isnull, int minlen, int maxlen,
		 bool (*ok) (unsigned char c))
{
	text	   *t;
	const unsigned char *p;
	int			len;
	int			i;

	if (isnull)
		return true;
	t = DatumGetTextPP(value);
	p = (const unsigned char *) VARDATA_ANY(t);
	len = VARSIZE_ANY_EXHDR(t);
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

/* Byte equality of a text datum with a C string. */
static bool
text_is(Datum value, const char *s)
{
	text	   *t = DatumGetTextPP(value);
	size_t		len = strlen(s);

	return VARSIZE_ANY_EXHDR(t) == len && memcmp(VARDATA_ANY(t), s, len) == 0;
}

/* Columns are numbered from 1, the arrays from 0. */
#define COL(n)		values[(n) - 1]
#define NUL(n)		nulls[(n) - 1]

/* The rules, over the deformed row. */
static bool
rules_hold(Datum *values, bool *nulls)
{
	bool		completed = false;

	if (!token_ok(COL(SI_COL_OPERATION_TYPE), NUL(SI_COL_OPERATION_TYPE), 1, SI_MAX_OPERATION_TYPE, si_is_type_char) ||
		!token_ok(COL(SI_COL_OPERATION_ID), NUL(SI_COL_OPERATION_ID), 1, SI_MAX_OPERATION_ID, si_is_printable_char) ||
		!token_ok(COL(SI_COL_KEY), NUL(SI_COL_KEY), 1, SI_MAX_KEY, si_is_printable_char) ||
		!token_ok(COL(SI_COL_FINGERPRINT), NUL(SI_COL_FINGERPRINT), SI_FINGERPRINT_LEN, SI_FINGERPRINT_LEN, is_lower_hex))
		return false;

	if (!NUL(SI_COL_STATUS))
	{
		completed = text_is(COL(SI_COL_STATUS), "completed");
		if (!completed && !text_is(COL(SI_COL_STATUS), "in_progress"))
			return false;
	}

	/* In characters, as char_length() counted it: the id may be any text. */
	if (!NUL(SI_COL_RESOURCE_ID))
	{
		text	   *id = DatumGetTextPP(COL(SI_COL_RESOURCE_ID));
		int			len = VARSIZE_ANY_EXHDR(id);

		if (len == 0 ||
			(len > SI_MAX_RESOURCE_ID &&
			 pg_mbstrlen_with_len(VARDATA_ANY(id), len) > SI_MAX_RESOURCE_ID))
			return false;
	}

	if (!NUL(SI_COL_ATTEMPTS) && DatumGetInt32(COL(SI_COL_ATTEMPTS)) < 1)
		return false;

	if (completed && NUL(SI_COL_RESOURCE_ID) && NUL(SI_COL_RESPONSE))
		return false;

	if (!NUL(SI_COL_LOCKED_UNTIL))
	{
		/* status NULL passes, as "status = 'in_progress'" was NULL then */
		if (completed)
			return false;
		if (!NUL(SI_COL_EXPIRES_AT) &&
			DatumGetTimestampTz(COL(SI_COL_LOCKED_UNTIL)) > DatumGetTimestampTz(COL(SI_COL_EXPIRES_AT)))
			return false;
	}

	return true;
}

/*
 * stripe_idem_row_is_valid(stripe_idempotency_keys) RETURNS boolean
 */
Datum
stripe_idem_row_is_valid(PG_FUNCTION_ARGS)
{
	Datum		values[SI_NCOLS];
	bool		nulls[SI_NCOLS];

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(true);
	si_deform_row(PG_GETARG_DATUM(0), values, nulls);
	PG_RETURN_BOOL(rules_hold(values, nulls));
}
