'use strict';
// Scenario 5: a definitive Stripe error is the operation's outcome. It is
// recorded and replayed from the database; Stripe is not called again.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack, uniqueId, checkoutBody } = require('./support/stack');
const { rawRow } = require('./support/db');

let stack;
before(async () => { stack = await startStack(); });
after(() => stack.close());

test('card_declined is replayed without a second Stripe call', async () => {
	const id = uniqueId('declined');
	stack.fake.fault('card_declined');

	const first = await stack.post(checkoutBody(id));
	assert.equal(first.status, 402);
	assert.equal(first.body.error.code, 'card_declined');
	assert.equal(first.body.error.decline_code, 'generic_decline');
	const requests = stack.fake.requests.length;

	const second = await stack.post(checkoutBody(id));
	assert.equal(second.status, 402);
	assert.deepEqual(second.body, first.body);
	assert.equal(second.headers.get('idempotent-replayed'), 'true');
	assert.equal(stack.fake.requests.length, requests, 'answered from the database');
	assert.equal(stack.fake.created, 0);

	const row = await rawRow(stack, id);
	assert.equal(row.status, 'completed');
	assert.equal(row.resource_id, null, 'no Stripe object');
	assert.equal(row.response.status, 402);
});

test('invalid_request_error from Stripe is recorded and replayed too', async () => {
	const id = uniqueId('invalid');
	// The handler's own checks pass, Stripe's amount limit does not.
	const body = checkoutBody(id, { items: [{ name: 'Gold bar', unitAmount: 100000000, quantity: 1 }] });
	const first = await stack.post(body);
	assert.equal(first.status, 400);
	assert.equal(first.body.error.type, 'invalid_request_error');
	assert.equal(first.body.error.param, 'line_items[0][price_data][unit_amount]');
	const requests = stack.fake.requests.length;
	const second = await stack.post(body);
	assert.deepEqual(second.body, first.body);
	assert.equal(stack.fake.requests.length, requests, 'answered from the database');
});
