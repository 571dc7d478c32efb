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

module.exports = { checkRow, rawRow };
