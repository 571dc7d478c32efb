'use strict';
// The checkout handler: one Stripe Checkout Session per checkoutSessionId,
// whatever the client, the network or this process does.
//
//   begin  -> acquired    call Stripe with the key stripe_idem returned, record
//          -> completed   replay the stored result, no Stripe call
//          -> in_progress 409 + Retry-After (someone else holds the lease)
//          -> mismatch    422 (same checkoutSessionId, different cart)
//          -> unresolved  the outcome is unknown and the key may be forgotten
//                         by Stripe: reconcile (src/reconcile.js), then the
//                         session Stripe had (200, replayed), or a new one
//                         under a fresh key; 409 type unresolved while Stripe
//                         cannot be asked
//
// Returns { status, headers, body } so it can sit behind node:http, an edge
// runtime or a test without change.

const { parseCheckout, InputError, OPERATION } = require('./checkout-input');
const { isDefinitive, storedError } = require('./stripe-errors');
const { reconcileCheckout } = require('./reconcile');

// How long a client waits before asking again about a checkout that is being
// reconciled while Stripe cannot be reached.
const UNRESOLVED_RETRY_AFTER_SECONDS = 10;

function reply(status, body, headers = {}) {
	return { status, headers, body };
}

function retryLater(message, seconds = 1) {
	return reply(503, { error: { type: 'retry', message } }, { 'Retry-After': String(seconds) });
}

// A stored outcome (a session or a definitive Stripe error) as an answer.
function fromStored(sessionId, stored, replayed) {
	const headers = replayed ? { 'Idempotent-Replayed': 'true' } : {};
	if (stored && stored.error) return reply(stored.status, { error: stored.error }, headers);
	const s = (stored && stored.session) || {};
	return reply(200, { sessionId: sessionId || s.id, url: s.url || null, replayed }, headers);
}

function dbFailure(err, log, fields) {
	if (err.code === '22023' || err.code === '22004')
		return reply(400, { error: { type: 'invalid_request', message: err.message } });
	// 54000: request_params (or a response) over stripe_idem's size limit
	// (stripe_idem.max_request_params_size, 1 MB): the client's request is too
	// large, retrying it cannot help.
	if (err.code === '54000')
		return reply(413, { error: { type: 'too_large', message: 'the checkout is too large' } });
	log.error('database call failed', { ...fields, code: err.code, message: err.message });
	return retryLater('the checkout could not be started, retry');
}

// A takeover keeps the key, so the release names our attempt too: if our
// lease already ran out and someone took over, it matches nothing and the
// new holder keeps its lease.
async function releaseQuietly(deps, id, key, attempts) {
	try {
		const released = await deps.store.release(OPERATION, id, key, attempts);
		if (!released) deps.log.warn('lease no longer ours, nothing released', { checkoutSessionId: id, attempts });
	} catch (err) {
		// The lease runs out on its own; the retry just waits for it.
		deps.log.warn('release failed, the lease will expire instead', { checkoutSessionId: id, message: err.message });
	}
}

async function createSession(deps, input, key, attempts) {
	const { stripe, store, log, hooks = {} } = deps;
	const id = input.checkoutSessionId;
	if (attempts > 1) log.info('taking over an unfinished checkout with the same Idempotency-Key', { checkoutSessionId: id, attempts });

	let outcome;
	let resourceId = null;
	try {
		const session = await stripe.checkout.sessions.create(input.stripeParams, { idempotencyKey: key });
		resourceId = session.id;
		outcome = { status: 200, session: { id: session.id, url: session.url, amount_total: session.amount_total, currency: session.currency } };
	} catch (err) {
		if (!isDefinitive(err)) {
			// We do not know whether Stripe acted. Release so the client's retry
			// gets the lease at once; it sends the same key and Stripe replays.
			log.warn('transient Stripe failure, lease released', { checkoutSessionId: id, status: err.statusCode, type: err.type, message: err.message });
			await releaseQuietly(deps, id, key, attempts);
			return retryLater('payment provider unavailable, retry', 1);
		}
		outcome = storedError(err);
	}

	if (hooks.beforeRecord) await hooks.beforeRecord({ checkoutSessionId: id, key, outcome });

	let rec;
	try {
		rec = await store.record(OPERATION, id, key, resourceId, outcome);
	} catch (err) {
		// Stripe has the session, the database does not know yet. The retry
		// reuses the key, Stripe replays, and that attempt records it.
		log.error('could not record the Stripe result', { checkoutSessionId: id, sessionId: resourceId, code: err.code, message: err.message });
		await releaseQuietly(deps, id, key, attempts);
		return retryLater('the checkout could not be saved, retry', 1);
	}
	if (!rec.recorded) {
		// Someone took the operation over after our lease ran out and finished
		// first; with the same key Stripe gave them the same session.
		log.info('Idempotent request - returning existing session', { checkoutSessionId: id, sessionId: rec.resource_id });
		return fromStored(rec.resource_id, rec.response, true);
	}
	return fromStored(resourceId, outcome, false);
}

