import { loadNativeAddon } from '../../lib/native-addon.js';

export type EcCurve = 'P-256' | 'P-384';
export type EcdsaHash = 'sha256' | 'sha384' | 'sha512';

interface Addon {
  verify(curve: EcCurve, point: Buffer, hash: EcdsaHash, data: Buffer, signature: Buffer): boolean;
}

/**
 * The native ECDSA check (native/ecdsa.c: why it exists and what it validates). Loaded once per
 * thread when this module is imported, so a missing build fails at start-up, not on the first CSR.
 */
const addon = loadNativeAddon<Addon>('cairn_ecdsa');

/**
 * True when `signature` (DER) is `data`'s ECDSA signature under the encoded point (SEC 1, compressed
 * or uncompressed). A point off the curve, the point at infinity or a non-DER signature is false.
 */
export function verifyEcdsa(curve: EcCurve, point: Buffer, hash: EcdsaHash, data: Buffer, signature: Buffer): boolean {
  return addon.verify(curve, point, hash, data, signature);
}
