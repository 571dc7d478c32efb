'use strict';
// The fake against the real SDK: Stripe's idempotency rules and the faults
// the end-to-end tests rely on. No database needed.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Stripe = require('stripe');
const { startFakeStripe } = require('../fake-stripe/server');

let fake;
let stripe;
const params = {
	mode: 'payment',
	success_url: 'https://shop.test/ok',
	line_items: [{ quantity: 2, price_data: { currency: 'eur', unit_amount: 1500, product_data: { name: 'Tea' } } }],
};

before(async () => {
	fake = await startFakeStripe();
	// No SDK retries here, so every fake answer reaches the test as is.
	stripe = new Stripe('sk_test_fake', { ...fake.sdkOptions(), maxNetworkRetries: 0, timeout: 2000, telemetry: false });
});
after(() => fake.close());

test('creates a session, and replays it for the same key and parameters', async () => {
	const a = await stripe.checkout.sessions.create(params, { idempotencyKey: 'k-replay' });
	const b = await stripe.checkout.sessions.create(params, { idempotencyKey: 'k-replay' });
	assert.match(a.id, /^cs_test_/);
	assert.equal(a.amount_total, 3000);
	assert.equal(b.id, a.id);
	assert.equal(b.lastResponse.headers['idempotent-replayed'], 'true');
	assert.equal(a.lastResponse.headers['idempotent-replayed'], undefined);
	assert.equal(fake.created, 1);
});

test('same key with other parameters is an idempotency_error', async () => {
	await stripe.checkout.sessions.create(params, { idempotencyKey: 'k-params' });
	await assert.rejects(
		stripe.checkout.sessions.create({ ...params, client_reference_id: 'other' }, { idempotencyKey: 'k-params' }),
		(err) => err.type === 'StripeIdempotencyError' && err.statusCode === 400);
});

test('same key while the first request executes is 409 idempotency_key_in_use', async () => {
	fake.fault('delay', { ms: 300 });
	const first = stripe.checkout.sessions.create(params, { idempotencyKey: 'k-busy' });
	await new Promise((r) => setTimeout(r, 100));
	await assert.rejects(stripe.checkout.sessions.create(params, { idempotencyKey: 'k-busy' }),
		(err) => err.statusCode === 409 && err.code === 'idempotency_key_in_use');
	const s = await first;
	assert.equal((await stripe.checkout.sessions.create(params, { idempotencyKey: 'k-busy' })).id, s.id);
});

test('drop: the object exists although the client saw only a closed connection', async () => {
	const before = fake.created;
	// Two drops: the SDK retries a closed connection once even with retries off.
	fake.fault('drop', { times: 2 });
	await assert.rejects(stripe.checkout.sessions.create(params, { idempotencyKey: 'k-drop' }),
		(err) => err.type === 'StripeConnectionError');
	assert.equal(fake.created, before + 1);
	assert.deepEqual(fake.requests.filter((r) => r.key === 'k-drop').map((r) => r.outcome), ['created', 'replayed_dropped']);
	const s = await stripe.checkout.sessions.create(params, { idempotencyKey: 'k-drop' });
	assert.equal(s.lastResponse.headers['idempotent-replayed'], 'true');
	assert.equal(fake.created, before + 1);
});

test('card_declined is saved under the key; 500 is not', async () => {
	fake.fault('card_declined');
	for (let i = 0; i < 2; i++)
		await assert.rejects(stripe.checkout.sessions.create(params, { idempotencyKey: 'k-card' }),
			(err) => err.type === 'StripeCardError' && err.code === 'card_declined' && err.statusCode === 402);
	fake.fault('500');
	const before = fake.created;
	await assert.rejects(stripe.checkout.sessions.create(params, { idempotencyKey: 'k-500' }), (err) => err.statusCode === 500);
	await stripe.checkout.sessions.create(params, { idempotencyKey: 'k-500' });
	assert.equal(fake.created, before + 1);
});

test('lists sessions newest first, by created time, page by page as the SDK follows them', async () => {
	const mine = [];
	for (let i = 0; i < 5; i++)
		mine.push((await stripe.checkout.sessions.create({ ...params, metadata: { checkout_session_id: `list-${i}` } }, { idempotencyKey: `k-list-${i}` })).id);
	const page = await stripe.checkout.sessions.list({ limit: 2 });
	assert.deepEqual(page.data.map((s) => s.id), [mine[4], mine[3]]);
	assert.equal(page.has_more, true);
	const seen = [];
	for await (const s of stripe.checkout.sessions.list({ limit: 2 })) seen.push(s.id);
	assert.deepEqual(seen.slice(0, 5), [...mine].reverse(), 'auto-pagination with starting_after');
	assert.equal(seen.length, fake.created);
	const now = Math.floor(Date.now() / 1000);
	assert.equal((await stripe.checkout.sessions.list({ created: { gte: now + 60 } })).data.length, 0);
	assert.equal((await stripe.checkout.sessions.list({ created: { lt: now - 60 } })).data.length, 0);
	const recent = await stripe.checkout.sessions.list({ created: { gte: now - 60, lte: now + 60 }, limit: 100 });
	assert.equal(recent.data.length, fake.created);
	assert.equal(recent.data.find((s) => s.id === mine[2]).metadata.checkout_session_id, 'list-2');
	await assert.rejects(stripe.checkout.sessions.list({ limit: 101 }), (err) => err.statusCode === 400);
	const theirs = await stripe.checkout.sessions.create({ ...params, customer: 'cus_List1' }, { idempotencyKey: 'k-list-cus' });
	assert.deepEqual((await stripe.checkout.sessions.list({ customer: 'cus_List1' })).data.map((s) => s.id), [theirs.id]);
});

