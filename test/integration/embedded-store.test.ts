import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openEmbedded } from '../../ca/db/embedded.js';

describe('the embedded store (PGlite) is sized for one CA process', () => {
  it('a 16 MB buffer pool and shared memory for 10 connections, not PostgreSQL\'s 128 MB and 100, on a new and a reopened database', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-embedded-'));
    try {
      for (const round of ['new', 'reopened']) {
        const db = await openEmbedded(join(dir, 'pgdata'));
        try {
          const settings = await db.query<{ name: string; setting: string; unit: string | null }>("SELECT name, setting, unit FROM pg_settings WHERE name IN ('shared_buffers', 'max_connections') ORDER BY name");
          expect(settings.rows, round).toEqual([
            { name: 'max_connections', setting: '10', unit: null },
            { name: 'shared_buffers', setting: '2048', unit: '8kB' },
          ]);
        } finally {
          await db.close();
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
