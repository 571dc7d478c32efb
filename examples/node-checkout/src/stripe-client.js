'use strict';
// The official SDK, configured so that one handler call has a known worst-case
// duration, which the database lease must outlast.

const Stripe = require('stripe');

// Constants of stripe-node (RequestSender._getSleepTimeInMS): the first retry
// waits 0.5 s, doubling, at most 5 s.
const INITIAL_RETRY_DELAY_MS = 500;
const MAX_RETRY_DELAY_MS = 5000;

// Longest time stripe.checkout.sessions.create() can take before it gives up.
// The SDK retries a closed connection (ECONNRESET/EPIPE) once even with
// maxNetworkRetries = 0, so there are always at least two attempts.
function worstCaseCallMs({ timeoutMs, maxNetworkRetries }) {
	const attempts = Math.max(maxNetworkRetries, 1) + 1;
	let sleeps = 0;
	for (let n = 1; n < attempts; n++) sleeps += Math.min(INITIAL_RETRY_DELAY_MS * 2 ** (n - 1), MAX_RETRY_DELAY_MS);
	return attempts * timeoutMs + sleeps;
}

// A lease shorter than the SDK's worst case lets a second caller take the
// operation over while the first one is still talking to Stripe. That stays
// safe (same Idempotency-Key: Stripe answers 409 or replays) but turns a slow
// Stripe into errors for both; refuse such a configuration at startup.
function assertLeaseCoversStripe(leaseSeconds, stripeConf) {
	const worst = worstCaseCallMs(stripeConf);
	if (leaseSeconds * 1000 <= worst)
		throw new Error(`lease of ${leaseSeconds}s is shorter than the Stripe SDK's worst case of ${worst} ms ` +
			`(timeout ${stripeConf.timeoutMs} ms, maxNetworkRetries ${stripeConf.maxNetworkRetries}); raise the lease or lower the timeout`);
}

function createStripe(conf) {
	return new Stripe(conf.apiKey, {
		// Explicit, never the SDK default (2 retries of 80 s each in stripe-node
		// 23, i.e. minutes): retries inside one call reuse our Idempotency-Key,
		// so one retry rides out a blip cheaply; anything longer is the
		// client's retry after our 503, coordinated by the database lease.
		maxNetworkRetries: conf.maxNetworkRetries,
		timeout: conf.timeoutMs,
		telemetry: false,
		...(conf.host ? { host: conf.host } : {}),
		...(conf.port ? { port: conf.port } : {}),
		...(conf.protocol ? { protocol: conf.protocol } : {}),
	});
}

module.exports = { createStripe, worstCaseCallMs, assertLeaseCoversStripe };
