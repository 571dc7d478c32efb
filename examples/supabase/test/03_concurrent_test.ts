// 50 identical requests at once (double clicks, retry storms) through the
// pooler: one Stripe call, one object; every answer that session, or a 409
// with Retry-After that later gets the same session.

import assert from 'node:assert/strict';
import { guestBody, it, useStack } from './support/stack.ts';
import { keyRow, uniqueId } from './support/db.ts';
import { postUntilSettled } from './support/functions.ts';

const stack = useStack(['guest-checkout']);
const guest = () => stack.fn['guest-checkout'];

it('50 concurrent identical requests create exactly one session', async () => {
	const id = uniqueId('burst');
	const created = await stack.fake.created();
	const calls = (await stack.fake.state()).requests.length;
	// Keep the Stripe call open a while, so that most requests meet the lease.
	await stack.fake.fault('delay', { ms: 500 });

	const answers = await Promise.all(Array.from({ length: 50 }, () => guest().post(guestBody(id))));
	const byStatus: Record<string, number> = {};
	for (const a of answers) byStatus[a.status] = (byStatus[a.status] || 0) + 1;
	console.log(`answers by status: ${JSON.stringify(byStatus)}`);

	assert.deepEqual(Object.keys(byStatus).filter((s) => s !== '200' && s !== '409'), [], 'only 200 and 409');
	const ok = answers.filter((a) => a.status === 200);
	assert.equal(ok.filter((a) => a.body.replayed === false).length, 1, 'one fresh creation, the rest replays');
	assert.equal(new Set(ok.map((a) => a.body.sessionId)).size, 1);
	for (const a of answers.filter((x) => x.status === 409)) assert.ok(Number(a.headers.get('retry-after')) >= 1);
	assert.ok(byStatus['409'] >= 1, 'the lease turned concurrent callers away');

	const { final } = await postUntilSettled(guest().url, guestBody(id));
	assert.equal(final.body.sessionId, ok[0].body.sessionId);
	assert.equal(await stack.fake.created(), created + 1, 'exactly one Stripe object');
	const sent = (await stack.fake.state()).requests.slice(calls);
	assert.deepEqual(sent.map((r) => r.outcome), ['created'], 'one Stripe call');
	assert.equal(sent[0].key, (await keyRow('checkout:guest', id))!.key);
});
