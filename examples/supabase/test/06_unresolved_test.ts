// Unresolved checkouts: the function died after begin, and 30 hours passed
// (beyond the 24 hour key window and the ttl), at Stripe as in the database.
// begin answers "unresolved"; the function reconciles: it lists the Checkout
// Sessions created while the key could have been used, matches the order id
// in their metadata, and records what it finds or restarts under a new key.
// Stripe is never sent the old key again.

import assert from 'node:assert/strict';
import type postgres from 'npm:postgres@3.4.9';
import { customer, guestBody, it, useStack } from './support/stack.ts';
import { ageKeyRow, checkStatus, db, keyRow, saveCart, uniqueId } from './support/db.ts';
import { postJSON, startFunction } from './support/functions.ts';
import { bearer } from './support/jwt.ts';
import { LEASE_SECONDS } from './support/env.ts';

const stack = useStack(['guest-checkout', 'enhanced-checkout']);
const guest = () => stack.fn['guest-checkout'];
const enhanced = () => stack.fn['enhanced-checkout'];
const GUEST = 'checkout:guest';

// 30 hours pass for one operation: in the database, and at Stripe, which
// forgets the keys it saw more than 24 hours ago.
async function thirtyHoursLater(type: string, id: string): Promise<string[]> {
	await ageKeyRow(type, id, '30 hours');
	return await stack.fake.age(30 * 3600);
}

// A function that dies after Stripe answered and before it recorded.
async function diesBeforeRecord(name: 'guest-checkout' | 'enhanced-checkout', body: unknown, headers: Record<string, string> = {}) {
	const doomed = await startFunction(name, stack.fake, { EDGE_TEST_PAUSE: 'before-record' });
	try {
		const pending = postJSON(doomed.url, body, headers).then((r) => r, (e) => e);
		const paused = await doomed.proc.waitFor((_, j) => (j?.paused === 'before-record' ? j : undefined), 'pause before record');
		await doomed.kill();
		assert.ok((await pending) instanceof Error, 'the client lost its connection');
		return paused as { key: string; resourceId: string };
	} finally {
		await doomed.kill();
	}
}

// begin as a guest checkout that died before it called Stripe left it (the
// request parameters are the function's: the cart and the email).
async function begunAndAbandoned(id: string): Promise<string> {
	const b = guestBody(id);
	const [row] = await db`
		SELECT state, stripe_idempotency_key AS key
		  FROM payments.begin_stripe_idempotency(${GUEST}, ${id}, ${db.json({ cart: b.cart, email: b.email } as postgres.JSONValue)}::jsonb,
		                                         ${`${LEASE_SECONDS} seconds`}::interval)`;
	assert.equal(row.state, 'acquired');
	return row.key;
}

it('guest: Stripe created the session, the function died before it recorded: found and recorded, no second session', async () => {
	const id = uniqueId('unres-found');
	const created = await stack.fake.created();
	const paused = await diesBeforeRecord('guest-checkout', guestBody(id));
	assert.equal(await stack.fake.created(), created + 1, 'Stripe created the session');

	const forgotten = await thirtyHoursLater(GUEST, id);
	assert.ok(forgotten.includes(paused.key), 'Stripe forgot the key');
	assert.equal(await checkStatus(GUEST, id), 'unresolved');

	const before = await stack.fake.state();
	const r = await guest().post(guestBody(id));
	assert.equal(r.status, 200, JSON.stringify(r.body));
	assert.equal(r.body.sessionId, paused.resourceId, 'the session the dead function got');
	assert.equal(r.body.replayed, true);
	assert.equal(r.headers.get('idempotent-replayed'), 'true');
	const after = await stack.fake.state();
	assert.equal(after.created, created + 1, 'still exactly one Stripe object');
	assert.equal(after.requests.length, before.requests.length, 'no create sent: the forgotten key would have made a second session');
	assert.ok(after.lists.length > before.lists.length, 'Stripe was asked by listing');
	const row = await keyRow(GUEST, id);
	assert.equal(row?.status, 'completed');
	assert.equal(row?.key, paused.key, 'recorded under the stored key');
	assert.ok(guest().logs().some((l) => l.msg === 'unresolved checkout reconciled: Stripe had the session, recorded' && l.operationId === id));

	const again = await guest().post(guestBody(id));
	assert.equal(again.body.sessionId, paused.resourceId);
	assert.equal((await stack.fake.state()).lists.length, after.lists.length, 'replayed from the database, Stripe not asked again');
});

