// The signed-in user behind a request: the Supabase access token (a JWT in
// `Authorization: Bearer ...`) verified with the project's JWT secret
// (HS256, SUPABASE_JWT_SECRET). Verified here, not only by the platform's
// verify_jwt gate, because the user id decides whose saved cart is checked
// out. Projects on asymmetric signing keys verify against their JWKS instead
// (supabase.auth.getClaims()); the rest of the function stays the same.

const encoder = new TextEncoder();

function base64urlDecode(s: string): Uint8Array<ArrayBuffer> {
	const b64 = s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4);
	const bin = atob(b64);
	const out = new Uint8Array(bin.length);
	for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
	return out;
}

function decodeJson(part: string): Record<string, unknown> | null {
	try {
		const v = JSON.parse(new TextDecoder().decode(base64urlDecode(part)));
		return v && typeof v === 'object' ? v : null;
	} catch {
		return null;
	}
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

// The user id (the token's `sub`) of a valid, unexpired token of an
// authenticated user; null for anything else (missing, malformed, forged,
// expired, the anon key).
export async function verifiedUserId(req: Request, secret: string | null): Promise<string | null> {
	if (!secret) return null;
	const m = (req.headers.get('authorization') || '').match(/^Bearer ([\w-]+)\.([\w-]+)\.([\w-]+)$/);
	if (!m) return null;
	const [, h, p, s] = m;
	const header = decodeJson(h);
	if (!header || header.alg !== 'HS256') return null;
	const key = await crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
	let sig: Uint8Array<ArrayBuffer>;
	try {
		sig = base64urlDecode(s);
	} catch {
		return null;
	}
	if (!(await crypto.subtle.verify('HMAC', key, sig, encoder.encode(`${h}.${p}`)))) return null;
	const claims = decodeJson(p);
	if (!claims || claims.role !== 'authenticated') return null;
	if (typeof claims.exp !== 'number' || claims.exp * 1000 <= Date.now()) return null;
	return typeof claims.sub === 'string' && UUID.test(claims.sub) ? claims.sub : null;
}
