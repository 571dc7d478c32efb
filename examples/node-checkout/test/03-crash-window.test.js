'use strict';
// Scenario 3: Stripe created the object but the handler never recorded it.
// The retry must send the same Idempotency-Key so that Stripe replays, and
// exactly one object must exist in the end.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack, uniqueId, checkoutBody, childEnv, postJSON, postUntilSettled, TEST_LEASE_SECONDS } = require('./support/stack');
const { startChild } = require('./support/child');
const { rawRow } = require('./support/db');

let stack;
before(async () => { stack = await startStack(); });
after(() => stack.close());

test('connection dropped after Stripe created the session', async () => {
	const id = uniqueId('drop');
	const created = stack.fake.created;
	const requests = stack.fake.requests.length;
	// Drop the answer to both SDK attempts (it retries a closed connection once).
	stack.fake.fault('drop', { times: 2 });

	const first = await stack.post(checkoutBody(id));
	assert.equal(first.status, 503, 'the handler does not know the outcome: retry');
	assert.equal(stack.fake.created, created + 1, 'but Stripe did create the session');
	const row = await rawRow(stack, id);
	assert.equal(row.status, 'in_progress');
	// A release ends the lease now (it keeps when: stripe_idem.settle_time).
	assert.ok(row.locked_until <= new Date(), 'the lease was released, the retry need not wait');

	const { final } = await postUntilSettled(stack.url, checkoutBody(id));
	assert.equal(final.status, 200);
	const sent = stack.fake.requests.filter((r) => r.key === row.key);
	assert.deepEqual(sent.slice(0, 2).map((r) => r.outcome), ['created', 'replayed_dropped']);
	assert.equal(sent.at(-1).outcome, 'replayed');
	assert.equal(sent.length, stack.fake.requests.length - requests, 'every attempt used the same Idempotency-Key');
	assert.equal(final.body.sessionId, [...stack.fake.sessions.keys()].at(-1));
	assert.equal(stack.fake.created, created + 1, 'still exactly one Stripe object');
	assert.equal((await rawRow(stack, id)).status, 'completed');
});

test('handler killed after Stripe answered, before it recorded', async (t) => {
	const id = uniqueId('kill');
	const created = stack.fake.created;
	const handler = startChild(childEnv(stack.fake, { CHECKOUT_TEST_PAUSE_BEFORE_RECORD: '1' }));
	t.after(() => handler.kill());

	const port = await handler.waitFor('listening');
	const pending = postJSON(`http://127.0.0.1:${port}/checkout`, checkoutBody(id)).then(
		(r) => r, (err) => err);
	const paused = await handler.waitFor('pausedBeforeRecord');
	await handler.kill();
	const killedAt = Date.now();
	assert.ok((await pending) instanceof Error, 'the client lost its connection');
	assert.equal(stack.fake.created, created + 1, 'Stripe created the session');
	const orphan = await rawRow(stack, id);
	assert.equal(orphan.status, 'in_progress');
	assert.equal(orphan.key, paused.key);

	// The dead handler's lease still stands: a retry now is told to wait.
	const early = await stack.post(checkoutBody(id));
	assert.equal(early.status, 409);
	assert.ok(Number(early.headers.get('retry-after')) <= TEST_LEASE_SECONDS);

	const { final } = await postUntilSettled(stack.url, checkoutBody(id), { deadlineMs: (TEST_LEASE_SECONDS + 10) * 1000 });
	assert.equal(final.status, 200);
	assert.ok(Date.now() - killedAt >= 1000, 'the takeover waited for the lease');
	assert.equal(final.body.sessionId, paused.outcome.session.id, 'the session the killed handler got');
	const last = stack.fake.requests.at(-1);
	assert.equal(last.key, paused.key, 'the takeover reused the Idempotency-Key');
	assert.equal(last.outcome, 'replayed');
	assert.equal(stack.fake.created, created + 1, 'still exactly one Stripe object');
	const row = await rawRow(stack, id);
	assert.equal(row.status, 'completed');
	assert.equal(row.attempts, 2);
});
