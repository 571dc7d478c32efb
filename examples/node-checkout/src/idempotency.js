'use strict';
// The three stripe_idem calls the handler makes. Each is a single statement on
// a pooled connection, i.e. its own committed transaction: the lease must be
// visible to other callers before Stripe is called, never held in an open
// transaction across the network call.

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

class IdempotencyStore {
	constructor(pool, { leaseSeconds = null, ttlSeconds = null } = {}) {
		this.pool = pool;
		this.lease = seconds(leaseSeconds);
		this.ttl = seconds(ttlSeconds);
	}

	async _query(sql, params) {
		for (let attempt = 1; ; attempt++) {
			try {
				return (await this.pool.query(sql, params)).rows[0];
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
