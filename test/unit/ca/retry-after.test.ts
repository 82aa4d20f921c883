import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { errorHandler } from '../../../ca/http/errors.js';
import { CairnError } from '../../../lib/errors.js';

describe('Retry-After on refusals that are about when, not what', () => {
  const app = Fastify({ logger: false });
  app.setErrorHandler(errorHandler);
  app.get('/limited', async () => {
    throw new CairnError('rate_limited', 'too many failed attempts', { details: { retryAfterSeconds: 41.2 } });
  });
  app.get('/db-down', async () => {
    throw new CairnError('store_unavailable', 'the database is unavailable, retry later');
  });
  app.get('/bad', async () => {
    throw new CairnError('invalid_request', 'no');
  });

  it('429 carries the limiter’s wait, 503 a short one, a 4xx about the input none', async () => {
    const limited = await app.inject({ url: '/limited' });
    expect([limited.statusCode, limited.headers['retry-after'], limited.json().code]).toEqual([429, '42', 'rate_limited']);
    const down = await app.inject({ url: '/db-down' });
    expect([down.statusCode, down.headers['retry-after'], down.json().code]).toEqual([503, '1', 'store_unavailable']);
    const bad = await app.inject({ url: '/bad' });
    expect([bad.statusCode, bad.headers['retry-after']]).toEqual([400, undefined]);
  });
});
