'use strict';
// Reading stripe_idem's state directly, to check what the handler left behind.

async function checkRow(stack, id) {
	const [row] = await stack.sql(
		`SELECT found, status, stripe_idempotency_key AS key, stripe_resource_id AS resource_id, response
		   FROM check_stripe_idempotency('checkout:create', $1)`, [id]);
	return row;
}

async function rawRow(stack, id) {
	const [row] = await stack.sql(
		`SELECT status, stripe_idempotency_key AS key, stripe_resource_id AS resource_id, response, attempts, locked_until
		   FROM stripe_idempotency_keys WHERE operation_type = 'checkout:create' AND operation_id = $1`, [id]);
	return row;
}

// Time passes for one operation: every timestamp of its row moves `by` (an
// interval) into the past, as if that much time had gone by since.
async function ageRow(stack, id, by) {
	await stack.sql(
		`UPDATE stripe_idempotency_keys
		    SET created_at = created_at - $2::interval, updated_at = updated_at - $2::interval,
		        locked_until = locked_until - $2::interval, expires_at = expires_at - $2::interval,
		        completed_at = completed_at - $2::interval
		  WHERE operation_type = 'checkout:create' AND operation_id = $1`, [id, by]);
}

module.exports = { checkRow, rawRow, ageRow };
