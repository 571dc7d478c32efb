'use strict';
// Which Stripe failures are answers about the operation (record them, replay
// them forever) and which are about this attempt (release the lease, let the
// client retry with the same Idempotency-Key).

// Definitive: Stripe executed or validated the request and would answer the
// same again: a declined card (402), invalid parameters (400/404), including
// idempotency_error (our key was used with other parameters: retrying cannot
// help). Stripe itself saves these under the key.
//
// Transient: no answer (network error, timeout), 5xx, 409 (key in use, lock
// timeout), 429 (rate limit). Also 401/403: a wrong or restricted API key is
// our configuration, not the customer's checkout, and must not be recorded as
// its outcome.
function isDefinitive(err) {
	const status = err && err.statusCode;
	return status === 400 || status === 402 || status === 404;
}

// What we store and replay for a definitive error: enough for the client,
// nothing that depends on this attempt (request ids, headers).
function storedError(err) {
	return {
		status: err.statusCode,
		error: {
			type: err.rawType || err.type,
			code: err.code || null,
			decline_code: err.decline_code || null,
			param: err.param || null,
			message: err.message,
		},
	};
}

module.exports = { isDefinitive, storedError };
