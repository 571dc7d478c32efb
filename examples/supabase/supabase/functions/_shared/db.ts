// The database connection, safe behind a transaction-mode pooler (Supavisor on
// port 6543, pgbouncer): nothing is set for the session and no statement is
// prepared by name, because consecutive transactions of one client may run
// on different server connections.

import postgres from 'npm:postgres@3.4.9';

export type Sql = postgres.Sql;
export type Tx = postgres.TransactionSql;
// Values go to jsonb parameters with sql.json(): a JSON.stringify'd string
// would be encoded again, as a JSON string.
export type JSONValue = postgres.JSONValue;

export function connect(url: string, max: number): Sql {
	return postgres(url, {
		// Named prepared statements live on one server connection; the next
		// transaction may get another. With prepare: false postgres.js sends
		// unnamed statements (parameters still bound by the server).
		prepare: false,
		max,
		// An idle isolate may be frozen or shut down; do not hold connections.
		idle_timeout: 20,
		connect_timeout: 10,
		// The only startup parameter besides user and database: poolers refuse
		// most others (statement_timeout among them).
		connection: { application_name: 'edge-checkout' },
		onnotice: () => {},
	});
}

// fn in its own transaction, with a statement timeout that ends with it
// (SET LOCAL: a session SET would stay on the server connection for other
// clients of the pooler).
export async function inTransaction<T>(sql: Sql, timeoutMs: number, fn: (tx: Tx) => Promise<T>): Promise<T> {
	const result = await sql.begin(async (tx) => {
		await tx.unsafe(`SET LOCAL statement_timeout = ${Math.trunc(timeoutMs)}`);
		return await fn(tx);
	});
	return result as T;
}
