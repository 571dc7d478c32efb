'use strict';
// The handler's branches with an in-memory store standing in for stripe_idem
// and the real SDK against the fake. No database needed.

const { test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const { startFakeStripe } = require('../fake-stripe/server');
const { handleCheckout } = require('../src/checkout');
const { createStripe, worstCaseCallMs, assertLeaseCoversStripe } = require('../src/stripe-client');
const { MemoryStore } = require('./support/memory-store');
const { parseCheckout } = require('../src/checkout-input');
const { captureLog, checkoutBody } = require('./support/stack');

let fake;
let deps;

before(async () => {
	fake = await startFakeStripe();
});
after(() => fake.close());
beforeEach(() => {
	deps = {
		store: new MemoryStore(),
		stripe: createStripe({ apiKey: 'sk_test_fake', ...fake.sdkOptions(), timeoutMs: 1000, maxNetworkRetries: 1 }),
		config: { leaseSeconds: 3, successUrl: 'https://shop.test/ok', cancelUrl: 'https://shop.test/cart' },
		log: captureLog(),
	};
});

test('acquired: creates the session and records it; a retry replays it', async () => {
	const a = await handleCheckout(deps, checkoutBody('unit-1'));
	assert.equal(a.status, 200);
	assert.match(a.body.sessionId, /^cs_test_/);
	const b = await handleCheckout(deps, checkoutBody('unit-1'));
	assert.equal(b.status, 200);
	assert.equal(b.body.sessionId, a.body.sessionId);
	assert.equal(b.headers['Idempotent-Replayed'], 'true');
	assert.deepEqual(deps.store.calls, ['begin', 'record', 'begin']);
	assert.ok(deps.log.lines.some((l) => l.msg === 'Idempotent request - returning existing session'));
});

test('in_progress is 409 with Retry-After, mismatch is 422', async () => {
	await deps.store.begin('checkout:create', 'unit-2', { cart: checkoutBody('unit-2').cart, buyer: { email: 'guest@example.com' } });
	const busy = await handleCheckout(deps, checkoutBody('unit-2'));
	assert.equal(busy.status, 409);
	assert.ok(Number(busy.headers['Retry-After']) >= 1);
	const other = await handleCheckout(deps, checkoutBody('unit-2', { email: 'someone@example.com' }));
	assert.equal(other.status, 422);
});

test('transient Stripe failure releases the lease and answers 503', async () => {
	fake.fault('500', { times: 2 }); // both SDK attempts
	const r = await handleCheckout(deps, checkoutBody('unit-3'));
	assert.equal(r.status, 503);
	assert.equal(r.headers['Retry-After'], '1');
	assert.deepEqual(deps.store.calls, ['begin', 'release']);
	assert.equal((await handleCheckout(deps, checkoutBody('unit-3'))).status, 200);
});

test('a release after a takeover names the old attempt and leaves the successor\'s lease alone', async () => {
	deps.config.leaseSeconds = 1;
	deps.store.leaseMs = 1000;
	deps.stripe = createStripe({ apiKey: 'sk_test_fake', ...fake.sdkOptions(), timeoutMs: 5000, maxNetworkRetries: 0 });
	fake.fault('500', { ms: 1200 });
	const late = handleCheckout(deps, checkoutBody('unit-stale'));
	// While the first call waits on Stripe its lease runs out and a successor takes over.
	await new Promise((r) => setTimeout(r, 1050));
	const successor = await deps.store.begin('checkout:create', 'unit-stale', { cart: checkoutBody('unit-stale').cart, buyer: { email: 'guest@example.com' } });
	assert.equal(successor.state, 'acquired');
	assert.equal(successor.attempts, 2);
	const r = await late;
	assert.equal(r.status, 503);
	assert.deepEqual(deps.store.calls, ['begin', 'begin', 'release']);
	assert.ok(deps.log.lines.some((l) => l.msg === 'lease no longer ours, nothing released'));
	const again = await deps.store.begin('checkout:create', 'unit-stale', { cart: checkoutBody('unit-stale').cart, buyer: { email: 'guest@example.com' } });
	assert.equal(again.state, 'in_progress', 'the successor still holds its lease');
});

test('definitive Stripe failure is recorded and replayed', async () => {
	fake.fault('card_declined');
	const a = await handleCheckout(deps, checkoutBody('unit-4'));
	assert.equal(a.status, 402);
	assert.equal(a.body.error.code, 'card_declined');
	const requests = fake.requests.length;
	const b = await handleCheckout(deps, checkoutBody('unit-4'));
	assert.deepEqual(b.body, a.body);
	assert.equal(fake.requests.length, requests);
});

test('a failed record answers 503; the retry gets the same session from Stripe', async () => {
	deps.store.failRecord = Object.assign(new Error('connection terminated'), { code: '57P01' });
	const created = fake.created;
	assert.equal((await handleCheckout(deps, checkoutBody('unit-5'))).status, 503);
	const r = await handleCheckout(deps, checkoutBody('unit-5'));
	assert.equal(r.status, 200);
	assert.equal(fake.created, created + 1);
	assert.equal(fake.requests.at(-1).outcome, 'replayed');
});

// An operation begun, its key perhaps sent, then left: what the key window
// or the ttl makes of it. Returns the key and the parsed input.
async function leftUnresolved(id, { sendToStripe }) {
	const input = parseCheckout(checkoutBody(id), deps.config);
	const b = await deps.store.begin('checkout:create', id, input.requestParams);
	assert.equal(b.state, 'acquired');
	let session = null;
	if (sendToStripe) session = await deps.stripe.checkout.sessions.create(input.stripeParams, { idempotencyKey: b.key });
	deps.store.makeUnresolved('checkout:create', id);
	fake.forget(b.key); // Stripe forgets keys after 24 hours
	deps.store.calls.length = 0;
	return { key: b.key, session };
}

test('unresolved, Stripe has the session: recorded with the stored key and answered, nothing created', async () => {
	const { key, session } = await leftUnresolved('unit-unres-found', { sendToStripe: true });
	const created = fake.created;
	const posts = fake.requests.length;
	const r = await handleCheckout(deps, checkoutBody('unit-unres-found'));
	assert.equal(r.status, 200);
	assert.equal(r.body.sessionId, session.id);
	assert.equal(r.body.replayed, true);
	assert.equal(r.headers['Idempotent-Replayed'], 'true');
	assert.deepEqual(deps.store.calls, ['begin', 'check', 'record']);
	assert.equal(fake.created, created, 'no second session');
	assert.equal(fake.requests.length, posts, 'nothing sent to Stripe but the list');
	assert.equal(deps.store.rows.get('checkout:create\0unit-unres-found').key, key);
	const again = await handleCheckout(deps, checkoutBody('unit-unres-found'));
	assert.equal(again.body.sessionId, session.id);
});

test('unresolved, Stripe has nothing: restarted under a new key, one session created', async () => {
	const { key } = await leftUnresolved('unit-unres-none', { sendToStripe: false });
	const created = fake.created;
	const r = await handleCheckout(deps, checkoutBody('unit-unres-none'));
	assert.equal(r.status, 200);
	assert.equal(r.body.replayed, false);
	assert.deepEqual(deps.store.calls, ['begin', 'check', 'restart', 'record']);
	assert.equal(fake.created, created + 1);
	const sent = fake.requests.at(-1).key;
	assert.notEqual(sent, key, 'the new key, never the old one');
	assert.equal(sent, deps.store.rows.get('checkout:create\0unit-unres-none').key);
});

test('unresolved while Stripe cannot be asked: 409 type unresolved with Retry-After, nothing changed', async () => {
	const { key } = await leftUnresolved('unit-unres-down', { sendToStripe: false });
	fake.fault('500', { times: 2, on: 'list' }); // both SDK attempts
	const posts = fake.requests.length;
	const r = await handleCheckout(deps, checkoutBody('unit-unres-down'));
	assert.equal(r.status, 409);
	assert.equal(r.body.error.type, 'unresolved');
	assert.ok(Number(r.headers['Retry-After']) >= 1);
	assert.deepEqual(deps.store.calls, ['begin', 'check']);
	assert.equal(fake.requests.length, posts, 'no create sent');
	const row = deps.store.rows.get('checkout:create\0unit-unres-down');
	assert.equal(row.unresolved, true);
	assert.equal(row.key, key);
	assert.equal((await handleCheckout(deps, checkoutBody('unit-unres-down'))).status, 200, 'settled once Stripe answers');
});

test('unresolved, restarted by someone else meanwhile: begin again and answer what it says now', async () => {
	const { key } = await leftUnresolved('unit-unres-race', { sendToStripe: false });
	// Another caller restarts it between our begin and our restart.
	const restart = deps.store.restart.bind(deps.store);
	let raced = false;
	deps.store.restart = async (...args) => {
		if (!raced) {
			raced = true;
			await restart('checkout:create', 'unit-unres-race', key);
		}
		return restart(...args);
	};
	const r = await handleCheckout(deps, checkoutBody('unit-unres-race'));
	assert.equal(r.status, 409);
	assert.equal(r.body.error.type, 'in_progress', 'the other caller holds the new lease');
	assert.deepEqual(deps.store.calls, ['begin', 'check', 'restart', 'restart', 'begin']);
});

test('a request over stripe_idem\'s size limit (54000) is 413, not 503', async () => {
	deps.store.begin = async () => { throw Object.assign(new Error('request_params is too large'), { code: '54000' }); };
	const r = await handleCheckout(deps, checkoutBody('unit-big'));
	assert.equal(r.status, 413);
	assert.equal(r.body.error.type, 'too_large');
});

test('invalid input is 400 before touching the database', async () => {
	for (const body of [{}, { checkoutSessionId: 'x', cart: { currency: 'eur', items: [] }, email: 'a@b' },
		{ ...checkoutBody('unit-6'), customerId: 'cus_1' }, { ...checkoutBody('has space') }]) {
		assert.equal((await handleCheckout(deps, body)).status, 400, JSON.stringify(body));
	}
	assert.deepEqual(deps.store.calls, []);
});

test('the lease must outlast the SDK worst case', () => {
	assert.equal(worstCaseCallMs({ timeoutMs: 20000, maxNetworkRetries: 1 }), 40500);
	assert.equal(worstCaseCallMs({ timeoutMs: 20000, maxNetworkRetries: 0 }), 40500);
	assert.equal(worstCaseCallMs({ timeoutMs: 80000, maxNetworkRetries: 2 }), 241500);
	assert.doesNotThrow(() => assertLeaseCoversStripe(90, { timeoutMs: 20000, maxNetworkRetries: 1 }));
	assert.throws(() => assertLeaseCoversStripe(90, { timeoutMs: 80000, maxNetworkRetries: 2 }), /shorter than/);
});