it('guest: Stripe never got the call: nothing found, restarted under a new key, one session', async () => {
	const id = uniqueId('unres-none');
	const created = await stack.fake.created();
	const oldKey = await begunAndAbandoned(id);
	await thirtyHoursLater(GUEST, id);
	assert.equal(await checkStatus(GUEST, id), 'unresolved');

	const r = await guest().post(guestBody(id));
	assert.equal(r.status, 200, JSON.stringify(r.body));
	assert.equal(r.body.replayed, false);
	const state = await stack.fake.state();
	assert.equal(state.created, created + 1, 'one session');
	const row = await keyRow(GUEST, id);
	assert.equal(row?.status, 'completed');
	assert.notEqual(row?.key, oldKey, 'a new key');
	assert.equal(row?.attempts, 1, 'restart begins the count anew');
	const sent = state.requests.filter((q) => q.key === oldKey || q.key === row!.key).map((q) => [q.key, q.outcome]);
	assert.deepEqual(sent, [[row!.key, 'created']], 'the old key was never sent');
});

it('guest: Stripe cannot be asked: 409 type unresolved with Retry-After, nothing changes; settled once it answers', async () => {
	const id = uniqueId('unres-down');
	const oldKey = await begunAndAbandoned(id);
	await thirtyHoursLater(GUEST, id);
	await stack.fake.fault('500', { on: 'list', times: 4 }); // every SDK attempt, with room for a resend
	const posts = (await stack.fake.state()).requests.length;

	const r = await guest().post(guestBody(id));
	assert.equal(r.status, 409);
	assert.equal((r.body.error as { type: string }).type, 'unresolved');
	assert.ok(Number(r.headers.get('retry-after')) >= 1);
	assert.equal((await stack.fake.state()).requests.length, posts, 'no create sent');
	assert.equal(await checkStatus(GUEST, id), 'unresolved');
	assert.equal((await keyRow(GUEST, id))?.key, oldKey, 'nothing written');

	// Use up what is left of the faults, then Stripe answers again.
	while ((await stack.fake.state()).listFaults > 0) await guest().post(guestBody(id));
	const later = await guest().post(guestBody(id));
	assert.equal(later.status, 200);
	assert.notEqual((await keyRow(GUEST, id))?.key, oldKey);
});

it('signed-in customer: the session is found among the customer\'s and recorded', async () => {
	const c = customer();
	const cartId = `cart_${crypto.randomUUID()}`;
	await saveCart(cartId, c.userId, c.stripeCustomer, [{ name: 'Grinder', unitAmount: 12900, quantity: 1 }]);
	const auth = await bearer(c.userId);
	const created = await stack.fake.created();
	const paused = await diesBeforeRecord('enhanced-checkout', { cartId }, auth);
	await thirtyHoursLater('checkout:customer', cartId);
	assert.equal(await checkStatus('checkout:customer', cartId), 'unresolved');

	const r = await enhanced().post({ cartId }, auth);
	assert.equal(r.status, 200, JSON.stringify(r.body));
	assert.equal(r.body.sessionId, paused.resourceId);
	assert.equal(await stack.fake.created(), created + 1, 'one Stripe object');
	const list = (await stack.fake.state()).lists.at(-1)!;
	assert.equal(list.query.customer, c.stripeCustomer, 'listed by the customer');
	assert.equal((await keyRow('checkout:customer', cartId))?.status, 'completed');
});