function unresolvedReply(seconds = UNRESOLVED_RETRY_AFTER_SECONDS) {
	return reply(409, { error: { type: 'unresolved', message: 'this checkout is being reconciled with the payment provider, retry shortly' } },
		{ 'Retry-After': String(seconds) });
}

// An unresolved operation: ask Stripe what became of it (src/reconcile.js)
// and answer with that. Returns null when the operation changed meanwhile
// (another caller recorded or restarted it): the caller calls begin again.
async function settleUnresolved(deps, input, b) {
	const { store, log } = deps;
	const id = input.checkoutSessionId;
	log.warn('unresolved checkout: reconciling with Stripe', { checkoutSessionId: id, key: b.key, attempts: b.attempts });
	let r;
	try {
		// When the key was made (and the bound past which nobody sent it): the
		// only time Stripe can have seen it.
		const row = await store.check(OPERATION, id);
		if (!row || row.status !== 'unresolved' || row.key !== b.key) return null;
		r = await reconcileCheckout(deps, id, b.key, row.created_at, row.expires_at);
	} catch (err) {
		return dbFailure(err, log, { checkoutSessionId: id });
	}
	switch (r.result) {
		case 'recorded':
			// The session an earlier call made: this request did not create it.
			return fromStored(r.rec.resource_id, r.rec.response, true);
		case 'restarted':
			return createSession(deps, input, r.begin.key, r.begin.attempts);
		case 'unavailable':
			return unresolvedReply();
		case 'changed':
			return null;
		default:
			throw new Error(`reconcileCheckout returned ${r.result}`);
	}
}

// deps: { store: IdempotencyStore, stripe: Stripe, config, log, hooks? }
async function handleCheckout(deps, body) {
	const { store, log } = deps;
	let input;
	try {
		input = parseCheckout(body, deps.config);
	} catch (err) {
		if (err instanceof InputError) return reply(400, { error: { type: 'invalid_request', message: err.message } });
		throw err;
	}
	const id = input.checkoutSessionId;

	// A second round only when an unresolved operation changed under us while
	// we reconciled it: begin then says what it is now.
	for (let round = 1; ; round++) {
		let b;
		try {
			b = await store.begin(OPERATION, id, input.requestParams);
		} catch (err) {
			return dbFailure(err, log, { checkoutSessionId: id });
		}

		switch (b.state) {
			case 'acquired':
				return createSession(deps, input, b.key, b.attempts);
			case 'completed':
				log.info('Idempotent request - returning existing session', { checkoutSessionId: id, sessionId: b.resource_id });
				return fromStored(b.resource_id, b.response, true);
			case 'in_progress':
				return reply(409, { error: { type: 'in_progress', message: 'this checkout is being created, retry shortly' } },
					{ 'Retry-After': String(Math.max(1, b.retry_after_s || 0)) });
			case 'mismatch':
				return reply(422, { error: { type: 'mismatch', message: 'this checkoutSessionId was already used with a different cart' } });
			case 'unresolved': {
				const answer = await settleUnresolved(deps, input, b);
				if (answer) return answer;
				if (round >= 2) return unresolvedReply(1);
				break;
			}
			default:
				throw new Error(`begin_stripe_idempotency returned unknown state ${b.state}`);
		}
	}
}

module.exports = { handleCheckout, OPERATION };
