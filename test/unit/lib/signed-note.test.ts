import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkpointText, noteKeyId, openNote, parseCheckpoint, parseVerifierKey, rawEd25519, signNote, verifierKey } from '../../../lib/signed-note.js';
import { canonicalJson } from '../../../lib/canonical-json.js';

// golang.org/x/mod/sumdb/note's documented example (Ed25519 signatures are deterministic).
const VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const SEED = Buffer.from('AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz', 'base64').subarray(1);
const TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const NOTE = `${TEXT}\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`;
const peter = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), SEED]), format: 'der', type: 'pkcs8' });

describe('C2SP signed-note', () => {
  it('signs the Go reference note byte for byte and derives its verifier key', () => {
    expect(signNote(TEXT, 'PeterNeumann', peter)).toBe(NOTE);
    expect(verifierKey('PeterNeumann', rawEd25519(peter))).toBe(VKEY);
    expect(noteKeyId('PeterNeumann', rawEd25519(peter)).toString('hex')).toBe('c74f20a3');
  });

  it('opens the reference note, and refuses an altered text, another key or a mangled vkey', () => {
    expect(openNote(NOTE, VKEY)).toBe(TEXT);
    expect(() => openNote(NOTE.replace('cryptography', 'cryptographY'), VKEY)).toThrow(/does not verify/);
    const other = verifierKey('PeterNeumann', rawEd25519(generateKeyPairSync('ed25519').privateKey));
    expect(() => openNote(NOTE, other)).toThrow(/no signature/);
    expect(() => parseVerifierKey(VKEY.replace('c74f20a3', 'c74f20a4'))).toThrow(/id does not match/);
    expect(() => openNote(NOTE.replace('\u2014 ', '-- '), VKEY)).toThrow(/em dash/);
    // a key whose base64 holds a '+' (transparency-dev/formats' test key) still parses
    expect(parseVerifierKey('TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6')).toMatchObject({ name: 'TEST' });
  });

  it('round-trips a checkpoint and refuses malformed ones', () => {
    const root = Buffer.alloc(32, 7);
    const text = checkpointText({ origin: 'ca.example.org/cairn/audit', size: 12, root });
    expect(text).toBe(`ca.example.org/cairn/audit\n12\n${root.toString('base64')}\n`);
    expect(parseCheckpoint(text)).toEqual({ origin: 'ca.example.org/cairn/audit', size: 12, root });
    expect(() => parseCheckpoint(text.replace('\n12\n', '\n012\n'))).toThrow(/malformed/);
    expect(() => parseCheckpoint(text.replace(root.toString('base64'), 'AAAA'))).toThrow(/malformed/);
    expect(() => signNote(text, 'has space', peter)).toThrow(TypeError);
  });
});

describe('canonical JSON', () => {
  it('sorts keys at every depth, drops undefined, no whitespace, UTF-8 text as is', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: null, y: true }], c: 'é\u2014"' }, u: undefined })).toBe('{"a":{"c":"é\u2014\\"","d":[2,{"y":true,"z":null}]},"b":1}');
    expect(() => canonicalJson({ n: Number.NaN })).toThrow(TypeError);
  });
});
