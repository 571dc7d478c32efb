'use strict';
// A Stripe-compatible fake of POST and GET /v1/checkout/sessions, good enough
// for the real `stripe` SDK to talk to over plain HTTP on 127.0.0.1.
//
// It implements Stripe's idempotency rules, because they are what the
// exactly-once argument rests on:
//   - same Idempotency-Key + same parameters: the first response is replayed,
//     with the header `Idempotent-Replayed: true`;
//   - same key + other parameters: 400 idempotency_error;
//   - same key while the first request is still executing: 409
//     idempotency_key_in_use.
// It counts the objects it created, so tests can prove "exactly one", and it
// can inject faults into the next requests (see fault()).
//
// Listing (GET /v1/checkout/sessions, newest first, with created[gte|gt|lte|lt],
// customer, limit and starting_after, as Stripe's) is what an application reconciling
// an unresolved operation asks. Stripe keeps an Idempotency-Key for at least
// 24 hours and may forget it after: forget(key) does that to one key, and
// age(seconds) makes that much time pass at once: every session and key
// becomes that much older, and keys older than 24 hours are forgotten.
//
// Webhooks: completeSession() marks a session paid and returns the
// checkout.session.completed event signed the way Stripe signs deliveries
// (Stripe-Signature: t=<unix time>,v1=<HMAC-SHA256 of "t.payload"> with the
// endpoint's whsec_ secret); signEvent() signs it again, as a redelivery.
//
// Tests in another process (the Deno edge-function tests) use the same
// through a control API under /_fake/ (see _control()): read the counts,
// inject faults, complete a session, sign an event.

const http = require('node:http');
const crypto = require('node:crypto');
const { EventEmitter } = require('node:events');

const SESSIONS_PATH = '/v1/checkout/sessions';
// How long this fake remembers an Idempotency-Key (Stripe: at least 24 hours).
const KEY_MEMORY_SECONDS = 24 * 3600;
const MAX_UNIT_AMOUNT = 99999999; // Stripe's limit: eight digits

function sendJSON(res, status, body, headers = {}) {
	const text = JSON.stringify(body);
	res.writeHead(status, {
		'Content-Type': 'application/json',
		'Content-Length': Buffer.byteLength(text),
		'Request-Id': 'req_' + crypto.randomBytes(7).toString('hex'),
		...headers,
	});
	res.end(text);
}

function stripeError(type, message, extra = {}) {
	return { error: { type, message, ...extra } };
}

// The SDK sends form encoding with bracketed keys (line_items[0][quantity]).
// Sorted pairs are a stable signature of "the same parameters".
function paramsSignature(form) {
	return JSON.stringify([...form.entries()].sort());
}

// Turn line_items[i][...] back into the amounts a real session would report.
function lineItems(form) {
	const items = [];
	for (let i = 0; form.has(`line_items[${i}][quantity]`); i++) {
		const p = `line_items[${i}]`;
		items.push({
			quantity: Number(form.get(`${p}[quantity]`)),
			unitAmount: Number(form.get(`${p}[price_data][unit_amount]`)),
			currency: form.get(`${p}[price_data][currency]`),
		});
	}
	return items;
}

// Validation a real Stripe would do before executing (not saved under the key).
function validate(form) {
	const items = lineItems(form);
	if (items.length === 0) return { param: 'line_items', message: 'line_items is required in payment mode.' };
	for (const [i, it] of items.entries()) {
		if (!Number.isInteger(it.quantity) || it.quantity < 1)
			return { param: `line_items[${i}][quantity]`, message: 'Invalid quantity.' };
		if (!Number.isInteger(it.unitAmount) || it.unitAmount < 0)
			return { param: `line_items[${i}][price_data][unit_amount]`, message: 'Invalid integer.' };
		if (it.unitAmount > MAX_UNIT_AMOUNT)
			return { param: `line_items[${i}][price_data][unit_amount]`, message: 'This value must be less than or equal to 99999999.' };
	}
	if (!form.get('success_url')) return { param: 'success_url', message: 'Missing required param: success_url.' };
	return null;
}

const CONTROL_PREFIX = '/_fake/';
const DEFAULT_WEBHOOK_SECRET = 'whsec_test_fake';

// Stripe-Signature for `payload` at unix time `t`.
function signatureHeader(secret, payload, t) {
	const v1 = crypto.createHmac('sha256', secret).update(`${t}.${payload}`, 'utf8').digest('hex');
	return `t=${t},v1=${v1}`;
}

