// POST from Stripe with a signed event. A bad or missing signature is 400 and
// touches nothing; a valid event is processed exactly once (_shared/webhook.ts).
// Deploy with verify_jwt = false (supabase/config.toml): Stripe sends no
// Supabase token, its signature is the authentication.

import { loadConfig } from '../_shared/config.ts';
import { createDeps } from '../_shared/deps.ts';
import { errorReply, serve } from '../_shared/http.ts';
import { webhookCrypto } from '../_shared/stripe.ts';
import { handleEvent } from '../_shared/webhook.ts';

const deps = createDeps(loadConfig());
const secret = deps.config.webhookSecret;
if (!secret) throw new Error('STRIPE_WEBHOOK_SECRET is not set');

serve('stripe-webhook', async (req) => {
	const signature = req.headers.get('stripe-signature');
	if (!signature) return errorReply(400, 'invalid_signature', 'missing Stripe-Signature header');
	// The exact bytes Stripe signed: read as text, never re-serialised.
	const payload = await req.text();
	let event;
	try {
		event = await deps.stripe.webhooks.constructEventAsync(payload, signature, secret, undefined, webhookCrypto);
	} catch (err) {
		deps.log.warn('webhook signature refused', { message: (err as Error).message });
		return errorReply(400, 'invalid_signature', 'signature verification failed');
	}
	return handleEvent(deps, event);
});
