// The check-before-call flow both checkouts share: one Stripe Checkout
// Session per operation, whatever the client, the network or the isolate does.
//
//   begin  -> acquired    call Stripe with the key stripe_idem returned, record
//          -> completed   replay the stored result, no Stripe call
//          -> in_progress 409 + Retry-After (someone else holds the lease)
//          -> mismatch    422 (same stable id, different cart or buyer)
//          -> unresolved  the outcome is unknown and Stripe may have forgotten
//                         the key: reconcile (reconcile.ts), then the session
//                         Stripe had (200, replayed) or a new one under a
//                         fresh key; 409 type unresolved while Stripe cannot
//                         be asked
//
// Key format: operation_type:stable_id:UUID, e.g.
// checkout:customer:cart_8f2c…:0b6c… (made by the extension, reused on takeover).

import type { Deps } from './deps.ts';
import { errorReply, json, retryLater } from './http.ts';
import { isDefinitive, storedError, type Stripe } from './stripe.ts';
import type { BeginResult } from './idempotency.ts';
import { reconcileCheckout } from './reconcile.ts';

// How long a client waits before asking again about a checkout being
// reconciled while Stripe cannot be reached.
const UNRESOLVED_RETRY_AFTER_SECONDS = 10;

export interface CheckoutOperation {
	operationType: string;
	operationId: string;
	// What identifies the request (the cart and the buyer): its fingerprint
	// tells a retry from a different request under the same id.
	requestParams: unknown;
	stripeParams: Stripe.Checkout.SessionCreateParams;
	// Work to do once the lease is ours, before Stripe is called (idempotent:
	// a takeover runs it again).
	beforeStripe?: () => Promise<void>;
}

interface Stored {
	status?: number;
	error?: unknown;
	session?: { id?: string; url?: string | null };
}

// A stored outcome (a session or a definitive Stripe error) as an answer.
function fromStored(sessionId: string | null, stored: Stored | null, replayed: boolean): Response {
	const headers: Record<string, string> = replayed ? { 'Idempotent-Replayed': 'true' } : {};
	if (stored && stored.error) return json(stored.status ?? 400, { error: stored.error }, headers);
	const s = stored?.session ?? {};
	return json(200, { sessionId: sessionId || s.id, url: s.url ?? null, replayed }, headers);
}

function dbFailure(deps: Deps, err: unknown, fields: Record<string, unknown>): Response {
	const e = err as { code?: string; message?: string };
	if (e.code === '22023' || e.code === '22004') return errorReply(400, 'invalid_request', e.message ?? 'invalid request');
	// 54000: request_params or a response over stripe_idem's size limits
	// (stripe_idem.max_request_params_size / max_response_size, 1 MB): the
	// request is too large, retrying it cannot help.
	if (e.code === '54000') return errorReply(413, 'too_large', 'the checkout is too large');
	deps.log.error('database call failed', { ...fields, code: e.code, message: e.message });
	return retryLater('the checkout could not be started, retry');
}

async function releaseQuietly(deps: Deps, op: CheckoutOperation, key: string, attempts: number): Promise<void> {
	try {
		if (!(await deps.store.release(op.operationType, op.operationId, key, attempts)))
			deps.log.warn('lease no longer ours, nothing released', { operationId: op.operationId, attempts });
	} catch (err) {
		// The lease runs out on its own; the retry just waits for it.
		deps.log.warn('release failed, the lease will expire instead', { operationId: op.operationId, message: (err as Error).message });
	}
}

