#!/usr/bin/env python3
"""Generates handshake-v1.json from the protocol description alone (no MyIM code).

An independent implementation in Python (`pip install cryptography`): the Swift tests then
require MyIM to produce these bytes exactly. Usage: python3 generate-handshake-v1.py > handshake-v1.json
Re-running yields the same file except `rsa_variant.example_signature` (RSA-PSS is randomized)
unless an RSA key PEM path is given as the first argument (it is read instead of generated).
"""
import hashlib, hmac, json, struct, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# Layer 3: key-len u8 | key | value-type u8 | value-len u32 | value. Types: 1 int, 2 string, 6 bytes, 5 dict.
def value(v):
    if isinstance(v, int):   t, b = 1, struct.pack(">q", v)
    elif isinstance(v, str): t, b = 2, v.encode()
    elif isinstance(v, bytes): t, b = 6, v
    elif isinstance(v, list): t, b = 5, dict_body(v)   # list of (key, value) pairs = nested dict
    else: raise TypeError(v)
    return struct.pack(">BI", t, len(b)) + b
def dict_body(entries):
    return b"".join(struct.pack(">B", len(k)) + k.encode() + value(v) for k, v in entries)
# Layer 2: type u32 | body-len u32 | body.
def packet(t, entries):
    body = dict_body(entries)
    return struct.pack(">II", t, len(body)) + body

def raw(pub): return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
def spki(pub): return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
def hkdf(ikm, salt, label, n):
    return HKDF(algorithm=hashes.SHA256(), length=n, salt=salt, info=label.encode()).derive(ikm)

def padded_length(n):
    if n <= 256:
        b = 32
        while b < n: b <<= 1
        return b
    return (n + 255) // 256 * 256
# Layer 1: len u32 | pad-len u8 | IV 12 | tag 16 | ciphertext; header is the AAD; IV = salt | counter u64.
def seal(key, salt, counter, pkt):
    p = padded_length(len(pkt))
    header = struct.pack(">IB", p, p - len(pkt))
    iv = salt + struct.pack(">Q", counter)
    ct_tag = AESGCM(key).encrypt(iv, pkt + bytes(p - len(pkt)), header)
    return header + iv + ct_tag[-16:] + ct_tag[:-16]

# Fixed inputs. X25519 keys are RFC 7748 section 6.1's (Alice = client, Bob = server); the
# Ed25519 identity is RFC 8032 section 7.1 test 1's secret key.
client_eph = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
server_eph = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
client_random = bytes(range(0x00, 0x20))
server_random = bytes(range(0x80, 0xa0))
ed_seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
CONTEXT = b"MyIM-v1 server signature\x00"

def handshake(identity_type, identity_spki):
    cpriv = x25519.X25519PrivateKey.from_private_bytes(client_eph)
    spriv = x25519.X25519PrivateKey.from_private_bytes(server_eph)
    ch = packet(1001, [("version", 1), ("random", client_random), ("key_share", raw(cpriv.public_key()))])
    sh = packet(1002, [("version", 1), ("random", server_random), ("key_share", raw(spriv.public_key())),
                       ("key_type", identity_type), ("identity_key", identity_spki)])
    th = hashlib.sha256(ch + sh).digest()
    return cpriv, spriv, ch, sh, th

ed = ed25519.Ed25519PrivateKey.from_private_bytes(ed_seed)
ed_spki = spki(ed.public_key())
cpriv, spriv, ch, sh, th = handshake("ed25519", ed_spki)
shared = cpriv.exchange(spriv.public_key())
assert shared == spriv.exchange(cpriv.public_key())
signed = CONTEXT + th
signature = ed.sign(signed)          # RFC 8032 Ed25519 is deterministic
sv = packet(1003, [("signature", signature)])
k = {name: hkdf(shared, th, label, n) for name, label, n in [
    ("c2s_key", "MyIM-v1 c2s key", 32), ("c2s_iv_salt", "MyIM-v1 c2s iv", 4),
    ("s2c_key", "MyIM-v1 s2c key", 32), ("s2c_iv_salt", "MyIM-v1 s2c iv", 4),
    ("client_finished_key", "MyIM-v1 c2s finished", 32), ("server_finished_key", "MyIM-v1 s2c finished", 32)]}