class FakeStripe extends EventEmitter {
	constructor({ webhookSecret = DEFAULT_WEBHOOK_SECRET } = {}) {
		super();
		this.webhookSecret = webhookSecret;
		this.events = new Map(); // id -> { event, payload }
		this.sessions = new Map(); // id -> created session object
		this.keys = new Map(); // Idempotency-Key -> { signature, executing, status, body }
		this.requests = []; // one entry per POST, in arrival order: { key, outcome }
		this.lists = []; // one entry per GET of the list, in arrival order: { query, outcome }
		this.faults = []; // [{ kind, times, ms }], consumed front to back
		this.listFaults = []; // the same for GET /v1/checkout/sessions
		this.server = http.createServer((req, res) => this._handle(req, res));
	}

	get created() {
		return this.sessions.size;
	}

	// Inject a fault into the next `times` POSTs to the sessions endpoint:
	//   delay         only the wait (while executing, the key counts as in use);
	//   500           answer 500 api_error before executing (nothing saved);
	//   drop          execute (create the object, save it under the key), then
	//                 close the connection without an answer; replays are
	//                 dropped too while the fault lasts;
	//   card_declined execute and fail with 402 card_error, saved under the key.
	// `ms` makes any kind wait that long first: a slow 500, a slow decline.
	// With on: 'list' the fault goes to the next GETs of the list instead
	// (delay, 500, drop: close the connection without an answer).
	fault(kind, { times = 1, ms = 0, on = 'create' } = {}) {
		if (on === 'list') {
			if (!['delay', '500', 'drop'].includes(kind)) throw new Error(`unknown list fault ${kind}`);
			this.listFaults.push({ kind, times, ms });
			return;
		}
		if (on !== 'create') throw new Error(`unknown fault target ${on}`);
		if (!['delay', '500', 'drop', 'card_declined'].includes(kind)) throw new Error(`unknown fault ${kind}`);
		this.faults.push({ kind, times, ms });
	}

	// Stripe forgot this key (it may, any time after 24 hours): the next
	// request with it executes anew. Returns whether the key was known.
	forget(key) {
		return this.keys.delete(key);
	}

	// `seconds` pass at once: sessions were created that much earlier, keys
	// first used that much earlier, and those older than 24 hours forgotten.
	// Returns the keys forgotten.
	age(seconds) {
		if (!Number.isFinite(seconds) || seconds < 0) throw new Error('age takes a number of seconds >= 0');
		for (const session of this.sessions.values()) session.created -= Math.floor(seconds);
		const forgotten = [];
		const now = Date.now() / 1000;
		for (const [key, entry] of this.keys) {
			entry.firstUsed -= seconds;
			if (!entry.executing && now - entry.firstUsed > KEY_MEMORY_SECONDS) {
				this.keys.delete(key);
				forgotten.push(key);
			}
		}
		return forgotten;
	}

	// The session paid: returns the checkout.session.completed event, its exact
	// payload and a Stripe-Signature header for it.
	completeSession(sessionId) {
		const session = this.sessions.get(sessionId);
		if (!session) throw new Error(`no session ${sessionId}`);
		Object.assign(session, { status: 'complete', payment_status: 'paid' });
		const event = {
			id: 'evt_test_' + crypto.randomBytes(12).toString('hex'),
			object: 'event',
			api_version: '2025-01-27.acacia',
			created: Math.floor(Date.now() / 1000),
			type: 'checkout.session.completed',
			livemode: false,
			pending_webhooks: 1,
			request: { id: null, idempotency_key: null },
			data: { object: { ...session } },
		};
		const payload = JSON.stringify(event, null, 2);
		this.events.set(event.id, { event, payload });
		return { event, payload, signature: this.signEvent(event.id).signature };
	}

	// A delivery of a known event: same payload, signed now (a redelivery
	// carries a new timestamp). `secret` other than the endpoint's forges one.
	signEvent(eventId, { secret = this.webhookSecret, t = Math.floor(Date.now() / 1000) } = {}) {
		const e = this.events.get(eventId);
		if (!e) throw new Error(`no event ${eventId}`);
		return { payload: e.payload, signature: signatureHeader(secret, e.payload, t) };
	}

	// Counts for tests in another process.
	state() {
		return {
			created: this.created,
			sessions: [...this.sessions.keys()],
			requests: this.requests,
			// Calls Stripe has begun and not yet answered (a key in use).
			executing: [...this.keys.values()].filter((e) => e.executing).length,
			events: this.events.size,
			faults: this.faults.length,
			lists: this.lists,
			listFaults: this.listFaults.length,
			keys: this.keys.size,
		};
	}

	_takeFault(queue = this.faults) {
		const f = queue[0];
		if (!f) return null;
		if (--f.times <= 0) queue.shift();
		return f;
	}

	listen() {
		return new Promise((resolve) => {
			this.server.listen(0, '127.0.0.1', () => {
				this.port = this.server.address().port;
				resolve(this);
			});
		});
	}

