// The official SDK on Deno: fetch for HTTP, SubtleCrypto for webhook
// signatures (Node's http and crypto modules are not what an edge runtime
// offers). Configured so that one call has a known worst-case duration,
// which the database lease must outlast.

import Stripe from 'npm:stripe@23.1.0';
import type { StripeConfig } from './config.ts';

export { Stripe };

// Constants of stripe-node (RequestSender._getSleepTimeInMS): the first retry
// waits 0.5 s, doubling, at most 5 s.
const INITIAL_RETRY_DELAY_MS = 500;
const MAX_RETRY_DELAY_MS = 5000;

// Longest time one SDK call can take before it gives up. Counted with at
// least two attempts, as for stripe-node on Node (which retries a closed
// connection once even with maxNetworkRetries = 0): an over-estimate here
// only makes the startup check stricter.
export function worstCaseCallMs({ timeoutMs, maxNetworkRetries }: Pick<StripeConfig, 'timeoutMs' | 'maxNetworkRetries'>): number {
	const attempts = Math.max(maxNetworkRetries, 1) + 1;
	let sleeps = 0;
	for (let n = 1; n < attempts; n++) sleeps += Math.min(INITIAL_RETRY_DELAY_MS * 2 ** (n - 1), MAX_RETRY_DELAY_MS);
	return attempts * timeoutMs + sleeps;
}

// A lease shorter than the SDK's worst case lets a second caller take over
// while the first still talks to Stripe: safe (same key: Stripe answers 409 or
// replays) but a slow Stripe then fails both. Refuse it at startup.
export function assertLeaseCoversStripe(leaseSeconds: number, conf: StripeConfig): void {
	const worst = worstCaseCallMs(conf);
	if (leaseSeconds * 1000 <= worst)
		throw new Error(`lease of ${leaseSeconds}s is shorter than the Stripe SDK's worst case of ${worst} ms ` +
			`(timeout ${conf.timeoutMs} ms, maxNetworkRetries ${conf.maxNetworkRetries}); raise the lease or lower the timeout`);
}

export function createStripe(conf: StripeConfig): Stripe {
	return new Stripe(conf.apiKey, {
		httpClient: Stripe.createFetchHttpClient(),
		// Explicit, never the SDK default (2 retries of 80 s each): retries
		// inside one call reuse our Idempotency-Key; anything longer is the
		// client's retry after our 503, coordinated by the lease.
		maxNetworkRetries: conf.maxNetworkRetries,
		timeout: conf.timeoutMs,
		telemetry: false,
		...(conf.host ? { host: conf.host } : {}),
		...(conf.port ? { port: conf.port } : {}),
		...(conf.protocol ? { protocol: conf.protocol } : {}),
	});
}

// Webhook signature checks with Web Crypto (constructEventAsync needs it).
export const webhookCrypto = Stripe.createSubtleCryptoProvider();

interface StripeErrorLike {
	statusCode?: number;
	type?: string;
	rawType?: string;
	code?: string;
	decline_code?: string;
	param?: string;
	message?: string;
}

// Definitive: Stripe validated or executed the request and would answer the
// same again (400/404 invalid_request_error including idempotency_error, 402
// card_error). Record it as the operation's outcome. Everything else (no
// answer, 5xx, 409, 429, 401/403 about our own API key) is transient:
// release the lease and let the client retry with the same key.
export function isDefinitive(err: unknown): boolean {
	const status = (err as StripeErrorLike)?.statusCode;
	return status === 400 || status === 402 || status === 404;
}

export interface StoredError {
	status: number;
	error: { type: string | null; code: string | null; decline_code: string | null; param: string | null; message: string };
}

// What is stored and replayed for a definitive error: enough for the client,
// nothing that depends on this attempt (request ids, headers).
export function storedError(err: unknown): StoredError {
	const e = err as StripeErrorLike;
	return {
		status: e.statusCode ?? 500,
		error: {
			type: e.rawType || e.type || null,
			code: e.code || null,
			decline_code: e.decline_code || null,
			param: e.param || null,
			message: e.message || 'Stripe error',
		},
	};
}
