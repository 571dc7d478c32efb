/*-------------------------------------------------------------------------
 *
 * fingerprint.c
 *	  sha256 (hex) of a request's parameters.
 *
 * begin_stripe_idempotency compares the fingerprint of a retry with the one
 * stored by the first call, so that the same operation id reused with a
 * different cart is refused ("mismatch") instead of replaying the wrong
 * result. jsonb's text form is canonical (keys sorted, duplicates removed,
 * whitespace normalized), so equal documents hash alike however the client
 * spelled them.
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#include "stripe_idem.h"

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"

text *
si_fingerprint(Jsonb *params)
{
	StringInfoData buf;
	pg_cryptohash_ctx *ctx;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	text	   *result;
	char	   *hex;
	int			i;
	static const char hexdigits[] = "0123456789abcdef";

	initStringInfo(&buf);
	JsonbToCString(&buf, &params->root, VARSIZE(params));

	ctx = pg_cryptohash_create(PG_SHA256);
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (uint8 *) buf.data, buf.len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute sha256 of request_params: %s",
			 pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	pfree(buf.data);

	result = (text *) palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH * 2);
	SET_VARSIZE(result, VARHDRSZ + PG_SHA256_DIGEST_LENGTH * 2);
	hex = VARDATA(result);
	for (i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
	{
		hex[2 * i] = hexdigits[digest[i] >> 4];
		hex[2 * i + 1] = hexdigits[digest[i] & 0x0F];
	}
	return result;
}
