'use strict';
// Scenario 10: least privilege. The README's grants, run exactly as written,
// are all an application role needs: the store works as that role (every
// call, including restart and check on an unresolved operation), and the
// role can neither read nor write the table nor sweep it.

const fs = require('node:fs');
const path = require('node:path');
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack, uniqueId } = require('./support/stack');
const { IdempotencyStore } = require('../src/idempotency');

const ROLE = 'checkout_app';

let stack;
let store;
before(async () => {
	stack = await startStack();
	// The SQL block of the README's "Privileges" section.
	const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
	const grants = readme.split('## Privileges')[1].match(/```sql\n([\s\S]*?)```/)[1];
	await stack.sql(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${ROLE}') THEN CREATE ROLE ${ROLE} NOLOGIN; END IF; END $$`);
	await stack.sql(grants);
	// The store's own transactions, run as the role (SET LOCAL ROLE ends with
	// each transaction, so it is safe behind the pooler too).
	store = new IdempotencyStore(stack.deps.pool, { leaseSeconds: 5 });
	store.open += `; SET LOCAL ROLE ${ROLE}`;
});
after(() => stack.close());

test('the store works as a role with only the README\'s grants', async () => {
	const id = uniqueId('priv');
	const a = await store.begin('checkout:create', id, { n: 1 });
	assert.equal(a.state, 'acquired');
	assert.equal((await store.check('checkout:create', id)).status, 'in_progress');
	assert.equal(await store.release('checkout:create', id, a.key, a.attempts), true);
	const b = await store.begin('checkout:create', id, { n: 1 });
	assert.equal(b.state, 'acquired');
	assert.equal(b.key, a.key);
	assert.equal((await store.record('checkout:create', id, b.key, 'cs_priv', { ok: true })).recorded, true);
	assert.equal((await store.begin('checkout:create', id, { n: 1 })).state, 'completed');
});

test('as that role an unresolved operation is checked and restarted', async () => {
	const id = uniqueId('priv-unres');
	const a = await store.begin('checkout:create', id, { n: 2 });
	await stack.sql(
		`UPDATE stripe_idempotency_keys
		    SET created_at = created_at - interval '30 hours', updated_at = updated_at - interval '30 hours',
		        locked_until = locked_until - interval '30 hours', expires_at = expires_at - interval '30 hours'
		  WHERE operation_type = 'checkout:create' AND operation_id = $1`, [id]);
	assert.equal((await store.begin('checkout:create', id, { n: 2 })).state, 'unresolved');
	assert.equal((await store.check('checkout:create', id)).status, 'unresolved');
	const r = await store.restart('checkout:create', id, a.key);
	assert.equal(r.state, 'acquired');
	assert.notEqual(r.key, a.key);
});

test('the role cannot touch the table, nor sweep it', async () => {
	const asRole = async (sql) => {
		const client = await stack.deps.pool.connect();
		try {
			await client.query(`BEGIN; SET LOCAL ROLE ${ROLE}`);
			return await client.query(sql);
		} finally {
			await client.query('ROLLBACK');
			client.release();
		}
	};
	for (const sql of [
		'SELECT count(*) FROM stripe_idempotency_keys',
		`UPDATE stripe_idempotency_keys SET status = 'completed'`,
		'SELECT cleanup_expired_idempotency_keys()',
	]) await assert.rejects(asRole(sql), (err) => err.code === '42501', sql);
});
