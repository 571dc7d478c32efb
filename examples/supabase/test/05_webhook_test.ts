// stripe-webhook: each event processed exactly once. Duplicates, concurrent
// deliveries and a crash mid-processing; a bad signature writes nothing. The
// side effect counted is the order's history row (shop.order_events).

import assert from 'node:assert/strict';
import { guestBody, it, until, useStack } from './support/stack.ts';
import { ageKeyRow, db, keyRow, order, processedCount, uniqueId } from './support/db.ts';
import { postJSON, postUntilSettled, startFunction } from './support/functions.ts';
import type { SignedEvent } from './support/fake.ts';
import { WEBHOOK_LEASE_SECONDS } from './support/env.ts';

const stack = useStack(['guest-checkout', 'stripe-webhook']);
const hook = () => stack.fn['stripe-webhook'];
const OP = 'webhook:checkout.session.completed';

// A guest checkout, paid: its order id and the signed event Stripe would send.
async function paidCheckout(): Promise<{ orderId: string; ev: SignedEvent }> {
	const id = uniqueId('wh');
	const r = await stack.fn['guest-checkout'].post(guestBody(id));
	assert.equal(r.status, 200);
	const ev = await stack.fake.completeSession(String(r.body.sessionId));
	return { orderId: `guest_${id}`, ev };
}

const deliver = (url: string, d: { payload: string; signature: string }) =>
	postJSON(url, d.payload, { 'Stripe-Signature': d.signature });

it('a delivery marks the order paid once; redeliveries are acknowledged without processing again', async () => {
	const { orderId, ev } = await paidCheckout();
	const created = await stack.fake.created();

	const first = await deliver(hook().url, ev);
	assert.equal(first.status, 200, JSON.stringify(first.body));
	assert.equal(first.body.duplicate, undefined);
	assert.equal((await order(orderId))?.status, 'paid');
	assert.equal(await processedCount({ eventId: ev.event.id }), 1);

	for (let i = 0; i < 3; i++) {
		const again = await deliver(hook().url, await stack.fake.signEvent(ev.event.id));
		assert.equal(again.status, 200);
		assert.equal(again.body.duplicate, true);
	}
	assert.equal(await processedCount({ eventId: ev.event.id }), 1, 'processed exactly once');
	assert.equal(await processedCount({ orderId }), 1);
	const row = await keyRow(OP, ev.event.id);
	assert.equal(row?.status, 'completed');
	assert.ok(row!.key.startsWith(`${OP}:${ev.event.id}:`));
	assert.equal(await stack.fake.created(), created, 'webhooks create no Stripe objects');
});

it('simultaneous deliveries of one event: processed once, the others 409 (Stripe retries) or acknowledged', async () => {
	const { orderId, ev } = await paidCheckout();
	const answers = await Promise.all(Array.from({ length: 20 }, () => deliver(hook().url, ev)));
	const byStatus: Record<string, number> = {};
	for (const a of answers) byStatus[a.status] = (byStatus[a.status] || 0) + 1;
	console.log(`answers by status: ${JSON.stringify(byStatus)}`);
	assert.deepEqual(Object.keys(byStatus).filter((s) => s !== '200' && s !== '409'), [], 'only 200 and 409');
	assert.equal(answers.filter((a) => a.status === 200 && a.body.duplicate === undefined).length, 1, 'one delivery processed it');
	for (const a of answers.filter((x) => x.status === 409)) assert.ok(Number(a.headers.get('retry-after')) >= 1);
	// The lease turned the others away before they did any work: none of them
	// processed and then rolled back because the record found the event done.
	const rolledBack = hook().logs().filter((l) => l.eventId === ev.event.id && l.rolledBack === true);
	assert.equal(rolledBack.length, 0, 'no delivery processed the event a second time (even to roll it back)');

	// Stripe retries each 409 later: acknowledged, not processed again.
	for (let i = answers.filter((x) => x.status === 409).length; i > 0; i--) {
		const { final } = await postUntilSettled(hook().url, ev.payload, { 'Stripe-Signature': ev.signature });
		assert.equal(final.body.duplicate, true);
	}
	assert.equal(await processedCount({ orderId }), 1, 'side effect exactly once');
	assert.equal((await order(orderId))?.status, 'paid');
});

