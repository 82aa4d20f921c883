import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, realpathSync } from 'node:fs';
import { isAbsolute, join, relative, sep } from 'node:path';
import { CairnError } from '../../lib/errors.js';

/** A certificate chain or key larger than this is not one (and is never read whole). */
export const WEB_FILE_MAX_BYTES = 256 * 1024;

/** An operator-supplied certificate and key, as read and checked (https_web, OIDC over https). */
export interface WebKeyPair {
  /** PEM, the leaf first and any intermediates after it, as in the file. */
  readonly cert: string;
  readonly key: string;
  /** sha256 of both files' bytes: what changes when either is replaced. */
  readonly digest: string;
  /** sha256 fingerprint of the leaf (uppercase hex with colons, as openssl prints it). */
  readonly fingerprint: string;
  readonly notAfter: Date;
}

/**
 * The one directory where the operator puts certificates and keys for https_web bundle endpoints
 * (`ca start --web-cert-dir`, CAIRN_WEB_CERT_DIR; none by default). Admins name files in it; this
 * is what keeps an admin credential from being a way to read host files: a name outside it (absolute
 * elsewhere, `..`, a symlink whose target leaves it) gets one generic refusal, decided without
 * opening the file and without telling whether it exists. Inside it, missing or bad files are
 * reported plainly: the directory is there for this.
 */
export class WebCertDir {
  /** The directory's real path; undefined when the operator configured none. */
  readonly root: string | undefined;

  /** Throws (a start-up error) when the directory is configured but is not one. */
  constructor(readonly configured: string | undefined) {
    if (configured === undefined || configured === '') {
      this.root = undefined;
      return;
    }
    let root: string;
    try {
      root = realpathSync(configured);
    } catch (err) {
      throw new Error(`--web-cert-dir ${configured}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (err as Error).message}`);
    }
    if (!lstatSync(root).isDirectory()) throw new Error(`--web-cert-dir ${configured} is not a directory`);
    this.root = root;
  }

  /** Reads and checks a certificate (chain) and its key: both in the directory, the key the certificate's. */
  loadPair(certFile: string, keyFile: string): WebKeyPair {
    const certBytes = this.read(certFile, 'bundleEndpointCert');
    const keyBytes = this.read(keyFile, 'bundleEndpointKey');
    const cert = certBytes.toString('utf8');
    const blocks = cert.match(/-----BEGIN ([A-Z0-9 ]+)-----/g) ?? [];
    if (blocks.length === 0 || blocks.some((b) => b !== '-----BEGIN CERTIFICATE-----')) {
      throw new CairnError('web_certificate_invalid', `bundleEndpointCert ${certFile} must hold PEM certificates only (the server certificate first, then its intermediates)`);
    }
    let leaf: X509Certificate;
    try {
      leaf = new X509Certificate(cert);
    } catch {
      throw new CairnError('web_certificate_invalid', `bundleEndpointCert ${certFile} is not a readable PEM certificate`);
    }
    // The parser's message never carries the key's bytes, but none of it is passed on anyway.
    let key: ReturnType<typeof createPrivateKey>;
    try {
      key = createPrivateKey(keyBytes);
    } catch {
      throw new CairnError('web_certificate_invalid', `bundleEndpointKey ${keyFile} is not an unencrypted PEM private key`);
    }
    if (!leaf.checkPrivateKey(key)) throw new CairnError('web_certificate_invalid', `bundleEndpointKey ${keyFile} is not the key of the certificate in ${certFile}`);
    return {
      cert,
      key: keyBytes.toString('utf8'),
      digest: createHash('sha256').update(certBytes).update(keyBytes).digest('hex'),
      fingerprint: leaf.fingerprint256,
      notAfter: new Date(leaf.validTo),
    };
  }

  /** The real path of an admin-named file, checked one component at a time from the directory down. */
  private resolve(name: string, field: string): string {
    const root = this.root;
    if (root === undefined) {
      throw new CairnError('web_certificate_file_not_allowed', `this CA serves no operator certificate until its operator names a directory for them (ca start --web-cert-dir, CAIRN_WEB_CERT_DIR); ${field} is refused`);
    }
    const refuse = (): CairnError =>
      new CairnError('web_certificate_file_not_allowed', `${field} must name a file in the CA's web certificate directory (a name relative to it, without ..)`);
    if (name === '' || name.length > 1024 || /[\0\\]/.test(name)) throw refuse();
    let rel = name;
    if (isAbsolute(name)) {
      const under = [this.configured!, root].map((dir) => relative(dir, name)).find((r) => r !== '' && !r.startsWith('..') && !isAbsolute(r));
      if (under === undefined) throw refuse();
      rel = under;
    }
    const parts = rel.split(/\/+/).filter((p) => p !== '' && p !== '.');
    if (parts.length === 0 || parts.includes('..')) throw refuse();
    let current = root;
    for (const part of parts) {
      const next = join(current, part);
      let isLink: boolean;
      try {
        isLink = lstatSync(next).isSymbolicLink();
      } catch {
        throw new CairnError('web_certificate_invalid', `${field} ${name}: no such file in the CA's web certificate directory`);
      }
      if (!isLink) {
        current = next;
        continue;
      }
      // a link is followed only to a target inside the directory; a dangling one is refused like one that leaves it
      let target: string;
      try {
        target = realpathSync(next);
      } catch {
        throw refuse();
      }
      if (target !== root && !target.startsWith(root + sep)) throw refuse();
      current = target;
    }
    return current;
  }

  private read(name: string, field: string): Buffer {
    const path = this.resolve(name, field);
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch {
      throw new CairnError('web_certificate_invalid', `${field} ${name} cannot be read by the CA`);
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new CairnError('web_certificate_invalid', `${field} ${name} is not a regular file`);
      if (st.size > WEB_FILE_MAX_BYTES) throw new CairnError('web_certificate_invalid', `${field} ${name} is larger than ${WEB_FILE_MAX_BYTES} bytes`);
      const buf = Buffer.alloc(st.size);
      let at = 0;
      while (at < buf.length) {
        const n = readSync(fd, buf, at, buf.length - at, at);
        if (n === 0) break;
        at += n;
      }
      return buf.subarray(0, at);
    } finally {
      closeSync(fd);
    }
  }
}
