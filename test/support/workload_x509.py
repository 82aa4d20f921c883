#!/usr/bin/python3
"""An independent SPIFFE Workload API client: Debian's python3-grpcio and python3-cryptography, none of
Cairn's code. Calls FetchX509SVID on the Unix socket given as argv[1], takes the first response, decodes
the protobuf by hand (spiffe.md: X509SVIDResponse{1: repeated X509SVID{1 spiffe_id, 2 x509_svid,
3 x509_svid_key, 4 bundle, 5 hint}}), and checks each SVID the way go-spiffe does: x509_svid is DER
certificates leaf first, the leaf has exactly one spiffe:// URI SAN and is no CA, every further
certificate is a CA with keyCertSign, each certificate is signed by the next, and the last is signed by
a certificate of the bundle (the DER roots). Prints JSON with the PEMs; exits 1 with a reason when a check fails."""
import json
import sys

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa


def varint(buf, at):
    shift = value = 0
    while True:
        b = buf[at]
        at += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, at
        shift += 7


def fields(buf):
    at = 0
    while at < len(buf):
        key, at = varint(buf, at)
        number, wire = key >> 3, key & 7
        if wire == 2:
            n, at = varint(buf, at)
            yield number, buf[at:at + n]
            at += n
        elif wire == 0:
            v, at = varint(buf, at)
            yield number, v
        else:
            raise ValueError(f"unexpected wire type {wire}")


def split_der(blob):
    certs, at = [], 0
    while at < len(blob):
        if blob[at] != 0x30:
            raise ValueError("not concatenated DER")
        n = blob[at + 1]
        header = 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(blob[at + 2:at + 2 + k], "big")
            header += k
        certs.append(x509.load_der_x509_certificate(blob[at:at + header + n]))
        at += header + n
    return certs


def signed_by(child, parent):
    if child.issuer != parent.subject:
        return False
    key = parent.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(child.signature, child.tbs_certificate_bytes, ec.ECDSA(child.signature_hash_algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(child.signature, child.tbs_certificate_bytes, padding.PKCS1v15(), child.signature_hash_algorithm)
        else:
            return False
        return True
    except Exception:
        return False


def fail(reason):
    print(json.dumps({"ok": False, "reason": reason}))
    sys.exit(1)


def main():
    channel = grpc.insecure_channel(f"unix://{sys.argv[1]}")
    call = channel.unary_stream("/SpiffeWorkloadAPI/FetchX509SVID", request_serializer=lambda _: b"", response_deserializer=lambda b: b)
    stream = call(None, metadata=(("workload.spiffe.io", "true"),), timeout=30)
    response = next(iter(stream))
    stream.cancel()
    out = []
    for number, svid in fields(response):
        if number != 1:
            continue
        f = {n: v for n, v in fields(svid)}
        chain = split_der(f.get(2, b""))
        roots = split_der(f.get(4, b""))
        if not chain:
            fail("x509_svid is empty")
        leaf = chain[0]
        uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.UniformResourceIdentifier)
        if len(uris) != 1 or not uris[0].startswith("spiffe://"):
            fail(f"leaf URI SANs {uris}")
        if leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            fail("leaf is a CA")
        for c in chain[1:]:
            if not c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                fail(f"intermediate {c.subject.rfc4514_string()} is not a CA")
            if not c.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign:
                fail(f"intermediate {c.subject.rfc4514_string()} lacks keyCertSign")
        for child, parent in zip(chain, chain[1:]):
            if not signed_by(child, parent):
                fail(f"{child.subject.rfc4514_string()} is not signed by the next certificate {parent.subject.rfc4514_string()}")
        anchor = next((r for r in roots if signed_by(chain[-1], r)), None)
        if anchor is None:
            fail(f"no bundle certificate signs {chain[-1].subject.rfc4514_string()}; bundle: {[r.subject.rfc4514_string() for r in roots]}")
        pem = lambda cs: "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in cs)
        out.append({
            "spiffeId": f[1].decode(),
            "chainLength": len(chain),
            "bundleSubjects": [r.subject.rfc4514_string() for r in roots],
            "anchor": anchor.subject.rfc4514_string(),
            "chainPem": pem(chain),
            "bundlePem": pem(roots),
        })
    print(json.dumps({"ok": True, "svids": out}))


if __name__ == "__main__":
    main()
