// Carts and what the two checkouts accept.
//
// enhanced-checkout: a signed-in customer checks out a cart saved in
//   shop.orders (status 'open'); the body names it, { "cartId": "cart_..." },
//   and the cart's items, currency and Stripe customer come from the table.
//   The stable id is the saved cart's id.
// guest-checkout: a guest with only an email sends the whole cart,
//   { "checkoutSessionId", "email", "cart": { currency, items } }; the
//   browser makes checkoutSessionId once per checkout (and keeps it for
//   retries), and it is the stable id.

import { BadRequest } from './http.ts';

export interface Item {
	name: string;
	unitAmount: number;
	quantity: number;
}

export interface Cart {
	currency: string;
	items: Item[];
}

const MAX_ITEMS = 100;
// Within what stripe_idem accepts as an operation_id (1-128 printable ASCII).
const CART_ID = /^cart_[A-Za-z0-9-]{1,100}$/;
const CHECKOUT_ID = /^[A-Za-z0-9_-]{8,100}$/;
const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,190}$/;

function fail(msg: string): never {
	throw new BadRequest(msg);
}

function isObject(v: unknown): v is Record<string, unknown> {
	return !!v && typeof v === 'object' && !Array.isArray(v);
}

export function parseCart(cart: unknown): Cart {
	if (!isObject(cart)) fail('cart must be an object');
	const currency = cart.currency;
	if (typeof currency !== 'string' || !/^[a-z]{3}$/.test(currency)) fail('cart.currency must be a lowercase ISO code');
	if (!Array.isArray(cart.items) || cart.items.length < 1 || cart.items.length > MAX_ITEMS)
		fail(`cart.items must hold 1 to ${MAX_ITEMS} items`);
	const items = cart.items.map((it: unknown, i: number) => {
		if (!isObject(it) || typeof it.name !== 'string' || it.name.length < 1 || it.name.length > 200) fail(`cart.items[${i}].name is required`);
		if (!Number.isInteger(it.unitAmount) || (it.unitAmount as number) < 0) fail(`cart.items[${i}].unitAmount must be an integer >= 0`);
		if (!Number.isInteger(it.quantity) || (it.quantity as number) < 1 || (it.quantity as number) > 999) fail(`cart.items[${i}].quantity must be 1..999`);
		return { name: it.name, unitAmount: it.unitAmount as number, quantity: it.quantity as number };
	});
	return { currency, items };
}

export function parseSavedCartRequest(body: unknown): { cartId: string } {
	if (!isObject(body)) fail('body must be a JSON object');
	if (typeof body.cartId !== 'string' || !CART_ID.test(body.cartId)) fail('cartId must look like cart_...');
	return { cartId: body.cartId };
}

export interface GuestRequest {
	checkoutSessionId: string;
	email: string;
	cart: Cart;
}

export function parseGuestRequest(body: unknown): GuestRequest {
	if (!isObject(body)) fail('body must be a JSON object');
	if (typeof body.checkoutSessionId !== 'string' || !CHECKOUT_ID.test(body.checkoutSessionId))
		fail('checkoutSessionId must be 8-100 characters of [A-Za-z0-9_-]');
	if (typeof body.email !== 'string' || !EMAIL.test(body.email)) fail('email is invalid');
	if (body.customerId !== undefined) fail('guest checkout takes an email, not a customerId; signed-in customers use enhanced-checkout');
	return { checkoutSessionId: body.checkoutSessionId, email: body.email, cart: parseCart(body.cart) };
}

export function lineItems(cart: Cart) {
	return cart.items.map((it) => ({
		quantity: it.quantity,
		price_data: { currency: cart.currency, unit_amount: it.unitAmount, product_data: { name: it.name } },
	}));
}
