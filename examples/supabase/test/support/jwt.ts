// Supabase-style access tokens (HS256) for the signed-in tests.

import { JWT_SECRET } from './env.ts';

const b64url = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const enc = (v: unknown) => b64url(new TextEncoder().encode(JSON.stringify(v)));

export async function accessToken(userId: string, { secret = JWT_SECRET, role = 'authenticated', expiresIn = 3600 } = {}): Promise<string> {
	const head = enc({ alg: 'HS256', typ: 'JWT' });
	const body = enc({ sub: userId, role, aud: 'authenticated', exp: Math.floor(Date.now() / 1000) + expiresIn });
	const key = await crypto.subtle.importKey('raw', new TextEncoder().encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
	const sig = new Uint8Array(await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(`${head}.${body}`)));
	return `${head}.${body}.${b64url(sig)}`;
}

export async function bearer(userId: string, opts = {}): Promise<Record<string, string>> {
	return { Authorization: `Bearer ${await accessToken(userId, opts)}` };
}
