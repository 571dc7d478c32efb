'use strict';
// An in-memory stand-in for IdempotencyStore with the same answers as
// stripe_idem, for testing the handler's branches without a database. The
// end-to-end tests use the real extension.

const crypto = require('node:crypto');

class MemoryStore {
	constructor({ leaseMs = 3000 } = {}) {
		this.leaseMs = leaseMs;
		this.rows = new Map();
		this.calls = [];
		this.failRecord = null; // an Error to throw from the next record()
	}

	async begin(type, id, params) {
		this.calls.push('begin');
		const k = `${type}\0${id}`;
		const fp = JSON.stringify(params);
		const now = Date.now();
		let row = this.rows.get(k);
		if (!row) {
			row = { key: crypto.randomUUID(), fp, status: 'in_progress', attempts: 0, lockedUntil: 0, createdAt: new Date(now), unresolved: false };
			this.rows.set(k, row);
		}
		if (row.fp !== fp) return { state: 'mismatch' };
		if (row.status === 'completed') return { state: 'completed', key: row.key, resource_id: row.resource_id, response: row.response };
		if (row.lockedUntil > now) return { state: 'in_progress', retry_after_s: Math.ceil((row.lockedUntil - now) / 1000) };
		if (row.unresolved) return { state: 'unresolved', key: row.key, attempts: row.attempts };
		row.lockedUntil = now + this.leaseMs;
		row.attempts++;
		return { state: 'acquired', key: row.key, attempts: row.attempts };
	}

	async record(type, id, key, resourceId, response) {
		this.calls.push('record');
		if (this.failRecord) {
			const e = this.failRecord;
			this.failRecord = null;
			throw e;
		}
		const row = this.rows.get(`${type}\0${id}`);
		if (row.key !== key) throw Object.assign(new Error('key conflict'), { code: '23505' });
		if (row.status === 'completed') return { recorded: false, resource_id: row.resource_id, response: row.response };
		Object.assign(row, { status: 'completed', resource_id: resourceId, response, lockedUntil: 0, unresolved: false });
		return { recorded: true, resource_id: resourceId, response };
	}

	// What the key window or the ttl does to a row in stripe_idem: its lease
	// gone, its key no longer to be sent.
	makeUnresolved(type, id) {
		const row = this.rows.get(`${type}\0${id}`);
		Object.assign(row, { lockedUntil: 0, unresolved: true });
		return row.key;
	}

	async check(type, id) {
		this.calls.push('check');
		const row = this.rows.get(`${type}\0${id}`);
		if (!row) return { found: false };
		const status = row.status === 'completed' ? 'completed' : row.unresolved ? 'unresolved' : 'in_progress';
		return { found: true, status, key: row.key, resource_id: row.resource_id, response: row.response, created_at: row.createdAt, expires_at: null };
	}

	async restart(type, id, key) {
		this.calls.push('restart');
		const row = this.rows.get(`${type}\0${id}`);
		if (!row || row.key !== key || row.status !== 'in_progress' || !row.unresolved)
			throw Object.assign(new Error('not unresolved under this key'), { code: '55000' });
		Object.assign(row, { key: crypto.randomUUID(), attempts: 1, lockedUntil: Date.now() + this.leaseMs, createdAt: new Date(), unresolved: false });
		return { state: 'acquired', key: row.key, attempts: 1 };
	}

	async release(type, id, key, attempts) {
		this.calls.push('release');
		const row = this.rows.get(`${type}\0${id}`);
		if (!row || row.key !== key || row.status !== 'in_progress') return false;
		if (attempts != null && row.attempts !== attempts) return false;
		row.lockedUntil = 0;
		return true;
	}
}

module.exports = { MemoryStore };
