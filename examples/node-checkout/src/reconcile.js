'use strict';
// Reconciling an unresolved checkout. begin_stripe_idempotency answers
// "unresolved" when an operation is in progress, nobody holds its lease and
// its key may no longer be sent to Stripe: Stripe may have forgotten it (it
// keeps keys for at least 24 hours, stripe_idem.key_window) or the ttl ran
// out. Its outcome is unknown: a caller may have died after Stripe created
// the session and before it recorded it. Sending the old key again could
// create a second session; so only Stripe can say what happened.
//
// We ask it by the metadata every session carries (checkout_session_id =
// the operation id): list the Checkout Sessions created while the key could
// have been used, and match that metadata.
//   found      record_stripe_idempotency with the stored key: completed, and
//              every retry replays that session from then on
//   not found  restart_stripe_idempotency: a fresh key with a lease, and the
//              caller goes on to create the session with it
//   Stripe unreachable: nothing changes, the caller answers "retry later"
// A row that changed meanwhile (someone else recorded or restarted it) is
// left to begin: the caller calls it again.

const { OPERATION } = require('./checkout-input');

// The database's clock and Stripe's may differ a little; the window below is
// widened by this much on both sides. A wider window only lists more.
const CLOCK_SLACK_SECONDS = 300;

// The sessions Stripe created for operation `id` between `from` and `to`
// (Dates), oldest first. Checkout Sessions can be listed by creation time
// (created[gte], created[lte]); the SDK's auto-pagination follows has_more
// with starting_after, 100 to a page. Throws when Stripe cannot be asked.
async function findCheckoutSessions(stripe, id, from, to) {
	const created = { gte: Math.floor(from.getTime() / 1000) - CLOCK_SLACK_SECONDS };
	if (to) created.lte = Math.ceil(to.getTime() / 1000) + CLOCK_SLACK_SECONDS;
	const found = [];
	for await (const s of stripe.checkout.sessions.list({ created, limit: 100 })) {
		if (s.metadata && s.metadata.checkout_session_id === id) found.push(s);
	}
	return found.sort((a, b) => a.created - b.created);
}

// What the handler stores for a session, the same as after a create().
function sessionOutcome(s) {
	return { status: 200, session: { id: s.id, url: s.url, amount_total: s.amount_total, currency: s.currency } };
}

// deps: the handler's. id: the operation id; key: the key begin returned with
// "unresolved"; createdAt/expiresAt: the row's (check_stripe_idempotency),
// when the key was made and a bound past every lease taken with it (a
// takeover never leases past expires_at), so the only time Stripe can have
// seen the key. Returns one of
//   { result: 'recorded', rec }        the session found, recorded (rec: record's row)
//   { result: 'restarted', begin }     none found, restarted: begin is restart's row
//   { result: 'unavailable', error }   Stripe could not be asked; nothing changed
//   { result: 'changed' }              the operation changed meanwhile: begin again
async function reconcileCheckout(deps, id, key, createdAt, expiresAt = null) {
	const { stripe, store, log } = deps;
	const fields = { checkoutSessionId: id, key };
	let sessions;
	try {
		sessions = await findCheckoutSessions(stripe, id, createdAt, expiresAt);
	} catch (err) {
		log.warn('unresolved checkout: Stripe could not be asked, retry later', { ...fields, status: err.statusCode, message: err.message });
		return { result: 'unavailable', error: err };
	}

	if (sessions.length > 0) {
		// One key made at most one session; more than one means sessions were
		// made for this id outside this handler. The first is the one a retry
		// would have been given.
		if (sessions.length > 1) log.warn('unresolved checkout: several sessions carry this id, recording the first', { ...fields, sessions: sessions.map((s) => s.id) });
		const s = sessions[0];
		try {
			const rec = await store.record(OPERATION, id, key, s.id, sessionOutcome(s));
			log.info('unresolved checkout reconciled: Stripe had the session, recorded', { ...fields, sessionId: s.id, recorded: rec.recorded });
			return { result: 'recorded', rec };
		} catch (err) {
			// 23505: the operation is under another key now (restarted meanwhile).
			if (err.code === '23505') return { result: 'changed' };
			throw err;
		}
	}

	try {
		const begin = await store.restart(OPERATION, id, key);
		log.info('unresolved checkout reconciled: Stripe has no session, restarted with a new key', { ...fields, newKey: begin.key });
		return { result: 'restarted', begin };
	} catch (err) {
		// 55000: no longer unresolved under this key (restarted or recorded meanwhile).
		if (err.code === '55000') return { result: 'changed' };
		throw err;
	}
}

module.exports = { reconcileCheckout, findCheckoutSessions, sessionOutcome, CLOCK_SLACK_SECONDS };
