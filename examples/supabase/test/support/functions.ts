// One edge function as its own Deno process (as the edge runtime runs each
// function in its own isolate), configured against the fake Stripe and the
// database through the pooler, on a free port.

import { spawn, type Proc } from './process.ts';
import { type Fake, WEBHOOK_SECRET } from './fake.ts';
import { FUNCTIONS_DB_URL, JWT_SECRET, LEASE_SECONDS, WEBHOOK_LEASE_SECONDS } from './env.ts';

const ROOT = new URL('../../', import.meta.url).pathname;

export type FunctionName = 'enhanced-checkout' | 'guest-checkout' | 'stripe-webhook';

export interface Fn {
	name: FunctionName;
	url: string;
	proc: Proc;
	post(body: unknown, headers?: Record<string, string>): Promise<Reply>;
	// stdout/stderr lines parsed as JSON (the function's log lines).
	logs(): Record<string, unknown>[];
	kill(): Promise<void>;
}

export interface Reply {
	status: number;
	headers: Headers;
	body: Record<string, unknown>;
}

export async function postJSON(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
	const res = await fetch(url, {
		method: 'POST',
		headers: { 'Content-Type': 'application/json', ...headers },
		body: typeof body === 'string' ? body : JSON.stringify(body),
	});
	return { status: res.status, headers: res.headers, body: await res.json() };
}

// Settings: the fake Stripe, a 5 s lease (crash tests wait seconds), an SDK
// worst case of 2 x 2000 ms + 500 ms inside it, as the function checks.
export async function startFunction(name: FunctionName, fake: Fake, extraEnv: Record<string, string> = {}): Promise<Fn> {
	const env: Record<string, string> = {
		CHECKOUT_DB_URL: FUNCTIONS_DB_URL,
		SUPABASE_JWT_SECRET: JWT_SECRET,
		STRIPE_SECRET_KEY: 'sk_test_edge',
		STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
		STRIPE_HOST: '127.0.0.1',
		STRIPE_PORT: String(fake.port),
		STRIPE_PROTOCOL: 'http',
		STRIPE_TIMEOUT_MS: '2000',
		STRIPE_MAX_NETWORK_RETRIES: '1',
		CHECKOUT_LEASE_SECONDS: String(LEASE_SECONDS),
		WEBHOOK_LEASE_SECONDS: String(WEBHOOK_LEASE_SECONDS),
		CHECKOUT_SUCCESS_URL: 'https://shop.test/success?session_id={CHECKOUT_SESSION_ID}',
		CHECKOUT_CANCEL_URL: 'https://shop.test/cart',
		DB_POOL_SIZE: '10',
		HOST: '127.0.0.1',
		PORT: '0',
		...extraEnv,
	};
	const proc = spawn(Deno.execPath(), [
		'run', '--frozen', '--allow-net', '--allow-env', '--allow-read',
		`supabase/functions/${name}/index.ts`,
	], { env, cwd: ROOT });
	const port = await proc.waitFor((_, j) => (j && typeof j.listening === 'number' ? j.listening : undefined), `${name} listening`, 30000);
	const url = `http://127.0.0.1:${port}/`;
	return {
		name,
		url,
		proc,
		post: (body, headers) => postJSON(url, body, headers),
		logs: () => proc.lines.map((l) => {
			try {
				return JSON.parse(l);
			} catch {
				return null;
			}
		}).filter((x) => x && typeof x === 'object'),
		kill: () => proc.kill(),
	};
}

// What a well-behaved client (or Stripe) does: retry 409/503 after
// Retry-After, within a deadline. Returns the final answer and all answers.
export async function postUntilSettled(url: string, body: unknown, headers: Record<string, string> = {}, deadlineMs = 20000) {
	const seen: Reply[] = [];
	const until = Date.now() + deadlineMs;
	for (;;) {
		const r = await postJSON(url, body, headers);
		seen.push(r);
		if (r.status !== 409 && r.status !== 503) return { final: r, seen };
		if (Date.now() > until) throw new Error(`still ${r.status} after ${deadlineMs} ms`);
		const wait = Number(r.headers.get('retry-after') || 1) * 1000;
		await new Promise((res) => setTimeout(res, Math.min(wait, Math.max(0, until - Date.now()))));
	}
}
