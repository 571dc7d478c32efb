// What a function needs, built once per isolate from its settings.

import type { Config } from './config.ts';
import { connect, type Sql } from './db.ts';
import { IdempotencyStore } from './idempotency.ts';
import { assertLeaseCoversStripe, createStripe, type Stripe } from './stripe.ts';
import { log, type Log } from './http.ts';

export interface Deps {
	config: Config;
	sql: Sql;
	store: IdempotencyStore;
	stripe: Stripe;
	log: Log;
	// Test only: stops the function at a named point so the crash tests can
	// kill its process exactly there (see pauseAt).
	pause: (point: string, info: Record<string, unknown>) => Promise<void>;
}

// EDGE_TEST_PAUSE=<point> makes pause(<point>) announce itself on stdout
// and never return; unset (always, in production) it returns at once.
function pauseAt(point: string, info: Record<string, unknown>): Promise<void> {
	if (Deno.env.get('EDGE_TEST_PAUSE') !== point) return Promise.resolve();
	console.log(JSON.stringify({ paused: point, ...info }));
	return new Promise(() => {});
}

export function createDeps(config: Config): Deps {
	assertLeaseCoversStripe(config.leaseSeconds, config.stripe);
	const sql = connect(config.databaseUrl, config.dbPoolSize);
	return {
		config,
		sql,
		store: new IdempotencyStore(sql, config.statementTimeoutMs),
		stripe: createStripe(config.stripe),
		log,
		pause: pauseAt,
	};
}
