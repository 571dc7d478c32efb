'use strict';
// The three stripe_idem calls the handler makes. Each is its own short
// transaction, committed before the handler goes on: the lease must be
// visible to other callers before Stripe is called, never held in an open
// transaction across the network call.
//
// Pooler-safe: nothing is set for the session. A transaction-mode pooler
// (pgbouncer, Supavisor) hands each transaction to whichever server
// connection is free, so a session SET would leak into other clients' calls
// and a statement_timeout startup parameter is refused outright. The timeout
// is SET LOCAL inside each call's transaction, and lease and ttl are
// arguments of every call.

const BEGIN = `
SELECT state, stripe_idempotency_key AS key, stripe_resource_id AS resource_id, response, attempts,
       ceil(extract(epoch FROM retry_after))::integer AS retry_after_s
  FROM begin_stripe_idempotency($1, $2, $3::jsonb, $4::interval, $5::interval)`;

const RECORD = `
SELECT recorded, stripe_resource_id AS resource_id, response
  FROM record_stripe_idempotency($1, $2, $3, $4, $5::jsonb, $6::interval)`;

const RELEASE = `SELECT release_stripe_idempotency($1, $2, $3, $4) AS released`;

// 40001: the extension asks the caller to run the statement again.
const MAX_SERIALIZATION_RETRIES = 5;

function seconds(s) {
	return s == null ? null : `${s} seconds`;
}

// The calls are short by design; this bounds a stuck one (a lock held by a
// forgotten transaction, an overloaded server).
const DEFAULT_STATEMENT_TIMEOUT_MS = 5000;

class IdempotencyStore {
	constructor(pool, { leaseSeconds = null, ttlSeconds = null, statementTimeoutMs = DEFAULT_STATEMENT_TIMEOUT_MS } = {}) {
		if (!Number.isInteger(statementTimeoutMs) || statementTimeoutMs < 1) throw new Error('statementTimeoutMs must be a positive integer');
		this.pool = pool;
		this.lease = seconds(leaseSeconds);
		this.ttl = seconds(ttlSeconds);
		// BEGIN and SET LOCAL in one simple-protocol round trip.
		this.open = `BEGIN; SET LOCAL statement_timeout = ${statementTimeoutMs}`;
	}

	// One call as its own transaction: BEGIN; SET LOCAL; the call; COMMIT.
	async _transaction(sql, params) {
		const client = await this.pool.connect();
		let broken = null;
		try {
			await client.query(this.open);
			const { rows } = await client.query(sql, params);
			await client.query('COMMIT');
			return rows[0];
		} catch (err) {
			// A failed statement leaves the transaction aborted: roll it back so the
			// connection goes back to the pool clean; if even that fails, drop it.
			await client.query('ROLLBACK').catch((e) => { broken = e; });
			throw err;
		} finally {
			client.release(broken || undefined);
		}
	}

	async _query(sql, params) {
		for (let attempt = 1; ; attempt++) {
			try {
				return await this._transaction(sql, params);
			} catch (err) {
				if (err.code !== '40001' || attempt >= MAX_SERIALIZATION_RETRIES) throw err;
				await new Promise((r) => setTimeout(r, 5 * attempt + Math.random() * 10));
			}
		}
	}

	// -> { state, key, resource_id, response, attempts, retry_after_s }
	begin(operationType, operationId, requestParams) {
		// JSON text, not the object: node-pg would turn a top-level array into a
		// PostgreSQL array literal.
		return this._query(BEGIN, [operationType, operationId, JSON.stringify(requestParams), this.lease, this.ttl]);
	}

	// -> { recorded, resource_id, response }; recorded=false returns the first stored result.
	record(operationType, operationId, key, resourceId, response) {
		return this._query(RECORD, [operationType, operationId, key, resourceId, JSON.stringify(response), this.ttl]);
	}

	// attempts: what begin returned with "acquired"; it fences off a release
	// from a holder whose lease was already taken over.
	async release(operationType, operationId, key, attempts) {
		return (await this._query(RELEASE, [operationType, operationId, key, attempts])).released;
	}
}

module.exports = { IdempotencyStore };
