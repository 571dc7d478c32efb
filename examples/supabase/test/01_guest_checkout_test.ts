// guest-checkout: sequential retry, mismatch, card_declined recorded and
// replayed, input errors. The fake's counts prove each Stripe object once.

import assert from 'node:assert/strict';
import { guestBody, it, UUID_TAIL, useStack } from './support/stack.ts';
import { keyRow, order, uniqueId } from './support/db.ts';

const stack = useStack(['guest-checkout']);
const guest = () => stack.fn['guest-checkout'];

it('sequential retry: one session, the same id both times, the second from the database', async () => {
	const id = uniqueId('seq');
	const created = await stack.fake.created();
	const first = await guest().post(guestBody(id));
	assert.equal(first.status, 200);
	assert.equal(first.body.replayed, false);
	assert.match(String(first.body.sessionId), /^cs_test_/);
	const calls = (await stack.fake.state()).requests.length;

	const second = await guest().post(guestBody(id));
	assert.equal(second.status, 200);
	assert.equal(second.body.sessionId, first.body.sessionId);
	assert.equal(second.body.replayed, true);
	assert.equal(second.headers.get('idempotent-replayed'), 'true');
	assert.equal((await stack.fake.state()).requests.length, calls, 'the retry did not reach Stripe');
	assert.equal(await stack.fake.created(), created + 1, 'exactly one Stripe object');
	assert.ok(guest().logs().some((l) => l.msg === 'Idempotent request - returning existing session' && l.operationId === id),
		'the log line of the seed deployment');

	const row = await keyRow('checkout:guest', id);
	assert.equal(row?.status, 'completed');
	assert.equal(row?.resource_id, first.body.sessionId);
	assert.match(row!.key, new RegExp(`^checkout:guest:${id}:${UUID_TAIL}$`), 'key format operation_type:stable_id:UUID');
	const o = await order(`guest_${id}`);
	assert.equal(o?.email, 'guest@example.com');
	assert.equal(o?.status, 'open');
});

it('mismatch: the same checkoutSessionId with another cart or email is 422 and never reaches Stripe', async () => {
	const id = uniqueId('mm');
	assert.equal((await guest().post(guestBody(id))).status, 200);
	const calls = (await stack.fake.state()).requests.length;
	const otherCart = await guest().post(guestBody(id, { items: [{ name: 'Tea', unitAmount: 900, quantity: 1 }] }));
	assert.equal(otherCart.status, 422);
	assert.equal((otherCart.body.error as { type: string }).type, 'mismatch');
	assert.equal((await guest().post(guestBody(id, { email: 'someone@else.example' }))).status, 422);
	assert.equal((await stack.fake.state()).requests.length, calls, 'Stripe not called');
	// The original request still replays.
	assert.equal((await guest().post(guestBody(id))).body.replayed, true);
});

it('card_declined is recorded and replayed without a second Stripe call', async () => {
	const id = uniqueId('card');
	await stack.fake.fault('card_declined');
	const first = await guest().post(guestBody(id));
	assert.equal(first.status, 402);
	const err = first.body.error as { type: string; code: string; decline_code: string };
	assert.equal(err.type, 'card_error');
	assert.equal(err.code, 'card_declined');
	const calls = (await stack.fake.state()).requests.length;

	const again = await guest().post(guestBody(id));
	assert.equal(again.status, 402);
	assert.deepEqual(again.body, first.body);
	assert.equal(again.headers.get('idempotent-replayed'), 'true');
	assert.equal((await stack.fake.state()).requests.length, calls, 'replayed from the database');
	const row = await keyRow('checkout:guest', id);
	assert.equal(row?.status, 'completed');
	assert.equal(row?.resource_id, null);
	assert.equal((row?.response as { status: number }).status, 402);
});

it('bad input is 400 before anything is written', async () => {
	const id = uniqueId('bad');
	for (const body of [
		{ ...guestBody(id), email: 'not an email' },
		{ ...guestBody(id), checkoutSessionId: 'short' },
		{ ...guestBody(id), customerId: 'cus_123' },
		{ ...guestBody(id), cart: { currency: 'EUR', items: [] } },
	]) {
		const r = await guest().post(body);
		assert.equal(r.status, 400, JSON.stringify(body));
	}
	assert.equal((await guest().post('{not json')).status, 400);
	assert.equal(await keyRow('checkout:guest', id), undefined);
});
