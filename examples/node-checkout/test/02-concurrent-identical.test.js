'use strict';
// Scenario 2: 100 identical requests at once (double clicks, retry storms).
// Exactly one Stripe call and one object; every answer is that session, a
// 409 with Retry-After, or a later replay, never a second session.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack, uniqueId, checkoutBody, postUntilSettled } = require('./support/stack');

let stack;
before(async () => { stack = await startStack(); });
after(() => stack.close());

test('100 concurrent identical requests create exactly one session', async (t) => {
	const id = uniqueId('burst');
	// Keep the Stripe call open a while so that most requests meet the lease.
	stack.fake.fault('delay', { ms: 500 });

	const answers = await Promise.all(Array.from({ length: 100 }, () => stack.post(checkoutBody(id))));
	const byStatus = {};
	for (const a of answers) byStatus[a.status] = (byStatus[a.status] || 0) + 1;
	t.diagnostic(`answers by status: ${JSON.stringify(byStatus)}`);

	assert.deepEqual(Object.keys(byStatus).filter((s) => s !== '200' && s !== '409'), [], 'only 200 and 409');
	const ok = answers.filter((a) => a.status === 200);
	assert.ok(ok.length >= 1, 'the caller holding the lease got the session');
	assert.equal(new Set(ok.map((a) => a.body.sessionId)).size, 1, 'one session id among all 200s');
	assert.equal(ok.filter((a) => !a.body.replayed).length, 1, 'one fresh creation, the rest replays');
	for (const a of answers.filter((x) => x.status === 409)) assert.ok(Number(a.headers.get('retry-after')) >= 1);

	// The 409 clients come back later and get the same session.
	const { final } = await postUntilSettled(stack.url, checkoutBody(id));
	assert.equal(final.status, 200);
	assert.equal(final.body.sessionId, ok[0].body.sessionId);

	assert.equal(stack.fake.created, 1, 'exactly one Stripe object');
	// One handler call held the lease; only its SDK retries (same key) may add calls.
	t.diagnostic(`Stripe calls: ${stack.fake.requests.map((r) => r.outcome).join(', ')}`);
	assert.equal(new Set(stack.fake.requests.map((r) => r.key)).size, 1, 'every Stripe call used one key');
});