client_verify = hmac.new(k["client_finished_key"], th, hashlib.sha256).digest()
server_verify = hmac.new(k["server_finished_key"], th, hashlib.sha256).digest()
cf_packet = packet(1004, [("verify", client_verify)])
hd_packet = packet(1005, [("verify", server_verify)])
cf_frame = seal(k["c2s_key"], k["c2s_iv_salt"], 0, cf_packet)
hd_frame = seal(k["s2c_key"], k["s2c_iv_salt"], 0, hd_packet)
# Message 6 (chat): a text to a user, client message id "c-1", QoS 1.
app_packet = packet(6, [("type", 0), ("target_id", "bob@example.org"),
                        ("message", [("type", 0), ("data", "hello, bob")]),
                        ("client_msg_id", "c-1"), ("qos", 1)])
app_frame = seal(k["c2s_key"], k["c2s_iv_salt"], 1, app_packet)

# RSA variant: the same handshake with an RSA-2048 identity. ServerHello and everything after
# it except the signature are byte-exact; RSA-PSS signatures are randomized, so the one given
# only has to verify.
if len(sys.argv) > 1:
    rsa_key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
else:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
rsa_pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
rsa_spki = spki(rsa_key.public_key())
_, _, rch, rsh, rth = handshake("rsa-pss-sha256", rsa_spki)
assert rch == ch
rsa_sig = rsa_key.sign(CONTEXT + rth, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())

