// Per test file: the fake Stripe and the functions the file needs, started
// once and stopped at the end; and waiting for a condition within a bound.

import { type Fake, startFake } from './fake.ts';
import { type Fn, type FunctionName, startFunction } from './functions.ts';
import { db } from './db.ts';

export interface Stack {
	fake: Fake;
	fn: Record<string, Fn>;
}

export function useStack(names: FunctionName[]): Stack {
	const stack = { fn: {} } as Stack;
	Deno.test.beforeAll(async () => {
		stack.fake = await startFake();
		await Promise.all(names.map(async (n) => {
			stack.fn[n] = await startFunction(n, stack.fake);
		}));
	});
	Deno.test.afterAll(async () => {
		await Promise.all(Object.values(stack.fn).map((f) => f.kill()));
		await stack.fake?.close();
		await db.end();
	});
	return stack;
}

// A test with child processes and sockets that outlive single tests.
export function it(name: string, fn: () => Promise<void>): void {
	Deno.test({ name, fn, sanitizeResources: false, sanitizeOps: false });
}

// Resolves once check() returns a value other than undefined/false; polled
// every 25 ms, fails after timeoutMs.
export async function until<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 15000): Promise<T> {
	const end = Date.now() + timeoutMs;
	for (;;) {
		const v = await check();
		if (v !== undefined && v !== false) return v as T;
		if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
		await new Promise((r) => setTimeout(r, 25));
	}
}

export function guestBody(id: string, { email = 'guest@example.com', items }: { email?: string; items?: unknown[] } = {}) {
	return {
		checkoutSessionId: id,
		email,
		cart: { currency: 'eur', items: items ?? [{ name: 'Espresso beans 1kg', unitAmount: 2400, quantity: 2 }] },
	};
}

// A signed-in customer: a user id and a Stripe customer.
export function customer() {
	return { userId: crypto.randomUUID(), stripeCustomer: 'cus_' + crypto.randomUUID().replace(/-/g, '').slice(0, 14) };
}

export const UUID_TAIL = '[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}';
