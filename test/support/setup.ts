import 'reflect-metadata';
import { afterAll, expect } from 'vitest';
import { allLogText, SECRET_PATTERNS } from './logs.js';

// No secret (admin token, one-time token, private key) may reach any log line or stderr a test file
// produced, whatever the test was about.
afterAll(() => {
  const text = allLogText();
  for (const re of SECRET_PATTERNS) {
    const hit = re.exec(text);
    expect(hit ? text.slice(Math.max(0, hit.index - 200), hit.index + 80) : undefined, `a secret (${re.source}) reached the logs`).toBeUndefined();
  }
});