test('a forgotten key executes anew; age() moves sessions back and forgets keys past 24 hours', async () => {
	const a = await stripe.checkout.sessions.create(params, { idempotencyKey: 'k-forget' });
	assert.equal(fake.forget('k-forget'), true);
	const b = await stripe.checkout.sessions.create(params, { idempotencyKey: 'k-forget' });
	assert.notEqual(b.id, a.id, 'Stripe no longer knew the key: a second object');

	const c = await stripe.checkout.sessions.create(params, { idempotencyKey: 'k-age' });
	assert.deepEqual(fake.age(3600), [], 'an hour later every key is still known');
	assert.equal(fake.sessions.get(c.id).created, c.created - 3600);
	assert.ok(fake.age(30 * 3600).includes('k-age'), '31 hours later it is forgotten');
	const now = Math.floor(Date.now() / 1000);
	const old = await stripe.checkout.sessions.list({ created: { lte: now - 30 * 3600 }, limit: 100 });
	assert.ok(old.data.some((s) => s.id === c.id));
});

test('list faults: 500 and a dropped connection reach the SDK as errors', async () => {
	fake.fault('500', { on: 'list' });
	await assert.rejects(stripe.checkout.sessions.list(), (err) => err.statusCode === 500);
	fake.fault('drop', { on: 'list', times: 2 });
	await assert.rejects(stripe.checkout.sessions.list(), (err) => err.type === 'StripeConnectionError');
	assert.deepEqual(fake.lists.slice(-3).map((l) => l.outcome), ['error_500', 'dropped', 'dropped']);
	assert.equal((await stripe.checkout.sessions.list()).object, 'list');
});

test('wrong API key is 401', async () => {
	const bad = new Stripe('pk_live_nope', { ...fake.sdkOptions(), maxNetworkRetries: 0, telemetry: false });
	await assert.rejects(bad.checkout.sessions.create(params), (err) => err.statusCode === 401);
});

test('completed-session events are signed as Stripe signs them: the SDK accepts them, other secrets are refused', async () => {
	const s = await stripe.checkout.sessions.create(params, { idempotencyKey: 'k-webhook' });
	const { event, payload, signature } = fake.completeSession(s.id);
	const parsed = stripe.webhooks.constructEvent(payload, signature, fake.webhookSecret);
	assert.equal(parsed.id, event.id);
	assert.equal(parsed.type, 'checkout.session.completed');
	assert.equal(parsed.data.object.id, s.id);
	assert.equal(parsed.data.object.payment_status, 'paid');

	const again = fake.signEvent(event.id, { t: Math.floor(Date.now() / 1000) + 1 });
	assert.equal(again.payload, payload, 'a redelivery carries the same payload');
	assert.notEqual(again.signature, signature, 'signed anew');
	assert.equal(stripe.webhooks.constructEvent(again.payload, again.signature, fake.webhookSecret).id, event.id);

	const forged = fake.signEvent(event.id, { secret: 'whsec_someone_else' });
	assert.throws(() => stripe.webhooks.constructEvent(forged.payload, forged.signature, fake.webhookSecret),
		(err) => err.type === 'StripeSignatureVerificationError');
});

test('the control API serves counts, faults and events to tests in other processes', async () => {
	const base = `http://127.0.0.1:${fake.port}/_fake`;
	const state0 = await (await fetch(`${base}/state`)).json();
	assert.equal(state0.created, fake.created);
	assert.equal(state0.requests.length, fake.requests.length);

	assert.equal((await fetch(`${base}/faults`, { method: 'POST', body: JSON.stringify({ kind: 'card_declined' }) })).status, 200);
	await assert.rejects(stripe.checkout.sessions.create(params, { idempotencyKey: 'k-ctl-card' }), (err) => err.code === 'card_declined');

	const s = await stripe.checkout.sessions.create(params, { idempotencyKey: 'k-ctl' });
	const done = await (await fetch(`${base}/sessions/${s.id}/complete`, { method: 'POST' })).json();
	assert.equal(stripe.webhooks.constructEvent(done.payload, done.signature, fake.webhookSecret).data.object.id, s.id);
	const resigned = await (await fetch(`${base}/events/${done.event.id}/sign`, { method: 'POST', body: '{}' })).json();
	assert.equal(resigned.payload, done.payload);

	const state1 = await (await fetch(`${base}/state`)).json();
	assert.equal(state1.created, state0.created + 1);
	assert.deepEqual(state1.requests.slice(-2).map((r) => r.outcome), ['card_declined', 'created']);
	const forgot = await (await fetch(`${base}/keys/${encodeURIComponent('k-ctl')}/forget`, { method: 'POST' })).json();
	assert.equal(forgot.forgotten, true);
	const aged = await (await fetch(`${base}/age`, { method: 'POST', body: JSON.stringify({ seconds: 60 }) })).json();
	assert.deepEqual(aged.forgotten, []);
	assert.equal((await fetch(`${base}/faults`, { method: 'POST', body: JSON.stringify({ kind: '500', on: 'list' }) })).status, 200);
	assert.equal((await (await fetch(`${base}/state`)).json()).listFaults, 1);
	await assert.rejects(stripe.checkout.sessions.list(), (err) => err.statusCode === 500);
	assert.equal((await fetch(`${base}/nothing`)).status, 404);
	assert.equal((await fetch(`${base}/sessions/cs_none/complete`, { method: 'POST' })).status, 400);
});
