// The stripe_idem calls, each its own short transaction committed before the
// caller goes on: the lease must be visible to other callers before Stripe is
// called, never held in an open transaction across the network call. Lease,
// ttl and key window are arguments of every call (never session settings,
// which a transaction pooler would share between clients). The functions are
// called schema-qualified: the migration creates the extension in schema
// payments, and grants the functions' role EXECUTE on them and nothing on
// the table (they are SECURITY DEFINER).

import { inTransaction, type JSONValue, type Sql, type Tx } from './db.ts';

export type BeginState = 'acquired' | 'completed' | 'in_progress' | 'mismatch' | 'unresolved';

export interface BeginResult {
	state: BeginState;
	key: string | null;
	resource_id: string | null;
	response: unknown;
	attempts: number | null;
	retry_after_s: number | null;
}

export interface CheckResult {
	found: boolean;
	status: 'in_progress' | 'completed' | 'unresolved' | null;
	key: string | null;
	resource_id: string | null;
	response: unknown;
	// When the stored key was made, and when the row expires: no lease taken
	// with the key ends later, so Stripe can have seen it only in between.
	created_at: Date | null;
	expires_at: Date | null;
}

export interface RecordResult {
	recorded: boolean;
	resource_id: string | null;
	response: unknown;
}

// 40001: the extension asks the caller to run the call again.
const MAX_SERIALIZATION_RETRIES = 5;

function seconds(s: number | null): string | null {
	return s == null ? null : `${s} seconds`;
}

export class IdempotencyStore {
	constructor(private sql: Sql, private statementTimeoutMs: number) {}

	private async retrying<T>(fn: () => Promise<T>): Promise<T> {
		for (let attempt = 1; ; attempt++) {
			try {
				return await fn();
			} catch (err) {
				if ((err as { code?: string }).code !== '40001' || attempt >= MAX_SERIALIZATION_RETRIES) throw err;
				await new Promise((r) => setTimeout(r, 5 * attempt + Math.random() * 10));
			}
		}
	}

	private call<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
		return this.retrying(() => inTransaction(this.sql, this.statementTimeoutMs, fn));
	}

	// begin and restart refuse to run inside a transaction block (25001):
	// rolled back after it handed out a key, the key would be lost and the
	// retry would get a new one. Here the transaction holds nothing but the
	// call and commits before the key is used (sql.begin resolves only after
	// COMMIT succeeded; a failed COMMIT is an error the caller answers
	// without calling Stripe), so it may allow them.
	private callHandingOutKey<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
		return this.call(async (tx) => {
			await tx.unsafe('SET LOCAL stripe_idem.allow_begin_in_transaction = on');
			return await fn(tx);
		});
	}

	// keyWindowSeconds: how long after the key was made it may still be handed
	// out (null = stripe_idem.key_window, 24 h, how long Stripe surely
	// remembers a key). Checkouts keep it; a webhook, whose key never reaches
	// Stripe, passes its ttl.
	begin(type: string, id: string, params: unknown, leaseSeconds: number, ttlSeconds: number | null,
		keyWindowSeconds: number | null = null): Promise<BeginResult> {
		return this.callHandingOutKey(async (tx) => {
			const [row] = await tx`
				SELECT state, stripe_idempotency_key AS key, stripe_resource_id AS resource_id, response, attempts,
				       ceil(extract(epoch FROM retry_after))::integer AS retry_after_s
				  FROM payments.begin_stripe_idempotency(${type}, ${id}, ${params == null ? null : tx.json(params as JSONValue)}::jsonb,
				                                         ${seconds(leaseSeconds)}::interval, ${seconds(ttlSeconds)}::interval,
				                                         ${seconds(keyWindowSeconds)}::interval)`;
			return row as unknown as BeginResult;
		});
	}

	// An unresolved operation for which nothing was made with `key`: a fresh
	// key with a lease (begin's columns, state 'acquired', attempts 1). Pass
	// the lease, ttl and key window begin was given. Raises 55000 when the
	// operation is no longer unresolved under `key` (restarted or recorded
	// meanwhile): call begin again.
	restart(type: string, id: string, key: string, leaseSeconds: number, ttlSeconds: number | null,
		keyWindowSeconds: number | null = null): Promise<BeginResult> {
		return this.callHandingOutKey(async (tx) => {
			const [row] = await tx`
				SELECT state, stripe_idempotency_key AS key, stripe_resource_id AS resource_id, response, attempts,
				       ceil(extract(epoch FROM retry_after))::integer AS retry_after_s
				  FROM payments.restart_stripe_idempotency(${type}, ${id}, ${key}, ${seconds(leaseSeconds)}::interval,
				                                           ${seconds(ttlSeconds)}::interval, ${seconds(keyWindowSeconds)}::interval)`;
			return row as unknown as BeginResult;
		});
	}

	check(type: string, id: string): Promise<CheckResult> {
		return this.call(async (tx) => {
			const [row] = await tx`
				SELECT found, status, stripe_idempotency_key AS key, stripe_resource_id AS resource_id, response, created_at, expires_at
				  FROM payments.check_stripe_idempotency(${type}, ${id})`;
			return row as unknown as CheckResult;
		});
	}

	// In a transaction of its own, or (tx given) inside the caller's, so that
	// the caller's own writes and the record commit together.
	record(type: string, id: string, key: string, resourceId: string | null, response: unknown, ttlSeconds: number | null, tx?: Tx): Promise<RecordResult> {
		const run = async (t: Tx) => {
			const [row] = await t`
				SELECT recorded, stripe_resource_id AS resource_id, response
				  FROM payments.record_stripe_idempotency(${type}, ${id}, ${key}, ${resourceId}, ${t.json(response as JSONValue)}::jsonb,
				                                          ${seconds(ttlSeconds)}::interval)`;
			return row as unknown as RecordResult;
		};
		return tx ? run(tx) : this.call(run);
	}

	// attempts: what begin returned with "acquired"; a takeover keeps the key,
	// so only the attempt number tells a late release from the new holder's.
	release(type: string, id: string, key: string, attempts: number): Promise<boolean> {
		return this.call(async (tx) => {
			const [row] = await tx`SELECT payments.release_stripe_idempotency(${type}, ${id}, ${key}, ${attempts}::integer) AS released`;
			return row.released as boolean;
		});
	}
}
