import { describe, expect, it } from 'vitest';
import { guard, translateDbError } from '../../../ca/db/errors.js';
import { CairnError } from '../../../lib/errors.js';

/** What node-postgres throws for a duplicate key. */
const duplicate = (constraint: string) => Object.assign(new Error(`duplicate key value violates unique constraint "${constraint}"`), { code: '23505', constraint });

describe('database errors', () => {
  it('a duplicate becomes the code the store names for the constraint, else conflict', () => {
    expect((translateDbError(duplicate('admin_tokens_name_key'), { admin_tokens_name_key: 'admin_exists' }) as CairnError).code).toBe('admin_exists');
    expect((translateDbError(duplicate('other_key'), { admin_tokens_name_key: 'admin_exists' }) as CairnError).code).toBe('conflict');
  });

  // The PostgreSQL pool guards its own query() (without the store's names) before the store's guard
  // sees the error: the store's name must still win, or `admin create` of an existing name is a bare
  // 409 conflict on PostgreSQL and admin_exists on the embedded store.
  it('a duplicate already made a generic conflict by the pool still gets the store\'s code', async () => {
    const pool = { query: () => guard(() => Promise.reject(duplicate('admin_tokens_name_key'))) };
    const err = await guard(() => pool.query(), { admin_tokens_name_key: 'admin_exists' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CairnError);
    expect((err as CairnError).code).toBe('admin_exists');
    expect(((err as CairnError).cause as { constraint: string }).constraint).toBe('admin_tokens_name_key');
    const other = await guard(() => pool.query(), { something_else: 'admin_exists' }).catch((e: unknown) => e);
    expect((other as CairnError).code).toBe('conflict');
  });
});
