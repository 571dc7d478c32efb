'use strict';
// Validates a POST /checkout body and derives the two things the handler
// needs from it: the request parameters that identify the operation (stored
// as the fingerprint) and the Stripe parameters.
//
// Body: { checkoutSessionId, cart: { currency, items: [{ name, unitAmount, quantity }] },
//         customerId }   signed-in user (the old `enhanced-checkout`), or
//         email }        guest (the old `guest-checkout`).

class InputError extends Error {}

// The stripe_idem operation type of a checkout.
const OPERATION = 'checkout:create';

const PRINTABLE = /^[\x21-\x7e]{1,128}$/; // what stripe_idem accepts as an operation_id
const MAX_ITEMS = 100;

function fail(msg) {
	throw new InputError(msg);
}

function parseCart(cart) {
	if (!cart || typeof cart !== 'object') fail('cart must be an object');
	const currency = cart.currency;
	if (typeof currency !== 'string' || !/^[a-z]{3}$/.test(currency)) fail('cart.currency must be a lowercase ISO code');
	if (!Array.isArray(cart.items) || cart.items.length < 1 || cart.items.length > MAX_ITEMS)
		fail(`cart.items must hold 1 to ${MAX_ITEMS} items`);
	const items = cart.items.map((it, i) => {
		if (!it || typeof it.name !== 'string' || it.name.length < 1 || it.name.length > 200) fail(`cart.items[${i}].name is required`);
		if (!Number.isInteger(it.unitAmount) || it.unitAmount < 0) fail(`cart.items[${i}].unitAmount must be an integer >= 0`);
		if (!Number.isInteger(it.quantity) || it.quantity < 1 || it.quantity > 999) fail(`cart.items[${i}].quantity must be 1..999`);
		return { name: it.name, unitAmount: it.unitAmount, quantity: it.quantity };
	});
	return { currency, items };
}

function parseBuyer(body) {
	const hasCustomer = body.customerId !== undefined;
	const hasEmail = body.email !== undefined;
	if (hasCustomer === hasEmail) fail('give exactly one of customerId (signed in) or email (guest)');
	if (hasCustomer) {
		if (typeof body.customerId !== 'string' || !/^cus_[A-Za-z0-9]{1,64}$/.test(body.customerId)) fail('customerId must look like cus_...');
		return { customerId: body.customerId };
	}
	if (typeof body.email !== 'string' || !/^[^\s@]{1,64}@[^\s@]{1,190}$/.test(body.email)) fail('email is invalid');
	return { email: body.email };
}

function parseCheckout(body, { successUrl, cancelUrl }) {
	if (!body || typeof body !== 'object' || Array.isArray(body)) fail('body must be a JSON object');
	const id = body.checkoutSessionId;
	if (typeof id !== 'string' || !PRINTABLE.test(id)) fail('checkoutSessionId must be 1-128 printable ASCII characters');
	const cart = parseCart(body.cart);
	const buyer = parseBuyer(body);

	const stripeParams = {
		mode: 'payment',
		client_reference_id: id,
		line_items: cart.items.map((it) => ({
			quantity: it.quantity,
			price_data: { currency: cart.currency, unit_amount: it.unitAmount, product_data: { name: it.name } },
		})),
		success_url: successUrl,
		cancel_url: cancelUrl,
		metadata: { checkout_session_id: id },
		...(buyer.customerId ? { customer: buyer.customerId } : { customer_email: buyer.email }),
	};
	// The fingerprint covers what the customer asked for (cart and buyer), not
	// server settings such as the URLs, so a deploy that changes those does not
	// turn pending retries into 422s. (If Stripe already saw the key with the
	// old URLs it answers idempotency_error, recorded like any definitive error.)
	return { checkoutSessionId: id, requestParams: { cart, buyer }, stripeParams };
}

module.exports = { parseCheckout, InputError, OPERATION };
