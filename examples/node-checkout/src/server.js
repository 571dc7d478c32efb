'use strict';
// POST /checkout over node:http. Run directly (`npm start`) it reads its
// settings from the environment (see config.js; PG* variables for the
// database) and prints `listening <port>` once it accepts requests.

const http = require('node:http');
const { Pool } = require('pg');
const { handleCheckout } = require('./checkout');
const { IdempotencyStore } = require('./idempotency');
const { createStripe, assertLeaseCoversStripe } = require('./stripe-client');
const { configFromEnv } = require('./config');

const MAX_BODY = 64 * 1024;

const jsonLog = {
	info: (msg, fields) => console.log(JSON.stringify({ level: 'info', msg, ...fields })),
	warn: (msg, fields) => console.warn(JSON.stringify({ level: 'warn', msg, ...fields })),
	error: (msg, fields) => console.error(JSON.stringify({ level: 'error', msg, ...fields })),
};

function send(res, { status, headers = {}, body }) {
	const text = JSON.stringify(body);
	res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
	res.end(text);
}

function readJSON(req) {
	return new Promise((resolve, reject) => {
		let size = 0;
		const chunks = [];
		req.on('data', (c) => {
			size += c.length;
			if (size > MAX_BODY) {
				reject(Object.assign(new Error('body too large'), { status: 413 }));
				req.destroy();
			} else chunks.push(c);
		});
		req.on('end', () => {
			try {
				resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
			} catch {
				reject(Object.assign(new Error('body is not JSON'), { status: 400 }));
			}
		});
		req.on('error', reject);
	});
}

function createCheckoutServer(deps) {
	return http.createServer(async (req, res) => {
		if (req.method !== 'POST' || req.url !== '/checkout')
			return send(res, { status: 404, body: { error: { type: 'not_found', message: 'POST /checkout' } } });
		let body;
		try {
			body = await readJSON(req);
		} catch (err) {
			return send(res, { status: err.status || 400, body: { error: { type: 'invalid_request', message: err.message } } });
		}
		try {
			send(res, await handleCheckout(deps, body));
		} catch (err) {
			deps.log.error('checkout failed', { message: err.message, stack: err.stack });
			if (!res.headersSent) send(res, { status: 500, body: { error: { type: 'internal', message: 'internal error' } } });
		}
	});
}

// Everything the handler needs, built from a config object.
function createDeps(config, { log = jsonLog, hooks } = {}) {
	assertLeaseCoversStripe(config.leaseSeconds, config.stripe);
	// No statement_timeout (or any other setting) as a startup parameter: a
	// transaction-mode pooler refuses the connection. IdempotencyStore sets the
	// timeout with SET LOCAL in each call's transaction instead.
	const pool = new Pool({ max: config.poolSize || 10, application_name: 'node-checkout' });
	const store = new IdempotencyStore(pool, { leaseSeconds: config.leaseSeconds, ttlSeconds: config.ttlSeconds });
	return { pool, store, stripe: createStripe(config.stripe), config, log, hooks };
}

async function main() {
	const config = configFromEnv();
	const hooks = {};
	if (process.env.CHECKOUT_TEST_PAUSE_BEFORE_RECORD === '1') {
		// Test only: the crash-window test kills this process at exactly this
		// point (Stripe answered, nothing recorded). Announce it and stall.
		hooks.beforeRecord = (info) => {
			process.send({ pausedBeforeRecord: info });
			return new Promise(() => {});
		};
	}
	const deps = createDeps(config, { hooks });
	const server = createCheckoutServer(deps);
	server.listen(Number(process.env.PORT || 0), process.env.HOST || '127.0.0.1', () => {
		const { port } = server.address();
		console.log(`listening ${port}`);
		if (process.send) process.send({ listening: port });
	});
	const stop = () => server.close(() => deps.pool.end().then(() => process.exit(0)));
	process.on('SIGTERM', stop);
	process.on('SIGINT', stop);
}

module.exports = { createCheckoutServer, createDeps, jsonLog };

if (require.main === module) {
	main().catch((err) => {
		console.error(err.message);
		process.exit(1);
	});
}
