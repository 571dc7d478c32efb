'use strict';
// src/server.js as a child process, so a test can SIGKILL it mid-request.

const path = require('node:path');
const { fork } = require('node:child_process');

const SERVER = path.join(__dirname, '..', '..', 'src', 'server.js');

function startChild(env) {
	const child = fork(SERVER, [], { env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
	let output = '';
	child.stdout.on('data', (d) => { output += d; });
	child.stderr.on('data', (d) => { output += d; });
	const messages = [];
	const waiters = [];
	child.on('message', (m) => {
		messages.push(m);
		for (const w of waiters.splice(0)) w();
	});
	let exited = false;
	child.on('exit', () => {
		exited = true;
		for (const w of waiters.splice(0)) w();
	});

	// Resolve with the first IPC message that has `field`, within timeoutMs.
	async function waitFor(field, timeoutMs = 10000) {
		const until = Date.now() + timeoutMs;
		for (;;) {
			const m = messages.find((x) => x && x[field] !== undefined);
			if (m) return m[field];
			if (exited) throw new Error(`child exited before sending ${field}:\n${output}`);
			if (Date.now() > until) throw new Error(`no ${field} from child within ${timeoutMs} ms:\n${output}`);
			await new Promise((r) => {
				waiters.push(r);
				setTimeout(r, 100);
			});
		}
	}

	async function kill() {
		if (exited) return;
		const gone = new Promise((r) => child.once('exit', r));
		child.kill('SIGKILL');
		await gone;
	}

	return { child, waitFor, kill, output: () => output };
}

module.exports = { startChild };
