// Stripe webhooks, each event processed exactly once. Stripe delivers at
// least once: it redelivers until it gets a 2xx, and sometimes sends one
// event twice at the same time. The same lease machinery as the checkouts
// decides who processes an event:
//
//   begin('webhook:<event type>', event.id)
//     acquired    process, and record in the same transaction as the
//                 processing's own writes: both commit or neither does
//     completed   a redelivery: 200, nothing done again
//     in_progress another delivery is processing it: 409, so Stripe retries
//                 later (and finds it completed, or the lease run out)
//     unresolved  its ttl ran out unprocessed (a delivery resent by hand
//                 after that): restart it under a new key and process it
//   A delivery that dies mid-processing rolls back with its transaction; its
//   lease runs out and the next delivery takes over.
//
// The key window. A checkout's key goes to Stripe, which forgets keys after
// 24 hours, so stripe_idem stops handing a key out once its window (24 h by
// default) has passed and answers "unresolved" instead. A webhook's key never
// goes anywhere, and its outcome is never unknown: the processing and its
// record commit together or not at all. And Stripe redelivers an event for up
// to three days: a redelivery 30 hours after a failed first delivery must be
// processed, not turned away. So begin gets a key window as long as the ttl.
//
// No request_params: the event id is Stripe's and the payload is signed, so
// there is no other request under the same id to tell apart.

import type { Deps } from './deps.ts';
import type { Tx } from './db.ts';
import { inTransaction } from './db.ts';
import { errorReply, json } from './http.ts';
import type { Stripe } from './stripe.ts';

// What processing an event produced: recorded as its outcome.
type Outcome = Record<string, unknown>;
type Handler = (deps: Deps, tx: Tx, event: Stripe.Event) => Promise<Outcome>;

// A paid checkout: the order is marked paid and the event appended to the
// order's history. The history row is the example's stand-in for effects
// no constraint can deduplicate (an email, a call to the warehouse): the
// tests count these rows to prove each event was processed once.
async function checkoutPaid(deps: Deps, tx: Tx, event: Stripe.Event): Promise<Outcome> {
	const session = event.data.object as Stripe.Checkout.Session;
	if (session.payment_status !== 'paid') return { ignored: 'not paid yet', session: session.id };
	const orderId = session.metadata?.order_id ?? session.client_reference_id;
	const [order] = await tx`
		UPDATE shop.orders
		   SET status = 'paid', paid_at = coalesce(paid_at, now()), checkout_session_id = ${session.id}
		 WHERE id = ${orderId ?? ''}
		RETURNING id`;
	// An event about an order this database does not know will not get
	// better by being retried: recorded and acknowledged.
	if (!order) return { ignored: 'unknown order', order: orderId ?? null, session: session.id };
	await tx`INSERT INTO shop.order_events (order_id, stripe_event_id, event_type) VALUES (${order.id}, ${event.id}, ${event.type})`;
	await deps.pause('in-webhook', { eventId: event.id, orderId: order.id });
	return { order: order.id, status: 'paid', session: session.id };
}

const HANDLERS: Record<string, Handler> = {
	'checkout.session.completed': checkoutPaid,
	'checkout.session.async_payment_succeeded': checkoutPaid,
};

// Thrown inside the processing transaction to roll it back: the event was
// recorded by another delivery meanwhile (it took over after our lease ran
// out and finished first), so our writes must not commit.
class ProcessedElsewhere extends Error {
	constructor(readonly outcome: unknown) {
		super('processed by another delivery');
	}
}

export function webhookOperationType(event: Stripe.Event): string {
	return `webhook:${event.type}`;
}

export async function handleEvent(deps: Deps, event: Stripe.Event): Promise<Response> {
	const { config, store, log } = deps;
	const handler = HANDLERS[event.type];
	// Events this endpoint does not act on are acknowledged without a trace.
	if (!handler) return json(200, { received: true, ignored: event.type });

	const type = webhookOperationType(event);
	const fields = { eventId: event.id, eventType: event.type };
	let b;
	try {
		b = await store.begin(type, event.id, null, config.webhookLeaseSeconds, config.webhookTtlSeconds, config.webhookTtlSeconds);
		// Only past the ttl (30 days), by an event resent by hand. Nothing of
		// it committed (the processing and its record commit together), and
		// its key never reached Stripe: start it over and process it.
		if (b.state === 'unresolved') {
			log.info('webhook event expired unprocessed, starting it over', { ...fields, attempts: b.attempts });
			b = await store.restart(type, event.id, b.key as string, config.webhookLeaseSeconds, config.webhookTtlSeconds, config.webhookTtlSeconds);
		}
	} catch (err) {
		const code = (err as { code?: string }).code;
		// 55000: another delivery restarted it first; it processes the event.
		if (code === '55000') return errorReply(409, 'in_progress', 'this event is being processed by another delivery', { 'Retry-After': '1' });
		log.error('database call failed', { ...fields, code, message: (err as Error).message });
		return errorReply(503, 'retry', 'could not process the event now', { 'Retry-After': '1' });
	}
	switch (b.state) {
		case 'completed':
			log.info('Webhook event already processed - acknowledging', fields);
			return json(200, { received: true, duplicate: true, outcome: b.response });
		case 'in_progress':
			return errorReply(409, 'in_progress', 'this event is being processed by another delivery',
				{ 'Retry-After': String(Math.max(1, b.retry_after_s || 0)) });
		case 'mismatch': // cannot happen without request_params; kept total
			return errorReply(422, 'mismatch', 'event id seen with other content');
		case 'acquired':
			break;
		default: // 'unresolved' was restarted above
			throw new Error(`begin_stripe_idempotency returned unknown state ${b.state}`);
	}

	const key = b.key as string;
	const attempts = b.attempts as number;
	if (attempts > 1) log.info('taking over an unfinished webhook event', { ...fields, attempts });
	await deps.pause('before-webhook-processing', { ...fields, attempts });
	try {
		const outcome = await inTransaction(deps.sql, config.statementTimeoutMs, async (tx) => {
			const out = await handler(deps, tx, event);
			const rec = await store.record(type, event.id, key, null, out, config.webhookTtlSeconds, tx);
			if (!rec.recorded) throw new ProcessedElsewhere(rec.response);
			return out;
		});
		log.info('Webhook event processed', { ...fields, ...outcome });
		return json(200, { received: true, outcome });
	} catch (err) {
		if (err instanceof ProcessedElsewhere) {
			log.info('Webhook event already processed - acknowledging', { ...fields, rolledBack: true });
			return json(200, { received: true, duplicate: true, outcome: err.outcome });
		}
		// Rolled back: nothing of the processing stayed. Release so Stripe's
		// next delivery (it retries any non-2xx) processes at once.
		log.error('webhook processing failed, lease released', { ...fields, code: (err as { code?: string }).code, message: (err as Error).message });
		try {
			await store.release(type, event.id, key, attempts);
		} catch {
			// the lease runs out on its own
		}
		return errorReply(500, 'processing_failed', 'the event could not be processed, Stripe will retry');
	}
}
