// Checkout for a signed-in customer of a cart saved in shop.orders. The
// caller is the verified user of the access token; the cart's items,
// currency and Stripe customer come from the table, never from the request.
// The saved cart's id is the stable id: key checkout:customer:<cartId>:<uuid>.
// A cart changed after its checkout started is a different request (422).

import { loadConfig } from '../_shared/config.ts';
import { createDeps } from '../_shared/deps.ts';
import { errorReply, readJson, retryLater, serve } from '../_shared/http.ts';
import { type Item, lineItems, parseSavedCartRequest } from '../_shared/cart.ts';
import { runCheckout } from '../_shared/checkout.ts';
import { verifiedUserId } from '../_shared/auth.ts';
import { inTransaction } from '../_shared/db.ts';

export const OPERATION = 'checkout:customer';

const deps = createDeps(loadConfig());

interface SavedCart {
	id: string;
	stripe_customer_id: string;
	currency: string;
	items: Item[];
}

serve('enhanced-checkout', async (req) => {
	const userId = await verifiedUserId(req, deps.config.jwtSecret);
	if (!userId) return errorReply(401, 'unauthorized', 'sign in first');
	const { cartId } = parseSavedCartRequest(await readJson(req));

	let cart: SavedCart | undefined;
	try {
		[cart] = await inTransaction(deps.sql, deps.config.statementTimeoutMs, (tx) => tx<SavedCart[]>`
			SELECT id, stripe_customer_id, currency, items FROM shop.orders
			 WHERE id = ${cartId} AND user_id = ${userId}::uuid AND stripe_customer_id IS NOT NULL`);
	} catch (err) {
		deps.log.error('could not load the cart', { cartId, message: (err as Error).message });
		return retryLater('the checkout could not be started, retry');
	}
	// Someone else's cart looks exactly like no cart.
	if (!cart) return errorReply(404, 'not_found', 'no such cart');

	const items = cart.items.map((it) => ({ name: it.name, unitAmount: it.unitAmount, quantity: it.quantity }));
	return runCheckout(deps, {
		operationType: OPERATION,
		operationId: cart.id,
		requestParams: { cart: { currency: cart.currency, items }, customer: cart.stripe_customer_id },
		stripeParams: {
			mode: 'payment',
			customer: cart.stripe_customer_id,
			client_reference_id: cart.id,
			metadata: { order_id: cart.id },
			line_items: lineItems({ currency: cart.currency, items }),
			success_url: deps.config.successUrl,
			cancel_url: deps.config.cancelUrl,
		},
	});
});