	// The options the real SDK needs to talk to this fake instead of api.stripe.com.
	sdkOptions() {
		return { host: '127.0.0.1', port: this.port, protocol: 'http' };
	}

	close() {
		this.server.closeAllConnections();
		return new Promise((resolve) => this.server.close(() => resolve()));
	}

	_handle(req, res) {
		const chunks = [];
		req.on('data', (c) => chunks.push(c));
		req.on('end', () => {
			this._route(req, res, Buffer.concat(chunks).toString('utf8')).catch((err) => {
				sendJSON(res, 500, stripeError('api_error', String(err && err.message)));
			});
		});
	}

	// The control API: GET state, POST faults {kind, times, ms, on},
	// POST sessions/<id>/complete, POST events/<id>/sign {secret?, t?},
	// POST keys/<key>/forget, POST age {seconds}.
	_control(req, res, path, body) {
		try {
			const input = body ? JSON.parse(body) : {};
			if (req.method === 'GET' && path === 'state') return sendJSON(res, 200, this.state());
			if (req.method === 'POST' && path === 'faults') {
				this.fault(input.kind, { times: input.times, ms: input.ms, on: input.on });
				return sendJSON(res, 200, { faults: this.faults.length, listFaults: this.listFaults.length });
			}
			if (req.method === 'POST' && path === 'age') return sendJSON(res, 200, { forgotten: this.age(Number(input.seconds)) });
			let m = path.match(/^keys\/([^/]+)\/forget$/);
			if (req.method === 'POST' && m) return sendJSON(res, 200, { forgotten: this.forget(decodeURIComponent(m[1])) });
			m = path.match(/^sessions\/([^/]+)\/complete$/);
			if (req.method === 'POST' && m) return sendJSON(res, 200, this.completeSession(m[1]));
			m = path.match(/^events\/([^/]+)\/sign$/);
			if (req.method === 'POST' && m) return sendJSON(res, 200, this.signEvent(m[1], input));
		} catch (err) {
			return sendJSON(res, 400, { error: { message: err.message } });
		}
		return sendJSON(res, 404, { error: { message: `no control route ${req.method} ${path}` } });
	}

	async _route(req, res, body) {
		const url = new URL(req.url, 'http://fake');
		if (url.pathname.startsWith(CONTROL_PREFIX)) return this._control(req, res, url.pathname.slice(CONTROL_PREFIX.length), body);
		if (!/^Bearer sk_test_\S+$/.test(req.headers.authorization || ''))
			return sendJSON(res, 401, stripeError('invalid_request_error', 'Invalid API Key provided.'));
		if (req.method === 'POST' && url.pathname === SESSIONS_PATH)
			return this._createSession(req, res, new URLSearchParams(body));
		if (req.method === 'GET' && url.pathname === SESSIONS_PATH) return this._listSessions(req, res, url.searchParams);
		const m = url.pathname.match(/^\/v1\/checkout\/sessions\/([^/]+)$/);
		if (req.method === 'GET' && m && this.sessions.has(m[1])) return sendJSON(res, 200, this.sessions.get(m[1]));
		return sendJSON(res, 404, stripeError('invalid_request_error', `Unrecognized request URL (${req.method}: ${url.pathname}).`, { code: 'resource_missing' }));
	}

	async _createSession(req, res, form) {
		const key = req.headers['idempotency-key'] || null;
		const signature = paramsSignature(form);
		const fault = this._takeFault();
		const log = (outcome) => {
			this.requests.push({ key, outcome });
			this.emit('request', { key, outcome });
		};
		const pause = () => (fault && fault.ms ? new Promise((r) => setTimeout(r, fault.ms)) : null);

		const prior = key && this.keys.get(key);
		if (prior) {
			if (prior.signature !== signature) {
				log('idempotency_error');
				return sendJSON(res, 400, stripeError('idempotency_error',
					`Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`));
			}
			if (prior.executing) {
				log('key_in_use');
				return sendJSON(res, 409, stripeError('invalid_request_error',
					'There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): ' + key + '. Please try again later.',
					{ code: 'idempotency_key_in_use' }));
			}
			await pause();
			if (fault && fault.kind === 'drop') {
				log('replayed_dropped');
				return req.socket.destroy();
			}
			log('replayed');
			return sendJSON(res, prior.status, prior.body, { 'Idempotent-Replayed': 'true', 'Original-Request': prior.requestId });
		}

		if (fault && fault.kind === '500') {
			await pause();
			log('error_500');
			return sendJSON(res, 500, stripeError('api_error', 'An unknown error occurred (injected).'));
		}
		const invalid = validate(form);
		if (invalid) {
			// Failed validation: the endpoint never started, so nothing is saved.
			log('invalid');
			return sendJSON(res, 400, stripeError('invalid_request_error', invalid.message, { param: invalid.param }));
		}

		const entry = { signature, executing: true, firstUsed: Date.now() / 1000, requestId: 'req_' + crypto.randomBytes(7).toString('hex') };
		if (key) this.keys.set(key, entry);
		await pause();

		if (fault && fault.kind === 'card_declined') {
			Object.assign(entry, {
				executing: false,
				status: 402,
				body: stripeError('card_error', 'Your card was declined.', { code: 'card_declined', decline_code: 'generic_decline' }),
			});
			log('card_declined');
			return sendJSON(res, entry.status, entry.body);
		}

		const session = this._newSession(form);
		this.sessions.set(session.id, session);
		Object.assign(entry, { executing: false, status: 200, body: session });
		log('created');
		this.emit('created', { key, session });
		if (fault && fault.kind === 'drop') return req.socket.destroy();
		return sendJSON(res, 200, session);
	}

