'use strict';
// Scenario 4: a checkoutSessionId reused with a different cart is refused
// with 422 and nothing reaches Stripe; the original stays intact.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack, uniqueId, checkoutBody } = require('./support/stack');
const { checkRow } = require('./support/db');

let stack;
before(async () => { stack = await startStack(); });
after(() => stack.close());

const otherCart = { items: [{ name: 'Espresso beans 1kg', unitAmount: 2400, quantity: 3 }] };

test('same checkoutSessionId, different cart: 422, nothing created', async () => {
	const id = uniqueId('mismatch');
	const first = await stack.post(checkoutBody(id));
	assert.equal(first.status, 200);
	const requests = stack.fake.requests.length;

	const other = await stack.post(checkoutBody(id, otherCart));
	assert.equal(other.status, 422);
	assert.equal(other.body.error.type, 'mismatch');
	const otherBuyer = await stack.post(checkoutBody(id, { email: 'someone.else@example.com' }));
	assert.equal(otherBuyer.status, 422, 'the buyer is part of the request too');

	assert.equal(stack.fake.requests.length, requests, 'Stripe was not called');
	assert.equal(stack.fake.created, 1);
	assert.equal((await checkRow(stack, id)).resource_id, first.body.sessionId, 'the stored session is untouched');
	const again = await stack.post(checkoutBody(id));
	assert.equal(again.body.sessionId, first.body.sessionId);
});

test('a mismatch while the first request is still running is 422 too', async () => {
	const id = uniqueId('mismatch-busy');
	stack.fake.fault('delay', { ms: 400 });
	const first = stack.post(checkoutBody(id));
	await new Promise((r) => setTimeout(r, 150));
	const other = await stack.post(checkoutBody(id, otherCart));
	assert.equal(other.status, 422);
	assert.equal((await first).status, 200);
	assert.equal(stack.fake.requests.filter((r) => r.outcome === 'created').length, 2, 'one object per operation');
});

test('the cart fingerprint ignores key order and unknown fields', async () => {
	const id = uniqueId('mismatch-order');
	const a = await stack.post(checkoutBody(id));
	const reordered = {
		email: 'guest@example.com',
		cart: { items: [{ quantity: 2, unitAmount: 2400, name: 'Espresso beans 1kg', note: 'ignored' }], currency: 'eur' },
		checkoutSessionId: id,
	};
	const b = await stack.post(reordered);
	assert.equal(b.status, 200);
	assert.equal(b.body.sessionId, a.body.sessionId);
});
