import { CairnError, type ErrorCode } from '../../lib/errors.js';

interface PgLikeError {
  code?: string;
  constraint?: string;
  message?: string;
}

/** SQLSTATE classes that mean "the database is not there right now" rather than "your input is bad". */
const UNAVAILABLE = [/^08/, /^57P0[1-3]$/, /^53/, /^ECONNREFUSED$/, /^ECONNRESET$/, /^ETIMEDOUT$/, /^EPIPE$/, /^ENOTFOUND$/, /^EHOSTUNREACH$/];

function isUnavailable(err: PgLikeError): boolean {
  const code = err.code ?? '';
  if (UNAVAILABLE.some((re) => re.test(code))) return true;
  const msg = err.message ?? '';
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|Cannot use a pool after calling end|Query read timeout/i.test(msg);
}

/**
 * Translates a driver error into a domain error. `onUnique` names the code for a unique violation
 * on a given constraint, so each store decides what a duplicate means in its own terms.
 */
export function translateDbError(err: unknown, onUnique?: Readonly<Record<string, ErrorCode>>): unknown {
  if (err instanceof CairnError) {
    // The PostgreSQL pool's own query() already made a duplicate a generic conflict; the store names it.
    const constraint = err.code === 'conflict' ? (err.cause as PgLikeError | undefined)?.constraint : undefined;
    const named = constraint ? onUnique?.[constraint] : undefined;
    return named ? new CairnError(named, err.message, { cause: err.cause }) : err;
  }
  const e = (err ?? {}) as PgLikeError;
  if (e.code === '23505') {
    const code: ErrorCode = (e.constraint ? onUnique?.[e.constraint] : undefined) ?? 'conflict';
    return new CairnError(code, 'a record with the same key already exists', { cause: err });
  }
  if (isUnavailable(e)) return new CairnError('store_unavailable', 'the database is unavailable, retry later', { cause: err });
  // PostgreSQL text cannot hold NUL (22P05 / 22021) and rejects malformed values (22P02): the
  // client's input, not our fault, whichever field it came through.
  if (e.code === '22P05' || e.code === '22021' || (e.message ?? '').includes('invalid byte sequence') || (e.message ?? '').includes('\\u0000 cannot be converted')) {
    return new CairnError('invalid_request', 'text values must not contain NUL characters', { cause: err });
  }
  return err;
}

/** Wraps a store call so every driver error leaves the store as a domain error. */
export async function guard<T>(work: () => Promise<T>, onUnique?: Readonly<Record<string, ErrorCode>>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw translateDbError(err, onUnique);
  }
}
