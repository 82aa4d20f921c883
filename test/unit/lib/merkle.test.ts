import { describe, expect, it } from 'vitest';
import { consistencyProof, EMPTY_ROOT, extend, frontier, inclusionProof, leafHash, nodeHash, rootOf, verifyConsistency, verifyInclusion, type NodeSource } from '../../../lib/merkle.js';

// The RFC 6962 test leaves used by Certificate Transparency's reference implementations.
const LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map((h) => Buffer.from(h, 'hex'));

/** MTH straight from RFC 6962 §2.1, recursion on the data itself. */
function mth(data: readonly Buffer[]): Buffer {
  if (data.length === 0) return EMPTY_ROOT;
  if (data.length === 1) return leafHash(data[0]!);
  let k = 1;
  while (k * 2 < data.length) k *= 2;
  return nodeHash(mth(data.slice(0, k)), mth(data.slice(k)));
}

/** Complete subtrees as a store of them would answer, built by extend() one batch at a time. */
function grow(data: readonly Buffer[], batch: number): { src: NodeSource; roots: Buffer[] } {
  const known = new Map<string, Buffer>();
  const roots: Buffer[] = [];
  for (let size = 0; size < data.length; size += batch) {
    const edge = new Map(frontier(size).map(([l, i]) => [`${l}/${i}`, known.get(`${l}/${i}`)!]));
    const { nodes, root } = extend(size, edge, data.slice(size, size + batch).map((d) => leafHash(d)));
    for (const n of nodes) known.set(`${n.level}/${n.index}`, n.hash);
    roots.push(root);
  }
  return { src: (l, i) => known.get(`${l}/${i}`)!, roots };
}

const data = Array.from({ length: 70 }, (_, i) => Buffer.from(`entry ${i}`));

describe('RFC 6962 Merkle tree', () => {
  it('matches the CT reference root of the 8 test leaves, and the empty tree', () => {
    expect(rootOf(LEAVES.map(leafHash)).toString('hex')).toBe('5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328');
    expect(EMPTY_ROOT.toString('hex')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });

  it('splits at the largest power of two below n (5 = 4|1, 6 = 4|2, 7 = 4|3), not a balanced or duplicate-last tree', () => {
    for (let n = 1; n <= data.length; n++) expect(rootOf(data.slice(0, n).map(leafHash)).equals(mth(data.slice(0, n))), `n=${n}`).toBe(true);
    const [a, b, c, d, e] = data.slice(0, 5).map(leafHash) as [Buffer, Buffer, Buffer, Buffer, Buffer];
    expect(rootOf([a, b, c, d, e]).equals(nodeHash(nodeHash(nodeHash(a, b), nodeHash(c, d)), e))).toBe(true);
    expect(rootOf([a, b, c, d, e]).equals(nodeHash(nodeHash(nodeHash(a, b), nodeHash(c, d)), nodeHash(e, e)))).toBe(false);
  });

  it('extends from the frontier to the same roots whatever the batch size', () => {
    for (const batch of [1, 2, 3, 7, 64]) {
      const { roots } = grow(data, batch);
      roots.forEach((r, k) => expect(r.equals(mth(data.slice(0, Math.min(data.length, (k + 1) * batch)))), `batch ${batch} step ${k}`).toBe(true));
    }
  });

  it('inclusion proofs from stored subtrees verify for every index and size, and fail for the wrong leaf, index or root', () => {
    const { src } = grow(data, 5);
    for (let n = 1; n <= 40; n++) {
      const root = mth(data.slice(0, n));
      for (let m = 0; m < n; m++) {
        const proof = inclusionProof(src, m, n);
        expect(verifyInclusion(leafHash(data[m]!), m, n, proof, root), `m=${m} n=${n}`).toBe(true);
        expect(verifyInclusion(leafHash(Buffer.from('x')), m, n, proof, root)).toBe(false);
        if (n > 1) expect(verifyInclusion(leafHash(data[m]!), (m + 1) % n, n, proof, root)).toBe(false);
        expect(verifyInclusion(leafHash(data[m]!), m, n, proof, EMPTY_ROOT)).toBe(false);
      }
    }
  });

  it('consistency proofs verify for every pair of sizes, and fail against an altered history', () => {
    const { src } = grow(data, 4);
    for (let n = 1; n <= 40; n++) {
      const second = mth(data.slice(0, n));
      for (let m = 0; m <= n; m++) {
        const proof = consistencyProof(src, m, n);
        const first = mth(data.slice(0, m));
        expect(verifyConsistency(m, n, first, second, proof), `m=${m} n=${n}`).toBe(true);
        if (m > 0 && m < n) {
          const altered = mth([...data.slice(0, m - 1), Buffer.from('forged')]);
          expect(verifyConsistency(m, n, altered, second, proof), `forged m=${m} n=${n}`).toBe(false);
        }
      }
    }
    // the RFC's own shape: 3 -> 7 is [MTH(d2), MTH(d3), MTH(d0:2), MTH(d4:7)]
    const proof = consistencyProof(src, 3, 7);
    expect(proof.map((h) => h.toString('hex'))).toEqual([leafHash(data[2]!), leafHash(data[3]!), mth(data.slice(0, 2)), mth(data.slice(4, 7))].map((h) => h.toString('hex')));
  });

  it('inclusion PATH has the RFC shape: d0 in 7 is [d1, MTH(d2:4), MTH(d4:7)]', () => {
    const { src } = grow(data, 3);
    expect(inclusionProof(src, 0, 7).map((h) => h.toString('hex'))).toEqual([leafHash(data[1]!), mth(data.slice(2, 4)), mth(data.slice(4, 7))].map((h) => h.toString('hex')));
  });
});
