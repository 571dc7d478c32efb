/*-------------------------------------------------------------------------
 *
 * keygen.c
 *	  Stripe Idempotency-Keys: "operation_type:operation_id:<uuid v4>".
 *
 * The operation is spelled out in the key so that a key seen in Stripe's
 * dashboard or logs leads straight back to the row; the random part, a
 * version 4 UUID from libuuid, makes a key from an expired operation never
 * collide with its successor's. Only a new operation (or a replaced expired
 * one) makes a key; replays and conflicts never do.
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

#include <uuid/uuid.h>

#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(new_stripe_idempotency_key);

text *
si_make_key(const text *operation_type, const text *operation_id)
{
	int			type_len = VARSIZE_ANY_EXHDR(operation_type);
	int			id_len = VARSIZE_ANY_EXHDR(operation_id);
	int			len = type_len + 1 + id_len + 1 + SI_UUID_STRLEN;
	uuid_t		uu;
	char		uu_str[SI_UUID_STRLEN + 1];
	text	   *result;
	char	   *p;

	/* The limits on type and id keep every key within Stripe's 255. */
	StaticAssertStmt(SI_MAX_OPERATION_TYPE + 1 + SI_MAX_OPERATION_ID + 1 +
					 SI_UUID_STRLEN <= SI_MAX_KEY,
					 "generated keys must fit Stripe's limit");

	uuid_generate_random(uu);
	uuid_unparse_lower(uu, uu_str);

	result = (text *) palloc(VARHDRSZ + len);
	SET_VARSIZE(result, VARHDRSZ + len);
	p = VARDATA(result);
	memcpy(p, VARDATA_ANY(operation_type), type_len);
	p += type_len;
	*p++ = ':';
	memcpy(p, VARDATA_ANY(operation_id), id_len);
	p += id_len;
	*p++ = ':';
	memcpy(p, uu_str, SI_UUID_STRLEN);

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
