// Responses, logs and the request body, the same for every function.

export const corsHeaders: Record<string, string> = {
	'Access-Control-Allow-Origin': '*',
	'Access-Control-Allow-Headers': 'authorization, x-client-info, apikey, content-type',
	'Access-Control-Allow-Methods': 'POST, OPTIONS',
};

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
	return new Response(JSON.stringify(body), {
		status,
		headers: { 'Content-Type': 'application/json', ...corsHeaders, ...headers },
	});
}

export function errorReply(status: number, type: string, message: string, headers: Record<string, string> = {}): Response {
	return json(status, { error: { type, message } }, headers);
}

export function retryLater(message: string, seconds = 1): Response {
	return errorReply(503, 'retry', message, { 'Retry-After': String(seconds) });
}

type Fields = Record<string, unknown>;
// One JSON object per line, as Supabase's function logs show them.
export const log = {
	info: (msg: string, fields: Fields = {}) => console.log(JSON.stringify({ level: 'info', msg, ...fields })),
	warn: (msg: string, fields: Fields = {}) => console.warn(JSON.stringify({ level: 'warn', msg, ...fields })),
	error: (msg: string, fields: Fields = {}) => console.error(JSON.stringify({ level: 'error', msg, ...fields })),
};
export type Log = typeof log;

export class BadRequest extends Error {}

const MAX_BODY = 64 * 1024;

export async function readJson(req: Request): Promise<unknown> {
	const text = await req.text();
	if (text.length > MAX_BODY) throw new BadRequest('body too large');
	try {
		return JSON.parse(text);
	} catch {
		throw new BadRequest('body is not JSON');
	}
}

// Deno.serve with what every function needs: CORS preflight, POST only, a
// 500 for anything unexpected. The port and the "listening" line matter only
// where the function runs as its own process (tests, `deno run`); Supabase's
// runtime routes requests to the handler itself.
export function serve(name: string, handler: (req: Request) => Promise<Response>): void {
	Deno.serve({
		port: Number(Deno.env.get('PORT') ?? 8000),
		hostname: Deno.env.get('HOST') ?? '127.0.0.1',
		onListen: ({ port }) => console.log(JSON.stringify({ listening: port, function: name })),
	}, async (req) => {
		if (req.method === 'OPTIONS') return new Response(null, { status: 204, headers: corsHeaders });
		if (req.method !== 'POST') return errorReply(405, 'method_not_allowed', 'POST only');
		try {
			return await handler(req);
		} catch (err) {
			if (err instanceof BadRequest) return errorReply(400, 'invalid_request', err.message);
			log.error(`${name} failed`, { message: (err as Error).message, stack: (err as Error).stack });
			return errorReply(500, 'internal', 'internal error');
		}
	});
}
