import { createHash } from 'node:crypto';

/**
 * RFC 6962 §2.1 / RFC 9162 §2.1 Merkle trees, as Certificate Transparency and C2SP tlogs use them:
 * leaf = SHA-256(0x00 ‖ d), node = SHA-256(0x01 ‖ left ‖ right), the left subtree holding the
 * largest power of two strictly smaller than n leaves. Pure functions, shared by the CA (which
 * keeps every complete subtree's hash, so roots and proofs read O(log n) hashes) and by
 * `cairn audit verify`.
 */

const sha256 = (...parts: Buffer[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

const LEAF = Buffer.from([0]);
const NODE = Buffer.from([1]);

export const EMPTY_ROOT: Buffer = sha256();
export const leafHash = (data: Uint8Array): Buffer => sha256(LEAF, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
export const nodeHash = (left: Buffer, right: Buffer): Buffer => sha256(NODE, left, right);

/** Largest power of two strictly smaller than n (n ≥ 2). */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * The hash of the complete subtree of 2^level leaves starting at leaf index × 2^level. Level 0
 * is the leaf hashes. Every perfect range the RFC's recursion meets is aligned, so a source of
 * complete subtrees answers every root and proof.
 */
export type NodeSource = (level: number, index: number) => Buffer;

const isPow2 = (n: number): boolean => n > 0 && (n & (n - 1)) === 0 && n <= 2 ** 52;
const log2 = (n: number): number => Math.round(Math.log2(n));

/** MTH(D[lo:hi]) from complete-subtree hashes. */
export function rangeHash(src: NodeSource, lo: number, hi: number): Buffer {
  const n = hi - lo;
  if (n === 0) return EMPTY_ROOT;
  if (isPow2(n) && lo % n === 0) return src(log2(n), lo / n);
  const k = splitPoint(n);
  return nodeHash(rangeHash(src, lo, lo + k), rangeHash(src, lo + k, hi));
}

/** RFC 6962 §2.1.1 PATH(m, D[0:n]): sibling hashes from the leaf up. */
export function inclusionProof(src: NodeSource, index: number, size: number): Buffer[] {
  if (!(index >= 0 && index < size)) throw new RangeError(`index ${index} is not in a tree of size ${size}`);
  const path = (m: number, lo: number, hi: number): Buffer[] => {
    const n = hi - lo;
    if (n === 1) return [];
    const k = splitPoint(n);
    return m < k ? [...path(m, lo, lo + k), rangeHash(src, lo + k, hi)] : [...path(m - k, lo + k, hi), rangeHash(src, lo, lo + k)];
  };
  return path(index, 0, size);
}

/** RFC 6962 §2.1.2 PROOF(m, D[0:n]) = SUBPROOF(m, D[0:n], true). */
export function consistencyProof(src: NodeSource, from: number, to: number): Buffer[] {
  if (!(from >= 0 && from <= to)) throw new RangeError(`cannot prove size ${from} against size ${to}`);
  if (from === 0 || from === to) return [];
  const sub = (m: number, lo: number, hi: number, b: boolean): Buffer[] => {
    const n = hi - lo;
    if (m === n) return b ? [] : [rangeHash(src, lo, hi)];
    const k = splitPoint(n);
    return m <= k ? [...sub(m, lo, lo + k, b), rangeHash(src, lo + k, hi)] : [...sub(m - k, lo + k, hi, false), rangeHash(src, lo, lo + k)];
  };
  return sub(from, 0, to, true);
}

/** The complete subtrees [level, index] a call reads, so a store can fetch them in one query first. */
export function nodesRead(run: (src: NodeSource) => unknown): [number, number][] {
  const seen = new Map<string, [number, number]>();
  run((level, index) => {
    seen.set(`${level}/${index}`, [level, index]);
    return EMPTY_ROOT;
  });
  return [...seen.values()];
}

/** The complete subtrees a tree of `size` leaves decomposes into, left to right (its right edge). */
export function frontier(size: number): [number, number][] {
  const out: [number, number][] = [];
  let offset = 0;
  for (let level = 52; level >= 0; level--) {
    const width = 2 ** level;
    if (Math.floor(size / width) % 2 === 1) {
      out.push([level, offset / width]);
      offset += width;
    }
  }
  return out;
}

/**
 * Appends leaves to a tree of `size` leaves whose frontier hashes are known; returns every
 * complete subtree the new leaves finish (the leaves themselves at level 0) and the new root.
 */
export function extend(size: number, frontierHashes: ReadonlyMap<string, Buffer>, leaves: readonly Buffer[]): { nodes: { level: number; index: number; hash: Buffer }[]; root: Buffer } {
  const known = new Map(frontierHashes);
  const nodes: { level: number; index: number; hash: Buffer }[] = [];
  const put = (level: number, index: number, hash: Buffer): void => {
    known.set(`${level}/${index}`, hash);
    nodes.push({ level, index, hash });
  };
  leaves.forEach((leaf, k) => {
    let index = size + k;
    let level = 0;
    let hash = leaf;
    put(level, index, hash);
    while (index % 2 === 1) {
      const left = known.get(`${level}/${index - 1}`);
      if (!left) throw new Error(`missing subtree ${level}/${index - 1}`);
      hash = nodeHash(left, hash);
      level++;
      index = (index - 1) / 2;
      put(level, index, hash);
    }
  });
  const newSize = size + leaves.length;
  const root = rangeHash((level, index) => {
    const h = known.get(`${level}/${index}`);
    if (!h) throw new Error(`missing subtree ${level}/${index}`);
    return h;
  }, 0, newSize);
  return { nodes, root };
}

/** MTH of whole leaf lists, in one pass (the verifier's side). */
export function rootOf(leafHashes: readonly Buffer[]): Buffer {
  return rangeHash((level, index) => perfect(leafHashes, level, index), 0, leafHashes.length);
}

function perfect(leaves: readonly Buffer[], level: number, index: number): Buffer {
  if (level === 0) return leaves[index]!;
  return nodeHash(perfect(leaves, level - 1, index * 2), perfect(leaves, level - 1, index * 2 + 1));
}

/** RFC 9162 §2.1.3.2. */
export function verifyInclusion(leaf: Buffer, index: number, size: number, proof: readonly Buffer[], root: Buffer): boolean {
  if (!(index >= 0 && index < size)) return false;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && r.equals(root);
}

/** RFC 9162 §2.1.4.2. */
export function verifyConsistency(first: number, second: number, firstRoot: Buffer, secondRoot: Buffer, proof: readonly Buffer[]): boolean {
  if (first < 0 || first > second) return false;
  if (first === second) return proof.length === 0 && firstRoot.equals(secondRoot);
  if (first === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  let path = [...proof];
  if (isPow2(first)) path = [firstRoot, ...path];
  let fn = first - 1;
  let sn = second - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return fr.equals(firstRoot) && sr.equals(secondRoot) && sn === 0;
}
