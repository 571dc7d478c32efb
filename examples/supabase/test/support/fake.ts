// examples/node-checkout/fake-stripe/server.js as a child process (Node),
// driven through its control API: counts, faults, signed webhook events.

import { spawn, type Proc } from './process.ts';

const FAKE = new URL('../../../node-checkout/fake-stripe/server.js', import.meta.url).pathname;
export const WEBHOOK_SECRET = 'whsec_test_edge_functions';

export interface FakeRequest {
	key: string | null;
	outcome: string;
}

export interface FakeState {
	created: number;
	sessions: string[];
	requests: FakeRequest[];
	executing: number;
	faults: number;
	events: number;
	// GETs of the session list (what a reconcile asks), and their faults to come.
	lists: { query: Record<string, string>; outcome: string }[];
	listFaults: number;
}

export interface SignedEvent {
	event: { id: string; type: string; data: { object: { id: string } } };
	payload: string;
	signature: string;
}

export class Fake {
	constructor(private proc: Proc, readonly port: number) {}

	private async control<T>(method: string, path: string, body?: unknown): Promise<T> {
		const res = await fetch(`http://127.0.0.1:${this.port}/_fake/${path}`, {
			method,
			body: body === undefined ? undefined : JSON.stringify(body),
		});
		const out = await res.json();
		if (!res.ok) throw new Error(`fake ${method} ${path}: ${res.status} ${JSON.stringify(out)}`);
		return out as T;
	}

	state(): Promise<FakeState> {
		return this.control('GET', 'state');
	}

	// Sessions created so far: the number that must not grow twice.
	async created(): Promise<number> {
		return (await this.state()).created;
	}

	// on: 'list' sends the fault to the next GETs of the session list instead.
	fault(kind: 'delay' | '500' | 'drop' | 'card_declined', opts: { times?: number; ms?: number; on?: 'create' | 'list' } = {}): Promise<unknown> {
		return this.control('POST', 'faults', { kind, ...opts });
	}

	// Time passes at Stripe: sessions were created `seconds` earlier, and the
	// keys it saw more than 24 hours ago are forgotten (returned).
	async age(seconds: number): Promise<string[]> {
		return (await this.control<{ forgotten: string[] }>('POST', 'age', { seconds })).forgotten;
	}

	completeSession(sessionId: string): Promise<SignedEvent> {
		return this.control('POST', `sessions/${sessionId}/complete`);
	}

	// A redelivery of the event (signed now), or one signed with another secret.
	signEvent(eventId: string, opts: { secret?: string } = {}): Promise<{ payload: string; signature: string }> {
		return this.control('POST', `events/${eventId}/sign`, opts);
	}

	close(): Promise<void> {
		return this.proc.kill();
	}
}

export async function startFake(): Promise<Fake> {
	const proc = spawn('node', [FAKE], { env: { FAKE_STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET } });
	const port = await proc.waitFor((l) => {
		const m = l.match(/^fake Stripe on http:\/\/127\.0\.0\.1:(\d+)$/);
		return m ? Number(m[1]) : undefined;
	}, 'fake Stripe listening line');
	return new Fake(proc, port);
}