	// GET /v1/checkout/sessions: newest first (Stripe's order), filtered by
	// created[gte|gt|lte|lt] and customer, `limit` (1-100, default 10) to a page, the next
	// page with starting_after=<last id of this one>.
	async _listSessions(req, res, query) {
		const fault = this._takeFault(this.listFaults);
		const log = (outcome) => this.lists.push({ query: Object.fromEntries(query), outcome });
		if (fault && fault.ms) await new Promise((r) => setTimeout(r, fault.ms));
		if (fault && fault.kind === '500') {
			log('error_500');
			return sendJSON(res, 500, stripeError('api_error', 'An unknown error occurred (injected).'));
		}
		if (fault && fault.kind === 'drop') {
			log('dropped');
			return req.socket.destroy();
		}
		const bad = (param, message) => {
			log('invalid');
			return sendJSON(res, 400, stripeError('invalid_request_error', message, { param }));
		};
		const limit = query.has('limit') ? Number(query.get('limit')) : 10;
		if (!Number.isInteger(limit) || limit < 1 || limit > 100) return bad('limit', 'This value must be between 1 and 100.');
		const bounds = {};
		for (const op of ['gte', 'gt', 'lte', 'lt']) {
			const v = query.get(`created[${op}]`);
			if (v === null) continue;
			if (!/^\d+$/.test(v)) return bad(`created[${op}]`, 'Invalid integer.');
			bounds[op] = Number(v);
		}
		const inRange = (c) => !((bounds.gte !== undefined && c < bounds.gte) || (bounds.gt !== undefined && c <= bounds.gt) ||
			(bounds.lte !== undefined && c > bounds.lte) || (bounds.lt !== undefined && c >= bounds.lt));
		// Newest first; among equal timestamps the later created first.
		const customer = query.get('customer');
		let all = [...this.sessions.values()].reverse().filter((s) => inRange(s.created) && (!customer || s.customer === customer));
		all.sort((a, b) => b.created - a.created);
		const after = query.get('starting_after');
		if (after) {
			const i = all.findIndex((s) => s.id === after);
			if (i < 0) return bad('starting_after', `No such checkout.session: '${after}'`);
			all = all.slice(i + 1);
		}
		log('listed');
		return sendJSON(res, 200, { object: 'list', url: SESSIONS_PATH, has_more: all.length > limit, data: all.slice(0, limit) });
	}

	_newSession(form) {
		const id = 'cs_test_' + crypto.randomBytes(12).toString('hex');
		const items = lineItems(form);
		const metadata = {};
		for (const [k, v] of form.entries()) {
			const m = k.match(/^metadata\[(.+)\]$/);
			if (m) metadata[m[1]] = v;
		}
		return {
			id,
			object: 'checkout.session',
			mode: form.get('mode') || 'payment',
			status: 'open',
			payment_status: 'unpaid',
			amount_total: items.reduce((s, it) => s + it.quantity * it.unitAmount, 0),
			currency: items[0].currency || null,
			client_reference_id: form.get('client_reference_id'),
			customer: form.get('customer'),
			customer_email: form.get('customer_email'),
			success_url: form.get('success_url'),
			cancel_url: form.get('cancel_url'),
			metadata,
			url: `http://127.0.0.1:${this.port}/pay/${id}`,
			created: Math.floor(Date.now() / 1000),
			livemode: false,
		};
	}
}

async function startFakeStripe(options) {
	return new FakeStripe(options).listen();
}

module.exports = { FakeStripe, startFakeStripe, signatureHeader };

// Standalone (for tests in another process): FAKE_STRIPE_WEBHOOK_SECRET sets
// the endpoint secret; the line below announces the port.
if (require.main === module) {
	startFakeStripe({ webhookSecret: process.env.FAKE_STRIPE_WEBHOOK_SECRET || DEFAULT_WEBHOOK_SECRET })
		.then((fake) => console.log(`fake Stripe on http://127.0.0.1:${fake.port}`));
}
