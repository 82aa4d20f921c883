import type { TestCa } from './ca.js';

/** A JSON call against a test CA's plain listener (loopback) with the given bearer secret. */
export async function callAs(ca: TestCa, token: string | undefined, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(ca.url + path, {
    method,
    headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  // text/plain answers (the audit log's signed checkpoint) come back as the text
  const json = (res.headers.get('content-type') ?? '').includes('json');
  return { status: res.status, body: text ? (json ? JSON.parse(text) : text) : undefined };
}

/** Creates a named admin credential with the bootstrap credential; returns its secret. */
export async function createAdmin(ca: TestCa, body: { name: string; role: string; trustDomains?: string[]; ttlSeconds?: number }): Promise<string> {
  const res = await callAs(ca, ca.adminToken, 'POST', '/v1/admins', body);
  if (res.status !== 201) throw new Error(`creating admin ${body.name}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.token as string;
}

/** A route pattern with its parameters filled in. */
export function pathOf(url: string, params: Record<string, string>): string {
  return url.replace(/:([A-Za-z]+)/g, (_m, name: string) => encodeURIComponent(params[name] ?? 'x'));
}

/**
 * The newest admin record (`admin.action` / `admin.auth_failed` log line) after `from` that `match`
 * accepts, waiting for it: records are written when the response has gone out, so the client can
 * read the logs before its own request's record is there.
 */
export async function recordOf(ca: Pick<TestCa, 'logs'>, event: 'admin.action' | 'admin.auth_failed', match: (r: Record<string, any>) => boolean, from = 0): Promise<Record<string, any>> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const found = ca.logs().slice(from).split('\n').filter((l) => l.includes(`"${event}"`)).map((l) => JSON.parse(l) as Record<string, any>).filter(match).pop();
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no ${event} record matching ${match.toString()} in the logs`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
