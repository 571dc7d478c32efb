/*-------------------------------------------------------------------------
 *
 * keygen.c
 *	  Stripe Idempotency-Keys: "operation_type:operation_id:<uuid v4>".
 *
 * The operation is spelled out in the key so that a key seen in Stripe's
 * dashboard or logs leads straight back to the row; the random part, a
 * version 4 UUID, makes a key from an expired operation never collide with
 * its successor's.
 *
 * The UUID's 122 random bits come from pg_strong_random (the server's
 * cryptographically strong source, as gen_random_uuid() uses), fetched 64
 * UUIDs' worth at a time: one call to the source costs as much as
 * formatting a few dozen keys, and begin makes a key for every new
 * operation. The pool is per process and starts empty, so no two backends
 * (forked from the postmaster) ever share bytes.
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

#include "port.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(new_stripe_idempotency_key);

#define SI_UUID_BYTES		16
#define SI_POOL_UUIDS		64

static uint8 pool[SI_UUID_BYTES * SI_POOL_UUIDS];
static int	pool_used = SI_POOL_UUIDS;	/* empty */

/* A version 4 UUID, lower-case hex with dashes, into out (36 bytes, no NUL). */
static void
random_uuid(char *out)
{
	static const char hexdigits[] = "0123456789abcdef";
	uint8		uu[SI_UUID_BYTES];
	int			i;

	if (pool_used == SI_POOL_UUIDS)
	{
		if (!pg_strong_random(pool, sizeof(pool)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random values for a stripe_idempotency_key")));
		pool_used = 0;
	}
	memcpy(uu, pool + SI_UUID_BYTES * pool_used, SI_UUID_BYTES);
	/* used bytes are not kept around */
	memset(pool + SI_UUID_BYTES * pool_used, 0, SI_UUID_BYTES);
	pool_used++;

	/* RFC 4122: version 4, variant 10xx */
	uu[6] = (uu[6] & 0x0f) | 0x40;
	uu[8] = (uu[8] & 0x3f) | 0x80;

	for (i = 0; i < SI_UUID_BYTES; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*out++ = '-';
		*out++ = hexdigits[uu[i] >> 4];
		*out++ = hexdigits[uu[i] & 0x0f];
	}
}

text *
si_make_key(const text *operation_type, const text *operation_id)
{
	int			type_len = VARSIZE_ANY_EXHDR(operation_type);
	int			id_len = VARSIZE_ANY_EXHDR(operation_id);
	int			len = type_len + 1 + id_len + 1 + SI_UUID_STRLEN;
	text	   *result;
	char	   *p;

	/* The limits on type and id keep every key within Stripe's 255. */
	StaticAssertStmt(SI_MAX_OPERATION_TYPE + 1 + SI_MAX_OPERATION_ID + 1 +
					 SI_UUID_STRLEN <= SI_MAX_KEY,
					 "generated keys must fit Stripe's limit");

	result = (text *) palloc(VARHDRSZ + len);
	SET_VARSIZE(result, VARHDRSZ + len);
	p = VARDATA(result);
	memcpy(p, VARDATA_ANY(operation_type), type_len);
	p += type_len;
	*p++ = ':';
	memcpy(p, VARDATA_ANY(operation_id), id_len);
	p += id_len;
	*p++ = ':';
	random_uuid(p);

	return result;
}

/*
 * new_stripe_idempotency_key(operation_type text, operation_id text) RETURNS text
 *
 * For callers that manage their own rows; begin_stripe_idempotency makes
 * and stores keys itself.
 */
Datum
new_stripe_idempotency_key(PG_FUNCTION_ARGS)
{
	text	   *operation_type = si_required_text(fcinfo, 0, "operation_type");
	text	   *operation_id = si_required_text(fcinfo, 1, "operation_id");

	si_check_operation_type(operation_type);
	si_check_operation_id(operation_id);

	PG_RETURN_TEXT_P(si_make_key(operation_type, operation_id));
}
