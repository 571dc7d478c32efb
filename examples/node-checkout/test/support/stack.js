'use strict';
// One test stack: the fake Stripe, the handler wired to it and to the
// throwaway database from the PG* environment, and POST /checkout on a
// random port.

const { startFakeStripe } = require('../../fake-stripe/server');
const { createCheckoutServer, createDeps } = require('../../src/server');

// Short lease so crash tests wait seconds, not minutes. The SDK settings keep
// its worst case (2 x 2000 ms + 500 ms backoff) inside it, as createDeps
// checks; 2 s is generous for a local fake even on a loaded machine.
const TEST_LEASE_SECONDS = 5;
const TEST_STRIPE = { apiKey: 'sk_test_fake', timeoutMs: 2000, maxNetworkRetries: 1 };

function captureLog() {
	const lines = [];
	const rec = (level) => (msg, fields = {}) => lines.push({ level, msg, ...fields });
	return { lines, info: rec('info'), warn: rec('warn'), error: rec('error') };
}

function testConfig(fake, overrides = {}) {
	return {
		leaseSeconds: TEST_LEASE_SECONDS,
		ttlSeconds: null,
		successUrl: 'https://shop.test/success?session_id={CHECKOUT_SESSION_ID}',
		cancelUrl: 'https://shop.test/cart',
		poolSize: 20,
		...overrides,
		stripe: { ...TEST_STRIPE, ...fake.sdkOptions(), ...(overrides.stripe || {}) },
	};
}

// The same settings for a handler run as a child process (src/server.js).
function childEnv(fake, extra = {}) {
	return {
		...process.env,
		CHECKOUT_LEASE_SECONDS: String(TEST_LEASE_SECONDS),
		CHECKOUT_SUCCESS_URL: 'https://shop.test/success?session_id={CHECKOUT_SESSION_ID}',
		CHECKOUT_CANCEL_URL: 'https://shop.test/cart',
		STRIPE_SECRET_KEY: TEST_STRIPE.apiKey,
		STRIPE_HOST: '127.0.0.1',
		STRIPE_PORT: String(fake.port),
		STRIPE_PROTOCOL: 'http',
		STRIPE_TIMEOUT_MS: String(TEST_STRIPE.timeoutMs),
		STRIPE_MAX_NETWORK_RETRIES: String(TEST_STRIPE.maxNetworkRetries),
		...extra,
	};
}

// Never fall back to libpq's defaults: that could be a real server.
function requireThrowawayDatabase() {
	if (!process.env.PGHOST || !process.env.PGPORT)
		throw new Error('set PGHOST and PGPORT to a throwaway cluster with CREATE EXTENSION stripe_idem done (test/suites/60-node.sh does this)');
}

async function startStack(overrides = {}) {
	requireThrowawayDatabase();
	const fake = await startFakeStripe();
	const log = captureLog();
	const deps = createDeps(testConfig(fake, overrides), { log });
	const server = createCheckoutServer(deps);
	await new Promise((r) => server.listen(0, '127.0.0.1', r));
	const url = `http://127.0.0.1:${server.address().port}/checkout`;
	return {
		fake,
		deps,
		log,
		url,
		post: (body) => postJSON(url, body),
		sql: async (text, params) => (await deps.pool.query(text, params)).rows,
		async close() {
			server.closeAllConnections();
			await new Promise((r) => server.close(r));
			await deps.pool.end();
			await fake.close();
		},
	};
}

async function postJSON(url, body) {
	const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
	return { status: res.status, headers: res.headers, body: await res.json() };
}

// What a well-behaved client does: retry 409/503 after Retry-After, within a
// deadline. Returns the final answer and every answer on the way.
async function postUntilSettled(url, body, { deadlineMs = 20000 } = {}) {
	const seen = [];
	const until = Date.now() + deadlineMs;
	for (;;) {
		const r = await postJSON(url, body);
		seen.push(r);
		if (r.status !== 409 && r.status !== 503) return { final: r, seen };
		if (Date.now() > until) throw new Error(`still ${r.status} after ${deadlineMs} ms`);
		const wait = Number(r.headers.get('retry-after') || 1) * 1000;
		await new Promise((res) => setTimeout(res, Math.min(wait, Math.max(0, until - Date.now()))));
	}
}

let seq = 0;
// Operation ids unique across test files and runs sharing one database.
function uniqueId(prefix) {
	return `${prefix}-${process.pid}-${Date.now().toString(36)}-${++seq}`;
}

function checkoutBody(id, { items, email = 'guest@example.com', customerId } = {}) {
	return {
		checkoutSessionId: id,
		cart: { currency: 'eur', items: items || [{ name: 'Espresso beans 1kg', unitAmount: 2400, quantity: 2 }] },
		...(customerId ? { customerId } : { email }),
	};
}

module.exports = { startStack, childEnv, postJSON, postUntilSettled, uniqueId, checkoutBody, captureLog, TEST_LEASE_SECONDS };
