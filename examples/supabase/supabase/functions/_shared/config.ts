// Settings from the environment. On Supabase, SUPABASE_DB_URL is provided by
// the platform and the rest are set with `supabase secrets set`; the tests
// pass their own (a short lease, the fake Stripe, pgbouncer's port).

function int(name: string, dflt: number): number {
	const v = Deno.env.get(name);
	if (v === undefined || v === '') return dflt;
	const n = Number(v);
	if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
	return n;
}

function required(name: string): string {
	const v = Deno.env.get(name);
	if (!v) throw new Error(`${name} is not set`);
	return v;
}

export interface StripeConfig {
	apiKey: string;
	// Unset = api.stripe.com over https; the tests point these at the fake.
	host?: string;
	port?: number;
	protocol?: 'http' | 'https';
	timeoutMs: number;
	maxNetworkRetries: number;
}

export interface Config {
	databaseUrl: string;
	dbPoolSize: number;
	statementTimeoutMs: number;
	// How long one checkout call may hold its operation before another may take
	// it over (with the same Idempotency-Key). Must outlast the SDK's worst case.
	leaseSeconds: number;
	// Checkout keys: at most Stripe's 24 h memory of an Idempotency-Key
	// (null = the extension's default, 24 h).
	ttlSeconds: number | null;
	// Webhook events: how long one delivery may process before a redelivery
	// takes over, and how long an event id is remembered. Stripe redelivers
	// for up to 3 days and an event can be resent by hand for 30, so the ttl
	// covers 30 days; these keys are never sent to Stripe, so its 24 h limit
	// on Idempotency-Keys does not apply: the ttl is also the key window
	// begin gets (webhook.ts).
	webhookLeaseSeconds: number;
	webhookTtlSeconds: number;
	successUrl: string;
	cancelUrl: string;
	webhookSecret: string | null;
	jwtSecret: string | null;
	stripe: StripeConfig;
}

export function loadConfig(): Config {
	const protocol = Deno.env.get('STRIPE_PROTOCOL');
	if (protocol !== undefined && protocol !== 'http' && protocol !== 'https') throw new Error('STRIPE_PROTOCOL must be http or https');
	return {
		// CHECKOUT_DB_URL: e.g. the transaction pooler (port 6543) as the
		// functions' own role; `supabase secrets set` refuses SUPABASE_ names,
		// so the platform's SUPABASE_DB_URL is only the fallback.
		databaseUrl: Deno.env.get('CHECKOUT_DB_URL') || required('SUPABASE_DB_URL'),
		// An isolate serves few requests at a time; the pooler multiplexes.
		dbPoolSize: int('DB_POOL_SIZE', 5),
		statementTimeoutMs: int('DB_STATEMENT_TIMEOUT_MS', 5000),
		leaseSeconds: int('CHECKOUT_LEASE_SECONDS', 90),
		ttlSeconds: Deno.env.get('CHECKOUT_TTL_SECONDS') ? int('CHECKOUT_TTL_SECONDS', 86400) : null,
		webhookLeaseSeconds: int('WEBHOOK_LEASE_SECONDS', 60),
		webhookTtlSeconds: int('WEBHOOK_TTL_SECONDS', 30 * 86400),
		successUrl: Deno.env.get('CHECKOUT_SUCCESS_URL') || 'https://shop.example/checkout/success?session_id={CHECKOUT_SESSION_ID}',
		cancelUrl: Deno.env.get('CHECKOUT_CANCEL_URL') || 'https://shop.example/cart',
		webhookSecret: Deno.env.get('STRIPE_WEBHOOK_SECRET') || null,
		jwtSecret: Deno.env.get('SUPABASE_JWT_SECRET') || null,
		stripe: {
			apiKey: required('STRIPE_SECRET_KEY'),
			host: Deno.env.get('STRIPE_HOST') || undefined,
			port: Deno.env.get('STRIPE_PORT') ? int('STRIPE_PORT', 443) : undefined,
			protocol: protocol as 'http' | 'https' | undefined,
			timeoutMs: int('STRIPE_TIMEOUT_MS', 20000),
			maxNetworkRetries: int('STRIPE_MAX_NETWORK_RETRIES', 1),
		},
	};
}