async function createSession(deps: Deps, op: CheckoutOperation, key: string, attempts: number): Promise<Response> {
	const { config, store, log } = deps;
	const fields = { operationType: op.operationType, operationId: op.operationId };
	if (attempts > 1) log.info('taking over an unfinished checkout with the same Idempotency-Key', { ...fields, attempts });

	try {
		await op.beforeStripe?.();
	} catch (err) {
		log.error('could not prepare the checkout', { ...fields, message: (err as Error).message });
		await releaseQuietly(deps, op, key, attempts);
		return retryLater('the checkout could not be started, retry');
	}

	let outcome: Record<string, unknown>;
	let resourceId: string | null = null;
	try {
		const session = await deps.stripe.checkout.sessions.create(op.stripeParams, { idempotencyKey: key });
		resourceId = session.id;
		outcome = { status: 200, session: { id: session.id, url: session.url, amount_total: session.amount_total, currency: session.currency } };
	} catch (err) {
		if (!isDefinitive(err)) {
			// We do not know whether Stripe acted. Release so the retry gets the
			// lease at once; it sends the same key and Stripe replays.
			const e = err as { statusCode?: number; type?: string; message?: string };
			log.warn('transient Stripe failure, lease released', { ...fields, status: e.statusCode, type: e.type, message: e.message });
			await releaseQuietly(deps, op, key, attempts);
			return retryLater('payment provider unavailable, retry');
		}
		outcome = storedError(err) as unknown as Record<string, unknown>;
	}

	await deps.pause('before-record', { ...fields, key, resourceId });

	let rec;
	try {
		rec = await store.record(op.operationType, op.operationId, key, resourceId, outcome, config.ttlSeconds);
	} catch (err) {
		// Stripe has the session, the database does not know yet. The retry
		// reuses the key, Stripe replays, and that attempt records it.
		log.error('could not record the Stripe result', { ...fields, sessionId: resourceId, code: (err as { code?: string }).code, message: (err as Error).message });
		await releaseQuietly(deps, op, key, attempts);
		return retryLater('the checkout could not be saved, retry');
	}
	if (!rec.recorded) {
		// Someone took over after our lease ran out and finished first; with
		// the same key Stripe gave them the same session.
		log.info('Idempotent request - returning existing session', { ...fields, sessionId: rec.resource_id });
		return fromStored(rec.resource_id, rec.response as Stored, true);
	}
	return fromStored(resourceId, outcome as Stored, false);
}

function unresolvedReply(seconds = UNRESOLVED_RETRY_AFTER_SECONDS): Response {
	return errorReply(409, 'unresolved', 'this checkout is being reconciled with the payment provider, retry shortly',
		{ 'Retry-After': String(seconds) });
}

// An unresolved operation: ask Stripe what became of it (reconcile.ts) and
// answer with that. null when the operation changed meanwhile (another call
// recorded or restarted it): the caller calls begin again.
async function settleUnresolved(deps: Deps, op: CheckoutOperation, b: BeginResult): Promise<Response | null> {
	const fields = { operationType: op.operationType, operationId: op.operationId };
	const key = b.key as string;
	deps.log.warn('unresolved checkout: reconciling with Stripe', { ...fields, key, attempts: b.attempts });
	let r;
	try {
		// When the key was made, and the bound past which nobody sent it: the
		// only time Stripe can have seen it.
		const row = await deps.store.check(op.operationType, op.operationId);
		if (!row || row.status !== 'unresolved' || row.key !== key) return null;
		r = await reconcileCheckout(deps, {
			operationType: op.operationType,
			operationId: op.operationId,
			metadata: (op.stripeParams.metadata ?? {}) as Record<string, string>,
			customer: typeof op.stripeParams.customer === 'string' ? op.stripeParams.customer : undefined,
		}, key, row.created_at as Date, row.expires_at);
	} catch (err) {
		return dbFailure(deps, err, fields);
	}
	switch (r.result) {
		case 'recorded':
			// The session an earlier call made: this request did not create it.
			return fromStored(r.rec.resource_id, r.rec.response as Stored, true);
		case 'restarted':
			return createSession(deps, op, r.begin.key as string, r.begin.attempts as number);
		case 'unavailable':
			return unresolvedReply();
		case 'changed':
			return null;
	}
}

export async function runCheckout(deps: Deps, op: CheckoutOperation): Promise<Response> {
	const fields = { operationType: op.operationType, operationId: op.operationId };
	// A second round only when an unresolved operation changed under us while
	// we reconciled it: begin then says what it is now.
	for (let round = 1; ; round++) {
		let b;
		try {
			b = await deps.store.begin(op.operationType, op.operationId, op.requestParams, deps.config.leaseSeconds, deps.config.ttlSeconds);
		} catch (err) {
			return dbFailure(deps, err, fields);
		}
		switch (b.state) {
			case 'acquired':
				return createSession(deps, op, b.key as string, b.attempts as number);
			case 'completed':
				deps.log.info('Idempotent request - returning existing session', { ...fields, sessionId: b.resource_id });
				return fromStored(b.resource_id, b.response as Stored, true);
			case 'in_progress':
				return errorReply(409, 'in_progress', 'this checkout is being created, retry shortly',
					{ 'Retry-After': String(Math.max(1, b.retry_after_s || 0)) });
			case 'mismatch':
				return errorReply(422, 'mismatch', 'this checkout was already started with a different cart or buyer');
			case 'unresolved': {
				const answer = await settleUnresolved(deps, op, b);
				if (answer) return answer;
				if (round >= 2) return unresolvedReply(1);
				break;
			}
			default:
				throw new Error(`begin_stripe_idempotency returned unknown state ${b.state}`);
		}
	}
}
