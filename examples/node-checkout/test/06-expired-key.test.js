'use strict';
// Scenario 6: once a key has expired and been swept, the same
// checkoutSessionId is a new operation with a new Idempotency-Key. (This is
// why the ttl must not outlive Stripe's own 24 h memory of keys.)

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack, uniqueId, checkoutBody } = require('./support/stack');
const { checkRow } = require('./support/db');

let stack;
before(async () => { stack = await startStack(); });
after(() => stack.close());

test('an expired, swept key lets a new attempt through with a new key', async () => {
	const id = uniqueId('expired');
	const first = await stack.post(checkoutBody(id));
	assert.equal(first.status, 200);
	const oldKey = (await checkRow(stack, id)).key;

	await stack.sql(
		`UPDATE stripe_idempotency_keys SET expires_at = now() - interval '1 second', locked_until = NULL
		  WHERE operation_type = 'checkout:create' AND operation_id = $1`, [id]);
	const [{ swept }] = await stack.sql('SELECT cleanup_expired_idempotency_keys() AS swept');
	assert.ok(Number(swept) >= 1, `swept ${swept}`);
	assert.equal((await checkRow(stack, id)).found, false);

	const second = await stack.post(checkoutBody(id));
	assert.equal(second.status, 200);
	assert.equal(second.body.replayed, false);
	assert.notEqual(second.body.sessionId, first.body.sessionId);
	const row = await checkRow(stack, id);
	assert.equal(row.status, 'completed');
	assert.notEqual(row.key, oldKey, 'a new Idempotency-Key');
	assert.deepEqual([...new Set(stack.fake.requests.map((r) => r.key))], [oldKey, row.key]);
	assert.equal(stack.fake.created, 2, 'one object per key');
});
