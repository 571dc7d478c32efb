// Checkout for a guest with only an email. The browser sends the cart and a
// checkoutSessionId it made once for this checkout (and reuses on every
// retry); that id is the stable id: key checkout:guest:<checkoutSessionId>:<uuid>.
// The guest's order row (guest_<checkoutSessionId>) is written once the lease
// is ours, so the webhook finds it when the payment completes.

import { loadConfig } from '../_shared/config.ts';
import { createDeps } from '../_shared/deps.ts';
import { readJson, serve } from '../_shared/http.ts';
import { lineItems, parseGuestRequest } from '../_shared/cart.ts';
import { runCheckout } from '../_shared/checkout.ts';
import { inTransaction, type JSONValue } from '../_shared/db.ts';

export const OPERATION = 'checkout:guest';

const deps = createDeps(loadConfig());

serve('guest-checkout', async (req) => {
	const input = parseGuestRequest(await readJson(req));
	const orderId = `guest_${input.checkoutSessionId}`;
	return runCheckout(deps, {
		operationType: OPERATION,
		operationId: input.checkoutSessionId,
		requestParams: { cart: input.cart, email: input.email },
		stripeParams: {
			mode: 'payment',
			customer_email: input.email,
			client_reference_id: orderId,
			metadata: { order_id: orderId },
			line_items: lineItems(input.cart),
			success_url: deps.config.successUrl,
			cancel_url: deps.config.cancelUrl,
		},
		// Same checkoutSessionId, same cart and email (the fingerprint says so):
		// a takeover finds the row already there.
		beforeStripe: async () => {
			await inTransaction(deps.sql, deps.config.statementTimeoutMs, (tx) => tx`
				INSERT INTO shop.orders (id, email, currency, items)
				VALUES (${orderId}, ${input.email}, ${input.cart.currency}, ${tx.json(input.cart.items as unknown as JSONValue)})
				ON CONFLICT (id) DO NOTHING`);
		},
	});
});
