// What the tests need from outside: where the database is, directly and
// through the pooler. test/suites/62-edge-deno.sh sets both; never fall
// back to defaults that could name a real server.

function need(name: string): string {
	const v = Deno.env.get(name);
	if (!v) throw new Error(`set ${name} (test/suites/62-edge-deno.sh does): a throwaway database with the migration applied`);
	return v;
}

// As the functions' login role, through pgbouncer in transaction mode.
export const FUNCTIONS_DB_URL = need('EDGE_FUNCTIONS_DB_URL');
// As a superuser, directly: for setting up carts and counting side effects.
export const TEST_DB_URL = need('EDGE_TEST_DB_URL');

export const JWT_SECRET = 'test-jwt-secret-at-least-32-characters-long';
export const LEASE_SECONDS = 5;
export const WEBHOOK_LEASE_SECONDS = 3;