it('a delivery that dies mid-processing leaves nothing; the next one takes over after the lease', async () => {
	const { orderId, ev } = await paidCheckout();
	const doomed = await startFunction('stripe-webhook', stack.fake, { EDGE_TEST_PAUSE: 'in-webhook' });
	try {
		const postedAt = Date.now();
		const pending = deliver(doomed.url, ev).then((r) => r, (e) => e);
		await doomed.proc.waitFor((_, j) => (j?.paused === 'in-webhook' ? j : undefined), 'pause mid-processing');
		// A redelivery meanwhile meets the live lease.
		const meanwhile = await deliver(hook().url, await stack.fake.signEvent(ev.event.id));
		assert.equal(meanwhile.status, 409);
		await doomed.kill();
		assert.ok((await pending) instanceof Error, 'Stripe saw no answer');
		// Its transaction rolled back with it: neither the paid status nor the history row stayed.
		await until('the dead delivery\'s transaction to end', async () =>
			(await db`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'edge-checkout' AND state LIKE 'idle in transaction%'`)[0].n === 0);
		assert.equal((await order(orderId))?.status, 'open');
		assert.equal(await processedCount({ orderId }), 0);

		const { final } = await postUntilSettled(hook().url, ev.payload, { 'Stripe-Signature': ev.signature });
		assert.equal(final.status, 200);
		assert.equal(final.body.duplicate, undefined, 'this delivery processed it');
		assert.ok(Date.now() - postedAt >= WEBHOOK_LEASE_SECONDS * 1000 - 100, 'only after the lease ran out');
		assert.equal(await processedCount({ orderId }), 1, 'side effect exactly once');
		assert.equal((await order(orderId))?.status, 'paid');
		assert.equal((await keyRow(OP, ev.event.id))?.attempts, 2);
	} finally {
		await doomed.kill();
	}
});

// A first delivery that failed: its process killed mid-processing, its
// transaction rolled back. Returns once nothing of it is left.
async function failedFirstDelivery(ev: SignedEvent, orderId: string): Promise<void> {
	const doomed = await startFunction('stripe-webhook', stack.fake, { EDGE_TEST_PAUSE: 'in-webhook' });
	try {
		const pending = deliver(doomed.url, ev).then((r) => r, (e) => e);
		await doomed.proc.waitFor((_, j) => (j?.paused === 'in-webhook' ? j : undefined), 'pause mid-processing');
		await doomed.kill();
		assert.ok((await pending) instanceof Error, 'Stripe saw no answer');
	} finally {
		await doomed.kill();
	}
	await until('the dead delivery\'s transaction to end', async () =>
		(await db`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'edge-checkout' AND state LIKE 'idle in transaction%'`)[0].n === 0);
	assert.equal(await processedCount({ orderId }), 0);
}

it('a redelivery 30 hours after a failed first delivery is processed: the webhook\'s key window is its ttl', async () => {
	const { orderId, ev } = await paidCheckout();
	await failedFirstDelivery(ev, orderId);
	const first = await keyRow(OP, ev.event.id);
	assert.equal(first?.status, 'in_progress');
	// Stripe retries for up to three days; its next attempt comes 30 hours
	// later, past the 24 hour key window a checkout would have.
	await ageKeyRow(OP, ev.event.id, '30 hours');
	const [b] = await db`SELECT state FROM payments.begin_stripe_idempotency(${OP}, ${ev.event.id}, NULL, '1 minute', '30 days')`;
	assert.equal(b.state, 'unresolved', 'with the default window it would be turned away');

	const r = await deliver(hook().url, await stack.fake.signEvent(ev.event.id));
	assert.equal(r.status, 200, JSON.stringify(r.body));
	assert.equal(r.body.duplicate, undefined, 'this delivery processed it');
	assert.equal(await processedCount({ orderId }), 1, 'side effect exactly once');
	assert.equal((await order(orderId))?.status, 'paid');
	const row = await keyRow(OP, ev.event.id);
	assert.equal(row?.status, 'completed');
	assert.equal(row?.key, first?.key, 'taken over with the same key');
	assert.equal(row?.attempts, 2);
});

