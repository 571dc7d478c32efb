'use strict';
// Scenario 7: 1,000 distinct checkouts at 16-way concurrency. Every one gets
// its own session and its own completed row. The rate is printed, not asserted.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack, uniqueId, checkoutBody, postUntilSettled } = require('./support/stack');

const TOTAL = 1000;
const CONCURRENCY = 16;

let stack;
before(async () => { stack = await startStack(); });
after(() => stack.close());

test(`${TOTAL} distinct checkouts at ${CONCURRENCY}-way concurrency`, async (t) => {
	const prefix = uniqueId('tput') + ':';
	const results = new Array(TOTAL);
	let next = 0;
	const started = process.hrtime.bigint();
	await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
		while (next < TOTAL) {
			const i = next++;
			results[i] = (await postUntilSettled(stack.url, checkoutBody(prefix + i), { deadlineMs: 30000 })).final;
		}
	}));
	const seconds = Number(process.hrtime.bigint() - started) / 1e9;
	const rate = (TOTAL / seconds).toFixed(0);
	t.diagnostic(`throughput: ${TOTAL} checkouts in ${seconds.toFixed(2)} s = ${rate} requests/s (${CONCURRENCY} concurrent)`);
	console.error(`node-checkout throughput: ${rate} requests/s`);

	assert.deepEqual(results.filter((r) => r.status !== 200).map((r) => r.status), []);
	assert.equal(new Set(results.map((r) => r.body.sessionId)).size, TOTAL, 'distinct sessions');
	assert.equal(stack.fake.created, TOTAL, 'one Stripe object each');
	// More calls than objects only when the SDK retried after a timeout: a replay.
	const extra = stack.fake.requests.filter((r) => r.outcome !== 'created').map((r) => r.outcome);
	if (extra.length) t.diagnostic(`Stripe calls besides the creations: ${extra.join(', ')}`);
	assert.equal(new Set(stack.fake.requests.map((r) => r.key)).size, TOTAL, 'one key each');
	const [{ n }] = await stack.sql(
		`SELECT count(*)::int AS n FROM stripe_idempotency_keys
		  WHERE operation_type = 'checkout:create' AND status = 'completed' AND starts_with(operation_id, $1)`, [prefix]);
	assert.equal(n, TOTAL, 'completed rows');
});
