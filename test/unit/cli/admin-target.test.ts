import { describe, expect, it } from 'vitest';
import { resolveAdminTarget, type AdminTargetFlags, type RecordedAdminEndpoints } from '../../../cli/admin-target.js';
import { UsageError } from '../../../cli/flags.js';

const PIN = `sha256:${'a'.repeat(43)}`;
const OTHER = `sha256:${'B'.repeat(43)}`;
const DIR = '/home/u/.cairn';
const UP: RecordedAdminEndpoints = { caUrl: 'http://127.0.0.1:8080', caTlsUrl: 'https://127.0.0.1:8443', caPin: PIN };

const resolve = (flags: AdminTargetFlags, recorded: RecordedAdminEndpoints = {}, env: NodeJS.ProcessEnv = {}) => resolveAdminTarget(flags, DIR, recorded, env);

describe('where admin verbs send the token, and how they trust the server', () => {
  it('after cairn up: the TLS URL with the recorded pin', () => {
    expect(resolve({}, UP)).toEqual({ server: 'https://127.0.0.1:8443', serverSource: `caTlsUrl in ${DIR}/endpoints.json`, trust: { kind: 'pin', pin: PIN, source: `caPin in ${DIR}/endpoints.json` } });
  });

  it('flags beat the environment, which beats endpoints.json', () => {
    const env = { CAIRN_SERVER: 'https://ca.example:8443/', CAIRN_CA_PIN: OTHER };
    expect(resolve({}, UP, env)).toEqual({ server: 'https://ca.example:8443', serverSource: 'CAIRN_SERVER', trust: { kind: 'pin', pin: OTHER, source: 'CAIRN_CA_PIN' } });
    expect(resolve({ server: 'https://b.example:9443', 'ca-file': 'ca.pem' }, UP, env)).toEqual({ server: 'https://b.example:9443', serverSource: '--server', trust: { kind: 'file', file: 'ca.pem', source: '--ca-file' } });
    expect(resolve({ 'ca-pin': PIN }, UP, { CAIRN_CA_FILE: 'x.pem' }).trust).toEqual({ kind: 'pin', pin: PIN, source: '--ca-pin' });
    expect(resolve({}, UP, { CAIRN_CA_FILE: 'x.pem' }).trust).toEqual({ kind: 'file', file: 'x.pem', source: 'CAIRN_CA_FILE' });
  });

  it('an https server named without a pin uses the recorded pin, else the system roots (no trust given)', () => {
    expect(resolve({ server: 'https://ca.example:8443' }, UP).trust).toEqual({ kind: 'pin', pin: PIN, source: `caPin in ${DIR}/endpoints.json` });
    expect(resolve({ server: 'https://ca.example:8443' }).trust).toBeUndefined();
  });

  it('with nothing recorded: TLS on the default port when a pin or file is given, else loopback plain HTTP', () => {
    expect(resolve({ 'ca-pin': PIN })).toMatchObject({ server: 'https://127.0.0.1:8443', serverSource: 'the default' });
    expect(resolve({})).toEqual({ server: 'http://127.0.0.1:8080', serverSource: 'the default' });
    // an endpoints.json from before pins were recorded: its plain loopback URL
    expect(resolve({}, { caUrl: 'http://127.0.0.1:18080', caTlsUrl: 'https://127.0.0.1:18443' })).toEqual({ server: 'http://127.0.0.1:18080', serverSource: `caUrl in ${DIR}/endpoints.json` });
    expect(resolve({ 'ca-pin': OTHER }, { caUrl: 'http://127.0.0.1:18080', caTlsUrl: 'https://127.0.0.1:18443' }).server).toBe('https://127.0.0.1:18443');
  });

  it('plain HTTP carries no trust settings; one given on the command line is a mistake, one in the environment is ignored', () => {
    expect(() => resolve({ server: 'http://127.0.0.1:8080', 'ca-pin': PIN })).toThrow(/--ca-pin applies to an https server, but --server is http:\/\/127\.0\.0\.1:8080/);
    expect(() => resolve({ server: 'http://127.0.0.1:8080', 'ca-file': 'f' })).toThrow(UsageError);
    expect(resolve({ server: 'http://127.0.0.1:8080' }, UP, { CAIRN_CA_PIN: PIN })).toEqual({ server: 'http://127.0.0.1:8080', serverSource: '--server' });
  });

  it('refuses malformed or contradictory settings, naming the flag or variable', () => {
    expect(() => resolve({ 'ca-pin': 'sha256:short' })).toThrow(/^--ca-pin must be sha256:<43 base64url characters>/);
    expect(() => resolve({ 'ca-pin': `sha1:${'a'.repeat(43)}` })).toThrow(/--ca-pin must be/);
    expect(() => resolve({}, {}, { CAIRN_CA_PIN: 'nope' })).toThrow(/^CAIRN_CA_PIN must be/);
    expect(() => resolve({ 'ca-pin': PIN, 'ca-file': 'f' })).toThrow(/--ca-pin and --ca-file are alternatives/);
    expect(() => resolve({}, {}, { CAIRN_CA_PIN: PIN, CAIRN_CA_FILE: 'f' })).toThrow(/CAIRN_CA_PIN and CAIRN_CA_FILE are both set/);
    expect(() => resolve({ server: 'ftp://ca.example' })).toThrow(/--server must be an https:\/\/ .*got "ftp:\/\/ca\.example"/);
    expect(() => resolve({ server: 'ca.example:8443' })).toThrow(/--server must be/);
    // a malformed pin in endpoints.json is not used
    expect(resolve({}, { ...UP, caPin: 'junk' })).toEqual({ server: 'http://127.0.0.1:8080', serverSource: `caUrl in ${DIR}/endpoints.json` });
  });
});