it('an event resent after its ttl ran out unprocessed is started over and processed once', async () => {
	const { orderId, ev } = await paidCheckout();
	await failedFirstDelivery(ev, orderId);
	const first = await keyRow(OP, ev.event.id);
	// Past the 30 day ttl (and within the extension's retention of unresolved
	// operations): begin answers unresolved, the webhook restarts it.
	await ageKeyRow(OP, ev.event.id, '31 days');
	const r = await deliver(hook().url, await stack.fake.signEvent(ev.event.id));
	assert.equal(r.status, 200, JSON.stringify(r.body));
	assert.equal(r.body.duplicate, undefined);
	assert.equal(await processedCount({ orderId }), 1);
	const row = await keyRow(OP, ev.event.id);
	assert.equal(row?.status, 'completed');
	assert.notEqual(row?.key, first?.key, 'restarted under a new key');
	assert.equal(row?.attempts, 1);
	assert.ok(hook().logs().some((l) => l.msg === 'webhook event expired unprocessed, starting it over' && l.eventId === ev.event.id));
	const again = await deliver(hook().url, await stack.fake.signEvent(ev.event.id));
	assert.equal(again.body.duplicate, true);
});

it('a delivery whose lease ran out before it processed: the takeover processes, the late one rolls back', async () => {
	const { orderId, ev } = await paidCheckout();
	const late = await startFunction('stripe-webhook', stack.fake, { EDGE_TEST_PAUSE: 'before-webhook-processing' });
	try {
		const pending = deliver(late.url, ev);
		await late.proc.waitFor((_, j) => (j?.paused === 'before-webhook-processing' ? j : undefined), 'pause before processing');
		// Its lease runs out while it stalls (a slow isolate); a redelivery takes over.
		const { final } = await postUntilSettled(hook().url, ev.payload, { 'Stripe-Signature': ev.signature });
		assert.equal(final.status, 200);
		assert.equal(final.body.duplicate, undefined, 'the takeover processed it');
		assert.equal((await keyRow(OP, ev.event.id))?.attempts, 2);
		assert.equal(await processedCount({ orderId }), 1);

		// The stalled delivery goes on: its record finds the event done, and its
		// writes are rolled back.
		late.proc.signal('SIGUSR1');
		const answer = await pending;
		assert.equal(answer.status, 200);
		assert.equal(answer.body.duplicate, true);
		assert.ok(late.logs().some((l) => l.eventId === ev.event.id && l.rolledBack === true), 'rolled back, not committed');
		assert.equal(await processedCount({ orderId }), 1, 'side effect exactly once');
	} finally {
		await late.kill();
	}
});

it('a bad or missing signature is 400 and writes nothing', async () => {
	const { orderId, ev } = await paidCheckout();
	const forged = await stack.fake.signEvent(ev.event.id, { secret: 'whsec_not_this_endpoint' });
	const tampered = { payload: ev.payload.replace('"paid"', '"paid" '), signature: ev.signature };
	const answers = [
		await deliver(hook().url, forged),
		await deliver(hook().url, tampered),
		await postJSON(hook().url, ev.payload),
		await deliver(hook().url, { payload: ev.payload, signature: 't=1,v1=00' }),
	];
	assert.deepEqual(answers.map((a) => a.status), [400, 400, 400, 400]);
	assert.equal(await keyRow(OP, ev.event.id), undefined, 'no idempotency row');
	assert.equal((await order(orderId))?.status, 'open');
	assert.equal(await processedCount({ orderId }), 0);
	// The genuine delivery still works.
	assert.equal((await deliver(hook().url, ev)).status, 200);
	assert.equal(await processedCount({ orderId }), 1);
});
