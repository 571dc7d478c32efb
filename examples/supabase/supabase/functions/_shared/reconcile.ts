// Reconciling an unresolved checkout. begin_stripe_idempotency answers
// "unresolved" when an operation is in progress, nobody holds its lease and
// its key may no longer be sent to Stripe: Stripe may have forgotten it (it
// keeps keys for at least 24 hours, stripe_idem.key_window) or the ttl ran
// out. Its outcome is unknown: an isolate may have died after Stripe created
// the session and before it recorded it, and the old key sent again could
// create a second session. Only Stripe can say what happened.
//
// Every session carries the metadata the checkout sent (order_id), so the
// function lists the Checkout Sessions created while the key could have been
// used (created[gte] = when the key was made, created[lte] = when the row
// expires: no lease taken with the key ends later; a signed-in customer's
// are listed by customer too) and matches that metadata:
//   found      record_stripe_idempotency with the stored key: completed,
//              every retry replays that session from then on
//   not found  restart_stripe_idempotency: a fresh key with a lease, and the
//              checkout goes on to create the session with it
//   Stripe cannot be asked: nothing changes, the caller answers 409
//              (type unresolved) with Retry-After
// An operation that changed meanwhile (someone else recorded or restarted it)
// is left to begin: the caller calls it again.

import type { Deps } from './deps.ts';
import type { BeginResult, RecordResult } from './idempotency.ts';
import type { Stripe } from './stripe.ts';

// The database's clock and Stripe's may differ a little; the listed window
// is widened by this much on both sides. A wider window only lists more.
export const CLOCK_SLACK_SECONDS = 300;

export interface ReconcileTarget {
	operationType: string;
	operationId: string;
	// The metadata the checkout sends with every create(): a session carrying
	// all of it was made by this operation.
	metadata: Record<string, string>;
	// The Stripe customer, when the checkout is a customer's: lists only theirs.
	customer?: string;
}

export type Reconciled =
	| { result: 'recorded'; rec: RecordResult }
	| { result: 'restarted'; begin: BeginResult }
	| { result: 'unavailable'; error: unknown }
	| { result: 'changed' };

// The sessions Stripe created for the target between `from` and `to`, oldest
// first. The SDK's auto-pagination follows has_more with starting_after.
// Throws when Stripe cannot be asked.
export async function findCheckoutSessions(stripe: Stripe, t: ReconcileTarget, from: Date, to: Date | null): Promise<Stripe.Checkout.Session[]> {
	const created: Stripe.RangeQueryParam = { gte: Math.floor(from.getTime() / 1000) - CLOCK_SLACK_SECONDS };
	if (to) created.lte = Math.ceil(to.getTime() / 1000) + CLOCK_SLACK_SECONDS;
	const found: Stripe.Checkout.Session[] = [];
	const params: Stripe.Checkout.SessionListParams = { created, limit: 100, ...(t.customer ? { customer: t.customer } : {}) };
	for await (const s of stripe.checkout.sessions.list(params)) {
		if (Object.entries(t.metadata).every(([k, v]) => s.metadata?.[k] === v)) found.push(s);
	}
	return found.sort((a, b) => a.created - b.created);
}

// What the checkout stores for a session, the same as after a create().
export function sessionOutcome(s: Stripe.Checkout.Session): Record<string, unknown> {
	return { status: 200, session: { id: s.id, url: s.url, amount_total: s.amount_total, currency: s.currency } };
}

// key: the key begin returned with "unresolved"; createdAt/expiresAt: the
// row's (check_stripe_idempotency). lease, ttl and key window go to restart
// as they went to begin.
export async function reconcileCheckout(deps: Deps, t: ReconcileTarget, key: string, createdAt: Date, expiresAt: Date | null): Promise<Reconciled> {
	const { config, store, log } = deps;
	const fields = { operationType: t.operationType, operationId: t.operationId, key };
	let sessions: Stripe.Checkout.Session[];
	try {
		sessions = await findCheckoutSessions(deps.stripe, t, createdAt, expiresAt);
	} catch (err) {
		const e = err as { statusCode?: number; message?: string };
		log.warn('unresolved checkout: Stripe could not be asked, retry later', { ...fields, status: e.statusCode, message: e.message });
		return { result: 'unavailable', error: err };
	}

	if (sessions.length > 0) {
		// One key made at most one session; more mean sessions were made for
		// this order outside this function. The first is the one a retry
		// would have been given.
		if (sessions.length > 1) log.warn('unresolved checkout: several sessions carry this order, recording the first', { ...fields, sessions: sessions.map((s) => s.id) });
		const s = sessions[0];
		try {
			const rec = await store.record(t.operationType, t.operationId, key, s.id, sessionOutcome(s), config.ttlSeconds);
			log.info('unresolved checkout reconciled: Stripe had the session, recorded', { ...fields, sessionId: s.id, recorded: rec.recorded });
			return { result: 'recorded', rec };
		} catch (err) {
			// 23505: the operation is under another key now (restarted meanwhile).
			if ((err as { code?: string }).code === '23505') return { result: 'changed' };
			throw err;
		}
	}

	try {
		const begin = await store.restart(t.operationType, t.operationId, key, config.leaseSeconds, config.ttlSeconds);
		log.info('unresolved checkout reconciled: Stripe has no session, restarted with a new key', { ...fields, newKey: begin.key });
		return { result: 'restarted', begin };
	} catch (err) {
		// 55000: no longer unresolved under this key (restarted or recorded meanwhile).
		if ((err as { code?: string }).code === '55000') return { result: 'changed' };
		throw err;
	}
}
