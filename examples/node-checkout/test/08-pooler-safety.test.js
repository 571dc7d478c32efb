'use strict';
// Scenario 8: what makes the store safe behind a transaction-mode pooler.
// Nothing is set for the session (a pooler shares server connections between
// clients), yet every call is bounded by a statement timeout, set with
// SET LOCAL in the call's own transaction. test/suites/61-node-pooler.sh runs
// this file (and all the others) through pgbouncer as well.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Pool } = require('pg');
const { startStack, uniqueId } = require('./support/stack');
const { IdempotencyStore } = require('../src/idempotency');

let stack;
before(async () => { stack = await startStack(); });
after(() => stack.close());

test('a call blocked on a lock is cut off by its SET LOCAL statement_timeout', async () => {
	// Another transaction blocks every write to the table, as a stuck
	// migration or a forgotten session would.
	const holder = await stack.deps.pool.connect();
	try {
		await holder.query('BEGIN');
		await holder.query('LOCK TABLE stripe_idempotency_keys IN EXCLUSIVE MODE');
		const store = new IdempotencyStore(stack.deps.pool, { leaseSeconds: 5, statementTimeoutMs: 300 });
		const started = Date.now();
		await assert.rejects(store.begin('checkout:create', uniqueId('locked'), { n: 1 }),
			(err) => err.code === '57014', 'statement_timeout (57014), not an endless wait');
		assert.ok(Date.now() - started < 4000, 'cut off near the 300 ms timeout');
	} finally {
		await holder.query('ROLLBACK');
		holder.release();
	}
	// With the lock gone the same store works again.
	const store = new IdempotencyStore(stack.deps.pool, { leaseSeconds: 5, statementTimeoutMs: 300 });
	assert.equal((await store.begin('checkout:create', uniqueId('unlocked'), { n: 1 })).state, 'acquired');
});

test('the store leaves no setting behind on the connections it used', async () => {
	// Many calls on a small pool, so that every connection served some.
	const pool = new Pool({ max: 3 });
	try {
		const store = new IdempotencyStore(pool, { leaseSeconds: 5, statementTimeoutMs: 1234 });
		await Promise.all(Array.from({ length: 30 }, (_, i) => store.begin('checkout:create', uniqueId(`leak${i}`), { n: i })));
		const seen = await Promise.all(Array.from({ length: 30 }, async () => (await pool.query('SHOW statement_timeout')).rows[0].statement_timeout));
		assert.deepEqual([...new Set(seen)], ['0'], 'the server default, never the 1234 ms the calls used');
	} finally {
		await pool.end();
	}
});

test('begin in a transaction block is refused (25001) unless the transaction allows it, as the store\'s does', async () => {
	const client = await stack.deps.pool.connect();
	try {
		await client.query('BEGIN');
		await assert.rejects(client.query(`SELECT * FROM begin_stripe_idempotency('checkout:create', $1)`, [uniqueId('in-tx')]),
			(err) => err.code === '25001', 'a rollback after the key was handed out would lose it');
		await client.query('ROLLBACK');
	} finally {
		client.release();
	}
	// The store opens each call with SET LOCAL stripe_idem.allow_begin_in_transaction = on
	// and uses the key only after COMMIT.
	const store = new IdempotencyStore(stack.deps.pool, { leaseSeconds: 5 });
	assert.equal((await store.begin('checkout:create', uniqueId('in-store-tx'), { n: 1 })).state, 'acquired');
	const seen = (await stack.sql(`SELECT current_setting('stripe_idem.allow_begin_in_transaction', true) AS v`))[0].v;
	assert.notEqual(seen, 'on', 'the setting ended with the call\'s transaction');
});

test('a failed call rolls back and leaves its connection usable', async () => {
	const pool = new Pool({ max: 1 });
	try {
		const store = new IdempotencyStore(pool, { leaseSeconds: 5 });
		// 22023: the operation type breaks the extension's rules.
		await assert.rejects(store.begin('bad type!', 'x', null), (err) => err.code === '22023');
		// In a transaction left open (or aborted) this would fail with 25P02 or
		// show the transaction's older start time.
		const { rows } = await pool.query('SELECT now() = statement_timestamp() AS own_transaction');
		assert.equal(rows[0].own_transaction, true, 'no transaction left open');
		const b = await store.begin('checkout:create', uniqueId('after-error'), { ok: true });
		assert.equal(b.state, 'acquired');
	} finally {
		await pool.end();
	}
});
