'use strict';
// Scenario 1: the client sends the same checkout twice, one after the other.
// One Stripe object; the second answer is the first session, from the database.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack, uniqueId, checkoutBody } = require('./support/stack');
const { checkRow } = require('./support/db');

let stack;
before(async () => { stack = await startStack(); });
after(() => stack.close());

for (const [who, opts] of [['guest', { email: 'guest@example.com' }], ['signed-in customer', { customerId: 'cus_Q1w2e3' }]]) {
	test(`sequential retry, ${who}: one session, the same id both times`, async () => {
		const id = uniqueId('seq');
		const created = stack.fake.created;

		const first = await stack.post(checkoutBody(id, opts));
		assert.equal(first.status, 200, JSON.stringify(first.body));
		assert.match(first.body.sessionId, /^cs_test_/);
		assert.equal(first.body.replayed, false);
		const requests = stack.fake.requests.length;

		const second = await stack.post(checkoutBody(id, opts));
		assert.equal(second.status, 200);
		assert.equal(second.body.sessionId, first.body.sessionId);
		assert.equal(second.headers.get('idempotent-replayed'), 'true');

		assert.equal(stack.fake.created, created + 1, 'exactly one Stripe object');
		assert.equal(stack.fake.requests.length, requests, 'the retry did not call Stripe');
		assert.ok(stack.log.lines.some((l) => l.msg === 'Idempotent request - returning existing session' && l.checkoutSessionId === id));

		const row = await checkRow(stack, id);
		assert.equal(row.status, 'completed');
		assert.equal(row.resource_id, first.body.sessionId);
		assert.equal(stack.fake.requests.at(-1).key, row.key, 'Stripe saw the key stripe_idem issued');
	});
}
