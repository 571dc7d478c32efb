'use strict';
// Scenario 9: an operation whose outcome is unknown after Stripe may have
// forgotten its key. The handler died after begin; 30 hours pass (beyond
// the 24 hour key window and the ttl), at Stripe as in the database. begin
// now answers "unresolved" for every caller; the handler reconciles: it
// lists the Checkout Sessions created while the key could have been used,
// matches the operation id in their metadata, and records what it finds or
// restarts under a new key. Stripe is never sent the old key again.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack, uniqueId, checkoutBody, childEnv, postJSON } = require('./support/stack');
const { startChild } = require('./support/child');
const { checkRow, rawRow, ageRow } = require('./support/db');
const { parseCheckout } = require('../src/checkout-input');

const THIRTY_HOURS = 30 * 3600;

let stack;
before(async () => { stack = await startStack(); });
after(() => stack.close());

// 30 hours pass for operation `id`: in the database and at Stripe, which
// forgets the keys it saw more than 24 hours ago.
async function thirtyHoursLater(id) {
	await ageRow(stack, id, '30 hours');
	stack.fake.age(THIRTY_HOURS);
}

// begin, as a handler that died before it called Stripe would have left it.
async function begunAndAbandoned(id) {
	const input = parseCheckout(checkoutBody(id), stack.deps.config);
	const b = await stack.deps.store.begin('checkout:create', id, input.requestParams);
	assert.equal(b.state, 'acquired');
	return b.key;
}

test('Stripe created the session, the handler died before it recorded: found and recorded, no second session', async (t) => {
	const id = uniqueId('unres-found');
	const created = stack.fake.created;
	const handler = startChild(childEnv(stack.fake, { CHECKOUT_TEST_PAUSE_BEFORE_RECORD: '1' }));
	t.after(() => handler.kill());
	const port = await handler.waitFor('listening');
	const pending = postJSON(`http://127.0.0.1:${port}/checkout`, checkoutBody(id)).then((r) => r, (err) => err);
	const paused = await handler.waitFor('pausedBeforeRecord');
	await handler.kill();
	assert.ok((await pending) instanceof Error, 'the client lost its connection');
	assert.equal(stack.fake.created, created + 1, 'Stripe created the session');

	await thirtyHoursLater(id);
	assert.ok(!stack.fake.keys.has(paused.key), 'Stripe forgot the key');
	const [b] = await stack.sql(`SELECT state, stripe_idempotency_key AS key FROM begin_stripe_idempotency('checkout:create', $1, $2)`,
		[id, JSON.stringify(parseCheckout(checkoutBody(id), stack.deps.config).requestParams)]);
	assert.deepEqual(b, { state: 'unresolved', key: paused.key }, 'begin: unresolved, with the stored key');
	assert.equal((await checkRow(stack, id)).status, 'unresolved');

	const posts = stack.fake.requests.length;
	const lists = stack.fake.lists.length;
	const r = await stack.post(checkoutBody(id));
	assert.equal(r.status, 200, JSON.stringify(r.body));
	assert.equal(r.body.sessionId, paused.outcome.session.id, 'the session the dead handler got');
	assert.equal(r.body.replayed, true);
	assert.equal(r.headers.get('idempotent-replayed'), 'true');
	assert.equal(stack.fake.created, created + 1, 'still exactly one Stripe object');
	assert.equal(stack.fake.requests.length, posts, 'no create sent: the forgotten key would have made a second session');
	assert.ok(stack.fake.lists.length > lists, 'Stripe was asked by listing');
	const row = await rawRow(stack, id);
	assert.equal(row.status, 'completed');
	assert.equal(row.key, paused.key, 'recorded under the stored key');
	assert.equal(row.resource_id, paused.outcome.session.id);
	assert.ok(stack.log.lines.some((l) => l.msg === 'unresolved checkout reconciled: Stripe had the session, recorded' && l.checkoutSessionId === id));

	const listsAfter = stack.fake.lists.length;
	const again = await stack.post(checkoutBody(id));
	assert.equal(again.body.sessionId, r.body.sessionId, 'replayed from the database from then on');
	assert.equal(stack.fake.lists.length, listsAfter, 'without asking Stripe again');
});

test('Stripe never got the call: nothing found, restarted under a new key, one session', async () => {
	const id = uniqueId('unres-none');
	const created = stack.fake.created;
	const oldKey = await begunAndAbandoned(id);
	await thirtyHoursLater(id);
	assert.equal((await checkRow(stack, id)).status, 'unresolved');

	const r = await stack.post(checkoutBody(id));
	assert.equal(r.status, 200, JSON.stringify(r.body));
	assert.equal(r.body.replayed, false);
	assert.equal(stack.fake.created, created + 1, 'one session');
	const row = await rawRow(stack, id);
	assert.equal(row.status, 'completed');
	assert.notEqual(row.key, oldKey, 'a new key');
	assert.equal(row.attempts, 1, 'restart begins the count anew');
	assert.equal(row.resource_id, r.body.sessionId);
	const sent = stack.fake.requests.filter((q) => q.key === oldKey || q.key === row.key);
	assert.deepEqual(sent.map((q) => [q.key, q.outcome]), [[row.key, 'created']], 'the old key was never sent');

	const again = await stack.post(checkoutBody(id));
	assert.equal(again.body.sessionId, r.body.sessionId);
	assert.equal(stack.fake.created, created + 1);
});

test('Stripe cannot be asked: 409 type unresolved with Retry-After, nothing changes; settled once it answers', async () => {
	const id = uniqueId('unres-down');
	const oldKey = await begunAndAbandoned(id);
	await thirtyHoursLater(id);
	stack.fake.fault('500', { on: 'list', times: 2 }); // both SDK attempts
	const posts = stack.fake.requests.length;

	const r = await stack.post(checkoutBody(id));
	assert.equal(r.status, 409);
	assert.equal(r.body.error.type, 'unresolved');
	assert.ok(Number(r.headers.get('retry-after')) >= 1);
	assert.equal(stack.fake.requests.length, posts, 'no create sent');
	const row = await checkRow(stack, id);
	assert.equal(row.status, 'unresolved');
	assert.equal(row.key, oldKey, 'nothing written');

	const later = await stack.post(checkoutBody(id));
	assert.equal(later.status, 200);
	assert.notEqual((await rawRow(stack, id)).key, oldKey);
});

test('a mismatch stays a mismatch while unresolved, and Stripe is not asked', async () => {
	const id = uniqueId('unres-mm');
	await begunAndAbandoned(id);
	await thirtyHoursLater(id);
	const lists = stack.fake.lists.length;
	const r = await stack.post(checkoutBody(id, { email: 'someone.else@example.com' }));
	assert.equal(r.status, 422);
	assert.equal(stack.fake.lists.length, lists);
	assert.equal((await checkRow(stack, id)).status, 'unresolved');
});
