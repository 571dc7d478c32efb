// A child process whose stdout lines the tests can wait for (a "listening"
// line, a "paused" line, a log message), and kill.

export interface Proc {
	lines: string[];
	// The first line (JSON lines parsed) for which pick returns a value, within timeoutMs.
	waitFor<T>(pick: (line: string, parsed: Record<string, unknown> | null) => T | undefined, what: string, timeoutMs?: number): Promise<T>;
	kill(): Promise<void>;
	signal(sig: Deno.Signal): void;
	exited: boolean;
	output(): string;
}

function parse(line: string): Record<string, unknown> | null {
	try {
		const v = JSON.parse(line);
		return v && typeof v === 'object' ? v : null;
	} catch {
		return null;
	}
}

export function spawn(cmd: string, args: string[], opts: { env?: Record<string, string>; cwd?: string } = {}): Proc {
	const child = new Deno.Command(cmd, { args, env: opts.env, cwd: opts.cwd, stdin: 'null', stdout: 'piped', stderr: 'piped' }).spawn();
	const lines: string[] = [];
	let waiters: Array<() => void> = [];
	const wake = () => {
		for (const w of waiters.splice(0)) w();
	};
	const proc: Proc = {
		lines,
		exited: false,
		output: () => lines.join('\n'),
		async waitFor(pick, what, timeoutMs = 15000) {
			const until = Date.now() + timeoutMs;
			for (let seen = 0; ;) {
				for (; seen < lines.length; seen++) {
					const v = pick(lines[seen], parse(lines[seen]));
					if (v !== undefined) return v;
				}
				if (proc.exited) throw new Error(`${cmd} exited before ${what}:\n${proc.output()}`);
				const left = until - Date.now();
				if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms:\n${proc.output()}`);
				await new Promise<void>((r) => {
					const t = setTimeout(r, left);
					waiters.push(() => {
						clearTimeout(t);
						r();
					});
				});
			}
		},
		signal(sig) {
			child.kill(sig);
		},
		async kill() {
			if (!proc.exited) {
				try {
					child.kill('SIGKILL');
				} catch {
					// already gone
				}
			}
			await done;
		},
	};
	const pump = async (stream: ReadableStream<Uint8Array>) => {
		let rest = '';
		for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
			const parts = (rest + chunk).split('\n');
			rest = parts.pop() ?? '';
			lines.push(...parts);
			wake();
		}
		if (rest) lines.push(rest);
	};
	const done = Promise.all([pump(child.stdout), pump(child.stderr), child.status]).then(() => {
		proc.exited = true;
		wake();
	});
	return proc;
}
