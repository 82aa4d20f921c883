import { CairnError } from './errors.js';

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;

export interface Page<T> {
  readonly items: T[];
  /** Present when more items follow; pass back as pageToken. */
  readonly nextPageToken?: string;
}

export function pageSizeOf(requested: number | undefined): number {
  if (requested === undefined) return DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(requested) || requested < 1 || requested > MAX_PAGE_SIZE) {
    throw new CairnError('invalid_request', `pageSize must be an integer from 1 to ${MAX_PAGE_SIZE}`);
  }
  return requested;
}

/** Keyset cursors are opaque to clients: base64url JSON of the last row's sort key. */
export function encodePageToken(key: readonly (string | number)[]): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

export function decodePageToken(token: string | undefined, arity: number): (string | number)[] | undefined {
  if (token === undefined || token === '') return undefined;
  try {
    const key: unknown = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
    if (Array.isArray(key) && key.length === arity && key.every((k) => typeof k === 'string' || typeof k === 'number')) {
      return key as (string | number)[];
    }
  } catch {
    // fall through to the domain error
  }
  throw new CairnError('invalid_page_token', 'pageToken is not one this server issued');
}

/** Given limit+1 fetched rows, returns the page and the cursor for the next one. */
export function toPage<T>(rows: T[], limit: number, keyOf: (row: T) => (string | number)[]): Page<T> {
  if (rows.length <= limit) return { items: rows };
  const items = rows.slice(0, limit);
  return { items, nextPageToken: encodePageToken(keyOf(items[items.length - 1]!)) };
}
