// The stripe_idem calls, each its own short transaction committed before the
// caller goes on: the lease must be visible to other callers before Stripe is
// called, never held in an open transaction across the network call. Lease
// and ttl are arguments of every call (never session settings, which a
// transaction pooler would share between clients). The functions are called
// schema-qualified: the migration creates the extension in schema payments.

import { inTransaction, type JSONValue, type Sql, type Tx } from './db.ts';

export type BeginState = 'acquired' | 'completed' | 'in_progress' | 'mismatch';

export interface BeginResult {
	state: BeginState;
	key: string | null;
	resource_id: string | null;
	response: unknown;
	attempts: number | null;
	retry_after_s: number | null;
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

	begin(type: string, id: string, params: unknown, leaseSeconds: number, ttlSeconds: number | null): Promise<BeginResult> {
		return this.call(async (tx) => {
			const [row] = await tx`
				SELECT state, stripe_idempotency_key AS key, stripe_resource_id AS resource_id, response, attempts,
				       ceil(extract(epoch FROM retry_after))::integer AS retry_after_s
				  FROM payments.begin_stripe_idempotency(${type}, ${id}, ${params == null ? null : tx.json(params as JSONValue)}::jsonb,
				                                         ${seconds(leaseSeconds)}::interval, ${seconds(ttlSeconds)}::interval)`;
			return row as unknown as BeginResult;
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
