#!/usr/bin/python3
"""An independent audit-log verifier, written from RFC 6962/9162 and C2SP signed-note/tlog-checkpoint
only (no Cairn code): reads JSON on stdin
  {"vkey": str, "note": str, "entries": [base64, ...], "index": int, "proof": [base64, ...]}
checks the checkpoint's Ed25519 note signature (key ID rule included), recomputes the tree root from
the entries, checks it is the checkpoint's, and verifies the inclusion proof of entry `index`.
Prints one JSON line; exits 1 on the first failure."""
import base64, hashlib, json, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def fail(msg):
    print(json.dumps({"ok": False, "error": msg}))
    sys.exit(1)


def h(*parts):
    d = hashlib.sha256()
    for p in parts:
        d.update(p)
    return d.digest()


def leaf(data):
    return h(b"\x00", data)


def node(l, r):
    return h(b"\x01", l, r)


def mth(leaves):
    n = len(leaves)
    if n == 0:
        return h()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(lh, index, size, proof, root):
    if index >= size:
        return False
    fn, sn, r = index, size - 1, lh
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


req = json.load(sys.stdin)
name, key_id_hex, key_b64 = req["vkey"].split("+", 2)  # the base64 may hold a "+"
raw = base64.b64decode(key_b64)
if len(raw) != 33 or raw[0] != 1:
    fail("vkey is not an Ed25519 note key")
pub = raw[1:]
key_id = h(name.encode() + b"\n" + b"\x01" + pub)[:4]
if key_id.hex() != key_id_hex:
    fail("vkey key id does not match SHA-256(name || 0x0A || 0x01 || key)[:4]")

note = req["note"]
text, sep, sigs = note.rpartition("\n\n")
if not sep:
    fail("no blank line in the note")
text += "\n"
verified = False
for line in sigs.rstrip("\n").split("\n"):
    if not line.startswith("\u2014 "):
        fail("signature line does not start with an em dash and a space")
    sig_name, blob_b64 = line[2:].split(" ")
    blob = base64.b64decode(blob_b64)
    if sig_name == name and blob[:4] == key_id:
        Ed25519PublicKey.from_public_bytes(pub).verify(blob[4:], text.encode("utf-8"))  # raises if bad
        verified = True
if not verified:
    fail("no signature by the log key")

lines = text.split("\n")
origin, size, root_b64 = lines[0], int(lines[1]), lines[2]
if origin != name:
    fail("origin is not the key name")
root = base64.b64decode(root_b64)
entries = [base64.b64decode(e) for e in req["entries"]]
if len(entries) != size:
    fail(f"{len(entries)} entries for a tree of size {size}")
leaves = [leaf(e) for e in entries]
if mth(leaves) != root:
    fail("recomputed root differs from the checkpoint's")
index = req["index"]
proof = [base64.b64decode(p) for p in req["proof"]]
if not verify_inclusion(leaves[index], index, size, proof, root):
    fail(f"inclusion proof of entry {index} does not verify")
print(json.dumps({"ok": True, "size": size, "origin": origin, "index": index}))
