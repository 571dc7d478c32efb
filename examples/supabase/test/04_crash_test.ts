// The function's process killed mid-checkout. Whenever it dies, the retry
// sends the same Idempotency-Key, Stripe replays, and one object exists.

import assert from 'node:assert/strict';
import { guestBody, it, until, useStack } from './support/stack.ts';
import { keyRow, uniqueId } from './support/db.ts';
import { postJSON, postUntilSettled, startFunction } from './support/functions.ts';
import { LEASE_SECONDS } from './support/env.ts';

const stack = useStack(['guest-checkout']);
const guest = () => stack.fn['guest-checkout'];

// The retry path both crash windows share: turned away while the dead
// process's lease stands, then a takeover with the same key that Stripe
// answers with a replay of the session it created.
async function retryAfterCrash(id: string, createdBefore: number, postedAt: number) {
	const row = await keyRow('checkout:guest', id);
	assert.equal(row?.status, 'in_progress');
	const early = await guest().post(guestBody(id));
	assert.equal(early.status, 409, 'the dead process\'s lease still stands');

	const { final } = await postUntilSettled(guest().url, guestBody(id));
	assert.equal(final.status, 200);
	// The lease was taken after the first POST was sent.
	assert.ok(Date.now() - postedAt >= LEASE_SECONDS * 1000 - 100, 'taken over only once the lease ran out');
	const state = await stack.fake.state();
	assert.equal(state.created, createdBefore + 1, 'exactly one Stripe object');
	assert.equal(final.body.sessionId, state.sessions.at(-1));
	const sent = state.requests.filter((r) => r.key === row!.key).map((r) => r.outcome);
	assert.equal(sent.at(-1), 'replayed', 'the takeover got Stripe\'s replay');
	assert.equal(sent.filter((o) => o === 'created').length, 1);
	const done = await keyRow('checkout:guest', id);
	assert.equal(done?.status, 'completed');
	assert.equal(done?.key, row!.key, 'one key for the whole operation');
	assert.equal(done?.attempts, 2);
}

it('killed after Stripe answered, before it recorded: the retry returns the same session', async () => {
	const id = uniqueId('kill-after');
	const created = await stack.fake.created();
	const doomed = await startFunction('guest-checkout', stack.fake, { EDGE_TEST_PAUSE: 'before-record' });
	try {
		const postedAt = Date.now();
		const pending = postJSON(doomed.url, guestBody(id)).then((r) => r, (e) => e);
		const paused = await doomed.proc.waitFor((_, j) => (j?.paused === 'before-record' ? j : undefined), 'pause before record');
		assert.equal(paused.operationId, id);
		await doomed.kill();
		assert.ok((await pending) instanceof Error, 'the client lost its connection');
		assert.equal(await stack.fake.created(), created + 1, 'Stripe had created the session');
		assert.equal((await keyRow('checkout:guest', id))?.key, paused.key);
		await retryAfterCrash(id, created, postedAt);
	} finally {
		await doomed.kill();
	}
});

it('killed while Stripe was still executing the call: the retry returns the session Stripe went on to create', async () => {
	const id = uniqueId('kill-during');
	const created = await stack.fake.created();
	const doomed = await startFunction('guest-checkout', stack.fake);
	try {
		await stack.fake.fault('delay', { ms: 1000 });
		const postedAt = Date.now();
		const pending = postJSON(doomed.url, guestBody(id)).then((r) => r, (e) => e);
		await until('Stripe to be executing the call', async () => (await stack.fake.state()).executing > 0);
		await doomed.kill();
		assert.ok((await pending) instanceof Error, 'the client lost its connection');
		await until('Stripe to finish creating the session', async () => (await stack.fake.created()) === created + 1);
		await retryAfterCrash(id, created, postedAt);
	} finally {
		await doomed.kill();
	}
});

it('connection dropped after Stripe created the session: 503, released, the retry gets the same session', async () => {
	const id = uniqueId('drop');
	const created = await stack.fake.created();
	// More drops than one call makes: the SDK retries once, and the HTTP
	// client may resend a request whose pooled connection closed. The retries
	// below use up what is left.
	await stack.fake.fault('drop', { times: 4 });
	const first = await guest().post(guestBody(id));
	assert.equal(first.status, 503, 'the function does not know the outcome: retry');
	assert.equal(await stack.fake.created(), created + 1);
	const row = await keyRow('checkout:guest', id);
	// A release ends the lease now (it keeps when: stripe_idem.settle_time).
	assert.ok(row?.locked_until && row.locked_until <= new Date(), 'released: the retry need not wait');

	const { final } = await postUntilSettled(guest().url, guestBody(id));
	assert.equal(final.status, 200);
	const state = await stack.fake.state();
	assert.equal(state.created, created + 1, 'still exactly one Stripe object');
	assert.equal(final.body.sessionId, state.sessions.at(-1));
	const sent = state.requests.filter((r) => r.key === row!.key).map((r) => r.outcome);
	assert.deepEqual(sent, ['created', 'replayed_dropped', 'replayed_dropped', 'replayed_dropped', 'replayed'], 'every attempt used the same key');
	assert.equal(state.faults, 0);
});
