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
	// kill its process exactly there, or let it go on later (see pauseAt).
	pause: (point: string, info: Record<string, unknown>) => Promise<void>;
}

// EDGE_TEST_PAUSE=<point> makes pause(<point>) announce itself on stdout
// and wait until the process gets SIGUSR1 (or is killed); unset (always, in
// production) it returns at once.
function pauseAt(point: string, info: Record<string, unknown>): Promise<void> {
	if (Deno.env.get('EDGE_TEST_PAUSE') !== point) return Promise.resolve();
	return new Promise((resolve) => {
		const go = () => {
			Deno.removeSignalListener('SIGUSR1', go);
			resolve();
		};
		Deno.addSignalListener('SIGUSR1', go);
		console.log(JSON.stringify({ paused: point, ...info }));
	});
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
