// enhanced-checkout: the signed-in customer's saved cart, keyed on the cart's
// id; who may check out which cart; guest and signed-in keys never meet.

import assert from 'node:assert/strict';
import { customer, guestBody, it, UUID_TAIL, useStack } from './support/stack.ts';
import { db, keyRow, saveCart, uniqueId } from './support/db.ts';
import { bearer } from './support/jwt.ts';

const stack = useStack(['enhanced-checkout', 'guest-checkout']);
const enhanced = () => stack.fn['enhanced-checkout'];
const guest = () => stack.fn['guest-checkout'];
const ITEMS = [{ name: 'Grinder', unitAmount: 12900, quantity: 1 }, { name: 'Filter papers', unitAmount: 450, quantity: 3 }];

it('sequential retry of a saved cart: one session for the customer, the second from the database', async () => {
	const c = customer();
	const cartId = `cart_${crypto.randomUUID()}`;
	await saveCart(cartId, c.userId, c.stripeCustomer, ITEMS);
	const created = await stack.fake.created();
	const auth = await bearer(c.userId);

	const first = await enhanced().post({ cartId }, auth);
	assert.equal(first.status, 200, JSON.stringify(first.body));
	assert.equal(first.body.replayed, false);
	const second = await enhanced().post({ cartId }, auth);
	assert.equal(second.status, 200);
	assert.equal(second.body.sessionId, first.body.sessionId);
	assert.equal(second.body.replayed, true);
	assert.equal(await stack.fake.created(), created + 1);
	assert.ok(enhanced().logs().some((l) => l.msg === 'Idempotent request - returning existing session' && l.operationId === cartId));

	const row = await keyRow('checkout:customer', cartId);
	assert.equal(row?.status, 'completed');
	assert.match(row!.key, new RegExp(`^checkout:customer:${cartId}:${UUID_TAIL}$`));
});

it('no token, a forged or expired token, the anon role, or another customer\'s cart: refused, nothing written', async () => {
	const owner = customer();
	const cartId = `cart_${crypto.randomUUID()}`;
	await saveCart(cartId, owner.userId, owner.stripeCustomer, ITEMS);
	const calls = (await stack.fake.state()).requests.length;

	assert.equal((await enhanced().post({ cartId })).status, 401);
	assert.equal((await enhanced().post({ cartId }, await bearer(owner.userId, { secret: 'another-secret-of-at-least-32-chars!!' }))).status, 401);
	assert.equal((await enhanced().post({ cartId }, await bearer(owner.userId, { expiresIn: -10 }))).status, 401);
	assert.equal((await enhanced().post({ cartId }, await bearer(owner.userId, { role: 'anon' }))).status, 401);
	const other = await enhanced().post({ cartId }, await bearer(customer().userId));
	assert.equal(other.status, 404, 'someone else\'s cart looks like no cart');
	assert.equal((await enhanced().post({ cartId: 'not-a-cart' }, await bearer(owner.userId))).status, 400);

	assert.equal((await stack.fake.state()).requests.length, calls, 'Stripe not called');
	assert.equal(await keyRow('checkout:customer', cartId), undefined);
});

it('a cart changed after its checkout started is a different request: 422', async () => {
	const c = customer();
	const cartId = `cart_${crypto.randomUUID()}`;
	await saveCart(cartId, c.userId, c.stripeCustomer, ITEMS);
	const auth = await bearer(c.userId);
	assert.equal((await enhanced().post({ cartId }, auth)).status, 200);
	await db`UPDATE shop.orders SET items = ${db.json([ITEMS[0]])} WHERE id = ${cartId}`;
	const calls = (await stack.fake.state()).requests.length;
	const r = await enhanced().post({ cartId }, auth);
	assert.equal(r.status, 422);
	assert.equal((await stack.fake.state()).requests.length, calls);
});

it('guest and signed-in checkouts are keyed apart: the same id string never replays the other\'s session', async () => {
	const c = customer();
	const cartId = `cart_${crypto.randomUUID()}`;
	await saveCart(cartId, c.userId, c.stripeCustomer, ITEMS);
	const created = await stack.fake.created();

	const signedIn = await enhanced().post({ cartId }, await bearer(c.userId));
	assert.equal(signedIn.status, 200);
	// A guest who sends the customer's cart id as its checkoutSessionId gets a
	// checkout of its own, not the customer's session.
	const asGuest = await guest().post(guestBody(cartId));
	assert.equal(asGuest.status, 200);
	assert.equal(asGuest.body.replayed, false);
	assert.notEqual(asGuest.body.sessionId, signedIn.body.sessionId);
	assert.equal(await stack.fake.created(), created + 2);

	const customerRow = await keyRow('checkout:customer', cartId);
	const guestRow = await keyRow('checkout:guest', cartId);
	assert.ok(customerRow!.key.startsWith(`checkout:customer:${cartId}:`));
	assert.ok(guestRow!.key.startsWith(`checkout:guest:${cartId}:`));
	assert.notEqual(customerRow!.key, guestRow!.key);
	const sent = (await stack.fake.state()).requests.slice(-2).map((r) => r.key);
	assert.deepEqual(sent, [customerRow!.key, guestRow!.key], 'each sent to Stripe under its own key');
});
