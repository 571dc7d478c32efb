'use strict';
// The stripe_idem calls the handler makes. Each is its own short
// transaction, committed before the handler goes on: the lease must be
// visible to other callers before Stripe is called, never held in an open
// transaction across the network call.
//
// Pooler-safe: nothing is set for the session. A transaction-mode pooler
// (pgbouncer, Supavisor) hands each transaction to whichever server
// connection is free, so a session SET would leak into other clients' calls
// and a statement_timeout startup parameter is refused outright. The timeout
// is SET LOCAL inside each call's transaction, and lease, ttl and key window
// are arguments of every call.

const BEGIN = `
SELECT state, stripe_idempotency_key AS key, stripe_resource_id AS resource_id, response, attempts,
       ceil(extract(epoch FROM retry_after))::integer AS retry_after_s
  FROM begin_stripe_idempotency($1, $2, $3::jsonb, $4::interval, $5::interval, $6::interval)`;

// The reconcile path of an unresolved operation that Stripe has no object
// for: a fresh key with a lease, the same columns as begin.
const RESTART = `
SELECT state, stripe_idempotency_key AS key, stripe_resource_id AS resource_id, response, attempts,
       ceil(extract(epoch FROM retry_after))::integer AS retry_after_s
  FROM restart_stripe_idempotency($1, $2, $3, $4::interval, $5::interval, $6::interval)`;

const CHECK = `
SELECT found, status, stripe_idempotency_key AS key, stripe_resource_id AS resource_id, response, created_at
  FROM check_stripe_idempotency($1, $2)`;

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
	// keyWindowSeconds: how long after a key was made it may still be sent to
	// Stripe (null = the setting stripe_idem.key_window, 24 h: how long Stripe
	// surely remembers a key). Keep it for the checkouts.
	constructor(pool, { leaseSeconds = null, ttlSeconds = null, keyWindowSeconds = null, statementTimeoutMs = DEFAULT_STATEMENT_TIMEOUT_MS } = {}) {
		if (!Number.isInteger(statementTimeoutMs) || statementTimeoutMs < 1) throw new Error('statementTimeoutMs must be a positive integer');
		this.pool = pool;
		this.lease = seconds(leaseSeconds);
		this.ttl = seconds(ttlSeconds);
		this.keyWindow = seconds(keyWindowSeconds);
		// BEGIN and the SET LOCALs in one simple-protocol round trip.
		// begin and restart refuse to run inside a transaction block (25001):
		// were it rolled back after the key was handed out, the key would be
		// lost and the retry would get a new one. Here the call's transaction
		// commits before the key is used: _transaction returns only after
		// COMMIT succeeded, and a failed COMMIT is an error the handler answers
		// without calling Stripe. So this transaction may allow them.
		this.open = `BEGIN; SET LOCAL statement_timeout = ${statementTimeoutMs}; SET LOCAL stripe_idem.allow_begin_in_transaction = on`;
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
		return this._query(BEGIN, [operationType, operationId, JSON.stringify(requestParams), this.lease, this.ttl, this.keyWindow]);
	}

	// An unresolved operation for which Stripe has no object made with `key`:
	// -> begin's columns, state 'acquired' with a new key and attempts 1.
	// Raises 55000 when the operation is no longer unresolved under `key`
	// (restarted or recorded meanwhile): call begin again.
	restart(operationType, operationId, key) {
		return this._query(RESTART, [operationType, operationId, key, this.lease, this.ttl, this.keyWindow]);
	}

	// -> { found, status, key, resource_id, response, created_at }; created_at
	// is when the stored key was made, the earliest Stripe can have used it.
	check(operationType, operationId) {
		return this._query(CHECK, [operationType, operationId]);
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
