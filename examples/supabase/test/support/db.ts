// Direct, superuser access to the test database: carts set up, rows and
// side effects counted. (The functions themselves go through the pooler.)

import postgres from 'npm:postgres@3.4.9';
import { TEST_DB_URL } from './env.ts';

export const db = postgres(TEST_DB_URL, { prepare: false, max: 2, onnotice: () => {} });

export interface KeyRow {
	status: string;
	key: string;
	resource_id: string | null;
	response: Record<string, unknown> | null;
	attempts: number;
	locked_until: Date | null;
}

export async function keyRow(operationType: string, operationId: string): Promise<KeyRow | undefined> {
	const [row] = await db<KeyRow[]>`
		SELECT status, stripe_idempotency_key AS key, stripe_resource_id AS resource_id, response, attempts, locked_until
		  FROM payments.stripe_idempotency_keys WHERE operation_type = ${operationType} AND operation_id = ${operationId}`;
	return row;
}

// Time passes for one operation: every timestamp of its row moves `by` (an
// interval such as '30 hours') into the past.
export async function ageKeyRow(operationType: string, operationId: string, by: string): Promise<void> {
	await db`
		UPDATE payments.stripe_idempotency_keys
		   SET created_at = created_at - ${by}::interval, updated_at = updated_at - ${by}::interval,
		       locked_until = locked_until - ${by}::interval, expires_at = expires_at - ${by}::interval,
		       completed_at = completed_at - ${by}::interval
		 WHERE operation_type = ${operationType} AND operation_id = ${operationId}`;
}

export async function checkStatus(operationType: string, operationId: string): Promise<string | null> {
	const [row] = await db`SELECT status FROM payments.check_stripe_idempotency(${operationType}, ${operationId})`;
	return row?.status ?? null;
}

export async function saveCart(id: string, userId: string, customer: string, items: unknown[], currency = 'eur'): Promise<void> {
	await db`INSERT INTO shop.orders (id, user_id, stripe_customer_id, currency, items)
	         VALUES (${id}, ${userId}::uuid, ${customer}, ${currency}, ${db.json(items as postgres.JSONValue)})`;
}

export async function order(id: string) {
	const [row] = await db`SELECT id, status, email, user_id, checkout_session_id, paid_at FROM shop.orders WHERE id = ${id}`;
	return row;
}

// How many times events were processed for an order (or for one event).
export async function processedCount(where: { orderId?: string; eventId?: string }): Promise<number> {
	const [row] = where.eventId
		? await db`SELECT count(*)::int AS n FROM shop.order_events WHERE stripe_event_id = ${where.eventId}`
		: await db`SELECT count(*)::int AS n FROM shop.order_events WHERE order_id = ${where.orderId ?? ''}`;
	return row.n;
}

let seq = 0;
// Ids unique across files and runs sharing one database.
export function uniqueId(prefix: string): string {
	return `${prefix}-${Deno.pid}-${Date.now().toString(36)}-${++seq}`;
}