h = lambda b: b.hex()
out = {
    "description": {
        "about": "MyIM secure channel, protocol version 1: fixed inputs and the exact bytes they produce. "
                 "All byte strings are lower-case hex. Generated by generate-handshake-v1.py (Python 'cryptography', "
                 "independent of the Swift code); checked byte for byte by Tests/MyIMSecureChannelTests/HandshakeVectorTests.swift.",
        "note": "Ed25519 signatures are deterministic (RFC 8032), so signature and server_verify are exact; MyIM on Linux "
                "(swift-crypto over BoringSSL) produces these very bytes. Some libraries (Apple CryptoKit) randomize Ed25519 "
                "signatures: there, check that the signature verifies instead of comparing bytes.",
        "version": "The protocol version: ClientHello's and ServerHello's version.",
        "client_ephemeral_private": "Input. The client's ephemeral X25519 private key (RFC 7748 section 6.1, Alice).",
        "client_ephemeral_public": "Its public key: ClientHello's key_share.",
        "client_random": "Input. ClientHello's 32-byte random.",
        "server_ephemeral_private": "Input. The server's ephemeral X25519 private key (RFC 7748 section 6.1, Bob).",
        "server_ephemeral_public": "Its public key: ServerHello's key_share.",
        "server_random": "Input. ServerHello's 32-byte random.",
        "server_identity_ed25519_seed": "Input. The server's long-term Ed25519 identity key, as its 32-byte RFC 8032 seed (RFC 8032 section 7.1, test 1).",
        "server_identity_key_type": "ServerHello's key_type for this identity.",
        "server_identity_spki": "The identity public key as DER SubjectPublicKeyInfo: ServerHello's identity_key.",
        "server_identity_fingerprint": "What a client pins: sha256: and the SHA-256 of the SPKI in lower-case hex.",
        "client_hello": "The exact ClientHello packet (message 1001, in clear): type u32 | body-len u32 | body with keys version, random, key_share.",
        "server_hello": "The exact ServerHello packet (message 1002, in clear): keys version, random, key_share, key_type, identity_key.",
        "transcript_hash": "SHA-256(client_hello bytes || server_hello bytes), whole packets including their 8-byte headers.",
        "signed_message": "What the identity key signs: the ASCII context 'MyIM-v1 server signature', one zero byte, then transcript_hash.",
        "signature": "Ed25519 signature of signed_message (RFC 8032, deterministic).",
        "server_verify": "The exact ServerVerify packet (message 1003, in clear): key signature.",
        "shared_secret": "X25519(client ephemeral private, server ephemeral public) = X25519(server ephemeral private, client ephemeral public).",
        "c2s_key": "HKDF-SHA256(ikm: shared_secret, salt: transcript_hash, info: 'MyIM-v1 c2s key', L = 32): AES-256-GCM key, client to server.",
        "c2s_iv_salt": "HKDF-SHA256(same, info: 'MyIM-v1 c2s iv', L = 4): first 4 bytes of every client-to-server IV.",
        "s2c_key": "HKDF-SHA256(same, info: 'MyIM-v1 s2c key', L = 32): AES-256-GCM key, server to client.",
        "s2c_iv_salt": "HKDF-SHA256(same, info: 'MyIM-v1 s2c iv', L = 4): first 4 bytes of every server-to-client IV.",
        "client_finished_key": "HKDF-SHA256(same, info: 'MyIM-v1 c2s finished', L = 32).",
        "server_finished_key": "HKDF-SHA256(same, info: 'MyIM-v1 s2c finished', L = 32).",
        "client_verify": "HMAC-SHA256(client_finished_key, transcript_hash): ClientFinished's verify.",
        "server_verify_data": "HMAC-SHA256(server_finished_key, transcript_hash): HelloDone's verify.",
        "client_finished_packet": "The ClientFinished packet (message 1004) before encryption.",
        "client_finished_frame": "The first client-to-server frame, counter 0: len u32 | pad-len u8 | IV 12 (c2s_iv_salt || counter u64 big-endian) | tag 16 | ciphertext. The 5-byte header is the AES-GCM additional data; the plaintext is the packet followed by pad-len zero bytes.",
        "hello_done_packet": "The HelloDone packet (message 1005) before encryption.",
        "hello_done_frame": "The first server-to-client frame, counter 0, under s2c_key and s2c_iv_salt.",
        "application_packet": "Input. A chat packet (message 6: a text 'hello, bob' to user bob@example.org, client_msg_id 'c-1', qos 1).",
        "application_counter": "The counter application_frame is sealed at: the client's second frame.",
        "application_padded_length": "The padding bucket of the packet's length (next power of two from 32 to 256, then next multiple of 256); the frame's len field.",
        "application_pad_length": "application_padded_length minus the packet's length: the frame's pad-len byte.",
        "application_frame": "application_packet sealed client to server at application_counter.",
        "rsa_variant": "The same inputs with an RSA-2048 identity (key_type rsa-pss-sha256): private_key_pem (PKCS#8), spki, fingerprint, server_hello and transcript_hash are exact; RSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt) is randomized, so example_signature is one valid signature of signed_message, to be verified rather than compared.",
    },
    "version": 1,
    "client_ephemeral_private": h(client_eph),
    "client_ephemeral_public": h(raw(cpriv.public_key())),
    "client_random": h(client_random),
    "server_ephemeral_private": h(server_eph),
    "server_ephemeral_public": h(raw(spriv.public_key())),
    "server_random": h(server_random),
    "server_identity_ed25519_seed": h(ed_seed),
    "server_identity_key_type": "ed25519",
    "server_identity_spki": h(ed_spki),
    "server_identity_fingerprint": "sha256:" + hashlib.sha256(ed_spki).hexdigest(),
    "client_hello": h(ch),
    "server_hello": h(sh),
    "transcript_hash": h(th),
    "signed_message": h(signed),
    "signature": h(signature),
    "server_verify": h(sv),
    "shared_secret": h(shared),
    **{name: h(v) for name, v in k.items()},
    "client_verify": h(client_verify),
    "server_verify_data": h(server_verify),
    "client_finished_packet": h(cf_packet),
    "client_finished_frame": h(cf_frame),
    "hello_done_packet": h(hd_packet),
    "hello_done_frame": h(hd_frame),
    "application_packet": h(app_packet),
    "application_counter": 1,
    "application_padded_length": padded_length(len(app_packet)),
    "application_pad_length": padded_length(len(app_packet)) - len(app_packet),
    "application_frame": h(app_frame),
    "rsa_variant": {
        "private_key_pem": rsa_pem,
        "spki": h(rsa_spki),
        "fingerprint": "sha256:" + hashlib.sha256(rsa_spki).hexdigest(),
        "server_hello": h(rsh),
        "transcript_hash": h(rth),
        "signed_message": h(CONTEXT + rth),
        "example_signature": h(rsa_sig),
    },
}
json.dump(out, sys.stdout, indent=2)
sys.stdout.write("\n")
