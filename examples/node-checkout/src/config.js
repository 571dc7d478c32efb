'use strict';
// Settings from the environment, with the defaults a production deployment
// would use. Tests pass their own (short lease, short SDK timeout).

function int(name, dflt) {
	const v = process.env[name];
	if (v === undefined || v === '') return dflt;
	const n = Number(v);
	if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
	return n;
}

function configFromEnv() {
	return {
		// How long one caller may hold an operation before another may take it
		// over (with the same Idempotency-Key). Must outlast the SDK's worst case.
		leaseSeconds: int('CHECKOUT_LEASE_SECONDS', 90),
		// Stripe keeps idempotency keys for at least 24 hours; a longer ttl here
		// would let a takeover reuse a key Stripe has forgotten. null = the
		// extension's default (stripe_idem.default_ttl, 24h).
		ttlSeconds: process.env.CHECKOUT_TTL_SECONDS ? int('CHECKOUT_TTL_SECONDS') : null,
		successUrl: process.env.CHECKOUT_SUCCESS_URL || 'https://shop.example/checkout/success?session_id={CHECKOUT_SESSION_ID}',
		cancelUrl: process.env.CHECKOUT_CANCEL_URL || 'https://shop.example/cart',
		stripe: {
			apiKey: process.env.STRIPE_SECRET_KEY || 'sk_test_local',
			// Unset = api.stripe.com over https; the tests point these at the fake.
			host: process.env.STRIPE_HOST || undefined,
			port: process.env.STRIPE_PORT ? int('STRIPE_PORT') : undefined,
			protocol: process.env.STRIPE_PROTOCOL || undefined,
			timeoutMs: int('STRIPE_TIMEOUT_MS', 20000),
			maxNetworkRetries: int('STRIPE_MAX_NETWORK_RETRIES', 1),
		},
	};
}

module.exports = { configFromEnv };
