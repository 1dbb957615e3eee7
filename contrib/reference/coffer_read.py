#!/usr/bin/env python3
"""An independent reader of coffer images, written from docs/FORMAT.md alone.

It exists to check that the specification is complete: run against the known-answer images in
crates/coffer-image/tests/vectors/, it must list the same entries and contents as coffer.
Versions 1 and 2; uncompressed (codec 0) or zstd (codec 1) frames, not lz4; streaming order,
every check of the spec.

    python3 coffer_read.py IMAGE KEYFILE                 # a key file: key and keyring slots
    python3 coffer_read.py IMAGE --passphrase FILE       # passphrase slots (Argon2id)
    python3 coffer_read.py IMAGE --identity FILE         # recipient slots (HPKE, X25519)
    ... --require-signer coffersig1...                   # refuse images not signed by it
Prints one line per entry, JSON. Needs the `cryptography` (44 or later, for Argon2id) and
`zstandard` packages (the index is zstd-compressed).
"""
import hashlib
import hmac
import json
import struct
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

MAGIC = b"\x89COFFER\n"
HEADER = 8192


class Bad(Exception):
    pass


def extract(salt, ikm):
    return hmac.new(salt or b"\0" * 32, ikm, hashlib.sha256).digest()


def expand(prk, info, length):
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def hkdf(ikm, salt, info, length=32):
    return expand(extract(salt, ikm), info, length)


# HPKE (RFC 9180) base mode, open only: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305.
KEM_SUITE = b"KEM\x00\x20"
HPKE_SUITE = b"HPKE\x00\x20\x00\x01\x00\x03"


def labeled_extract(suite, salt, label, ikm):
    return extract(salt, b"HPKE-v1" + suite + label + ikm)


def labeled_expand(suite, prk, label, info, length):
    return expand(prk, struct.pack(">H", length) + b"HPKE-v1" + suite + label + info, length)


def hpke_open(sk_r, enc, info, aad, ct):
    sk = X25519PrivateKey.from_private_bytes(sk_r)
    pk_r = sk.public_key().public_bytes_raw()
    dh = sk.exchange(X25519PublicKey.from_public_bytes(enc))
    eae_prk = labeled_extract(KEM_SUITE, b"", b"eae_prk", dh)
    shared = labeled_expand(KEM_SUITE, eae_prk, b"shared_secret", enc + pk_r, 32)
    context = (b"\x00" + labeled_extract(HPKE_SUITE, b"", b"psk_id_hash", b"")
               + labeled_extract(HPKE_SUITE, b"", b"info_hash", info))
    secret = labeled_extract(HPKE_SUITE, shared, b"secret", b"")
    key = labeled_expand(HPKE_SUITE, secret, b"key", context, 32)
    nonce = labeled_expand(HPKE_SUITE, secret, b"base_nonce", context, 12)
    return ChaCha20Poly1305(key).decrypt(nonce, ct, aad)


BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def bech32_decode(text):
    """Bech32 (BIP 173) without the length limit; returns (hrp, bytes)."""
    text = text.strip().lower()
    hrp, data = text[:text.rindex("1")], [BECH32.index(c) for c in text[text.rindex("1") + 1:]]
    chk = 1
    for v in [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + data:
        top, chk = chk >> 25, ((chk & 0x1ffffff) << 5) ^ v
        for i, g in enumerate([0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3]):
            chk ^= g if (top >> i) & 1 else 0
    if chk != 1:
        raise Bad("bech32 checksum")
    acc, bits, out = 0, 0, bytearray()
    for v in data[:-6]:
        acc, bits = (acc << 5) | v, bits + 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xff)
    return hrp, bytes(out)


def unwrap_data_key(h, slot, secret):
    """The data key if `secret` opens `slot` (spec section 4), else None."""
    kind, salt, params = slot[0], slot[24:56], slot[104:]
    aad = b"coffer v1 slot" + h["image_id"] + slot[:56] + slot[104:]
    try:
        if kind in (1, 4) and secret[0] == "key":
            kek = hkdf(secret[1], salt, b"coffer v1 slot key" + h["image_id"])
        elif kind == 2 and secret[0] == "passphrase":
            m, t, p = struct.unpack_from(">III", params)
            if not (65536 <= m <= 4194304 and 1 <= t <= 100 and 1 <= p <= 16):
                return None
            derived = Argon2id(salt=salt, length=32, iterations=t, lanes=p, memory_cost=m).derive(secret[1])
            kek = hkdf(derived, salt, b"coffer v1 slot key" + h["image_id"])
        elif kind == 3 and secret[0] == "identity":
            info = b"coffer v1 recipient slot" + h["image_id"]
            return hpke_open(secret[1], params[:32], info, aad, slot[56:104])
        else:
            return None
        return aead(h["suite"], kek).decrypt(b"\0" * 12, slot[56:104], aad)
    except Bad:
        raise
    except Exception:
        return None


def aead(suite, key):
    return {1: AESGCM, 2: ChaCha20Poly1305}[suite](key)


def parse_header(b):
    if b[:8] != MAGIC or len(b) != HEADER:
        raise Bad("magic")
    if hashlib.sha256(b[:8160]).digest() != b[8160:]:
        raise Bad("checksum")
    version, copy, size, generation = struct.unpack_from("<HHIQ", b, 8)
    if version not in (1, 2) or size != HEADER:
        raise Bad("version or size")
    image_id = b[24:40]
    suite, codec, level, r43, chunk_size, created, flags = struct.unpack_from("<BBbBIqQ", b, 40)
    signed = flags == 1
    if suite not in (1, 2) or r43 or flags > 1 or any(b[64:256]) or any(b[4480:8128]):
        raise Bad("reserved")
    if not signed and any(b[4352:4480]):
        raise Bad("reserved")
    slots = [b[256 + 256 * i: 512 + 256 * i] for i in range(16)]
    signature = None
    if signed:
        # Section 3.1: Ed25519 over the context, the version, bytes [24, 64), signer, commitment.
        signer, commitment, sig = b[4352:4384], b[4384:4416], b[4416:4480]
        message = b"coffer v1 image signature" + b[8:10] + b[24:64] + signer + commitment
        try:
            Ed25519PublicKey.from_public_bytes(signer).verify(sig, message)
        except InvalidSignature:
            raise Bad("signature")
        signature = dict(signer=signer, commitment=commitment)
    return dict(version=version, copy=copy, generation=generation, image_id=image_id, suite=suite,
                chunk_size=chunk_size, slots=slots, mac=b[8128:8160], raw=b, signature=signature)


def open_image(data, secret, required=None):
    copies = []
    for i in (0, 1):
        try:
            h = parse_header(data[i * HEADER:(i + 1) * HEADER])
            if h["copy"] == i:
                copies.append(h)
        except Bad:
            pass
    if not copies:
        raise Bad("both header copies damaged")
    h = max(copies, key=lambda c: (c["generation"], -c["copy"]))
    if required is not None and (h["signature"] is None or h["signature"]["signer"] != required):
        raise Bad("not signed by the required signer")
    for slot in h["slots"]:
        dk = unwrap_data_key(h, slot, secret) if any(slot) else None
        if dk is not None:
            break
    else:
        raise Bad("wrong key")
    if h["signature"] is not None and \
            hkdf(dk, h["image_id"], b"coffer v1 key commitment") != h["signature"]["commitment"]:
        raise Bad("key commitment")
    hk = hkdf(dk, h["image_id"], b"coffer v1 header mac key")
    if not hmac.compare_digest(hmac.new(hk, h["raw"][:8128], hashlib.sha256).digest(), h["mac"]):
        raise Bad("header MAC")
    pk = hkdf(dk, h["image_id"], b"coffer v1 payload key")
    return h, aead(h["suite"], pk)


def read(data, secret, required=None):
    h, cipher = open_image(data, secret, required)
    image_id, cs = h["image_id"], h["chunk_size"]
    pos, seq, entry_no, part, index_part = 16384, 0, -1, 0, 0
    entries, records, index, index_start = [], [], b"", None
    current = None

    def open_frame(kind, flags, n, body, e, p, members=0):
        aad = image_id + struct.pack("<Q", seq) + struct.pack("<BBHI", kind, flags, members, n) + struct.pack("<QQ", e, p)
        return cipher.decrypt(b"\0" * 4 + struct.pack(">Q", seq), body, aad)

    while True:
        if pos + 8 > len(data):
            raise Bad("truncated: no END frame")
        kind, flags, members, n = struct.unpack_from("<BBHI", data, pos)
        packs = kind == 5 and h["version"] == 2
        if (members != 0) != packs or n > cs + 262144 + 16 or pos + 8 + n > len(data):
            raise Bad("frame header")
        body = data[pos + 8: pos + 8 + n]
        if kind == 1:
            if current is not None:
                raise Bad("file without LAST chunk")
            entry_no, part = entry_no + 1, 0
            m = open_frame(1, flags, n, body, entry_no, 0)
            meta = parse_meta(m)
            entries.append({**meta, "data": bytearray(), "size": 0})
            records.append([pos, seq, 8 + n, 0, 0, 0, m])
            current = entries[-1] if meta["kind"] == 1 else None
        elif kind == 2:
            part += 1
            p = open_frame(2, flags, n, body, entry_no, part)
            codec, raw, start, end, nseg, stored = struct.unpack_from("<B3xIQQII", p)
            if (codec == 0 and stored != raw) or raw > cs or len(p) != 32 + stored + 12 * nseg:
                raise Bad("chunk")
            table = p[32 + stored:]
            if codec != 0:
                p = b"\0" * 32 + decompress(codec, p[32:32 + stored], raw)
                if len(p) != 32 + raw:
                    raise Bad("chunk length")
                stored = raw
                p += table
            if current is None or start != current["size"]:
                raise Bad("chunk order")
            at = 32
            for i in range(nseg):
                off, ln = struct.unpack_from("<QI", p, 32 + stored + 12 * i)
                d = current["data"]
                if len(d) < off + ln:
                    d.extend(b"\0" * (off + ln - len(d)))
                d[off:off + ln] = p[at:at + ln]
                at += ln
            current["size"] = end
            rec = records[-1]
            rec[2] = pos + 8 + n - rec[0]
            rec[3] += 1
            rec[5] += raw
            if flags & 1:
                rec[4] = end
                current["data"].extend(b"\0" * (end - len(current["data"])))
                current = None
        elif kind == 5:
            # PACK (version 2): `members` whole entries, compressed together.
            if current is not None or flags:
                raise Bad("pack")
            p = open_frame(5, flags, n, body, entry_no + 1, 0, members)
            codec, raw = struct.unpack_from("<B3xI", p)
            if raw > cs:
                raise Bad("pack length")
            packed = p[8:] if codec == 0 else decompress(codec, p[8:], raw)
            if len(packed) != raw:
                raise Bad("pack length")
            at, index_bytes = 0, 0
            for _ in range(members):
                ml, dl = struct.unpack_from("<II", packed, at)
                m, d = packed[at + 8:at + 8 + ml], packed[at + 8 + ml:at + 8 + ml + dl]
                if len(d) != dl:
                    raise Bad("pack member")
                at += 8 + ml + dl
                meta = parse_meta(m)
                if (meta["kind"] != 1 and dl) or m[1] != 0:
                    raise Bad("pack member")
                index_bytes += 48 + ml
                entries.append({**meta, "data": bytearray(d), "size": dl})
                records.append([pos, seq, 8 + n, 0, dl if meta["kind"] == 1 else 0, dl, m])
            if at != raw or index_bytes > 32 * (8 + n):
                raise Bad("pack members")
            entry_no += members
        elif kind == 3:
            index_start = pos if index_start is None else index_start
            p = open_frame(3, flags, n, body, entry_no + 1, index_part)
            index_part += 1
            codec, raw = struct.unpack_from("<B3xI", p)
            if codec == 0:
                index += p[8:]
            else:
                index += decompress(codec, p[8:], raw)
        elif kind == 4:
            fields = body[:40]
            e_seq, count, i_off, i_frames, total = struct.unpack("<5Q", fields)
            aad = image_id + struct.pack("<Q", seq) + struct.pack("<BBHI", 4, 0, 0, 56) + struct.pack("<QQ", count, 0) + fields
            cipher.decrypt(b"\0" * 4 + struct.pack(">Q", e_seq), body[40:], aad)
            if e_seq != seq or count != len(entries) or i_off != index_start:
                raise Bad("END does not match")
            if pos + 64 != len(data):
                raise Bad("bytes after END")
            check_index(index, records)
            return entries
        else:
            raise Bad("frame kind")
        pos += 8 + n
        seq += 1


def decompress(codec, data, raw):
    if codec == 1:
        import zstandard
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=raw)
    raise Bad("codec %d not supported by this reader" % codec)


def parse_meta(m):
    kind, mode, uid, gid, sec, nsec, size = struct.unpack_from("<B3xIIIqI4xQ", m)
    at = 40
    fields = []
    for width in ("<H", "<H", "<B", "<B"):
        (ln,) = struct.unpack_from(width, m, at)
        at += struct.calcsize(width)
        fields.append(m[at:at + ln])
        at += ln
    if at != len(m) or mode > 0o7777:
        raise Bad("entry")
    path, target, user, group = fields
    for comp in path.split(b"/") if path else []:
        if comp in (b"", b".", b"..") or b"\0" in comp:
            raise Bad("path")
    return dict(kind=kind, mode=mode, uid=uid, gid=gid, mtime=sec, path=path, target=target, user=user)


def check_index(index, records):
    at, i = 0, 0
    while at < len(index):
        fo, fs, fl, ch, ml, size, db = struct.unpack_from("<QQQIIQQ", index, at)
        at += 48
        meta = index[at:at + ml]
        at += ml
        r = records[i]
        if [fo, fs, fl, ch, size, db, meta] != [r[0], r[1], r[2], r[3], r[4], r[5], r[6]]:
            raise Bad("index record %d does not match" % i)
        i += 1
    if i != len(records):
        raise Bad("index length")


def main():
    required = None
    if "--require-signer" in sys.argv:
        at = sys.argv.index("--require-signer")
        hrp, required = bech32_decode(sys.argv[at + 1])
        if hrp != "coffersig" or len(required) != 32:
            raise SystemExit("not a signer")
        del sys.argv[at:at + 2]
    data = open(sys.argv[1], "rb").read()
    if sys.argv[1].endswith(".hex"):
        data = bytes.fromhex("".join(data.decode().split()))
    if sys.argv[2] == "--passphrase":
        text = open(sys.argv[3], "rb").read()
        secret = ("passphrase", text[:-1] if text.endswith(b"\n") else text)
    elif sys.argv[2] == "--identity":
        line = [l for l in open(sys.argv[3]).read().splitlines() if l.strip() and not l.startswith("#")][0]
        hrp, sk = bech32_decode(line)
        if hrp not in ("coffer-secret-key-", "age-secret-key-") or len(sk) != 32:
            raise SystemExit("not an identity")
        secret = ("identity", sk)
    else:
        secret = ("key", bytes.fromhex(open(sys.argv[2]).read().strip()))
    try:
        for e in read(data, secret, required):
            kinds = {1: "file", 2: "dir", 3: "symlink", 4: "hardlink"}
            print(json.dumps({"path": e["path"].decode("utf-8", "replace"), "type": kinds[e["kind"]],
                              "mode": oct(e["mode"]), "size": e["size"] if e["kind"] == 1 else 0,
                              "sha256": hashlib.sha256(bytes(e["data"])).hexdigest() if e["kind"] == 1 else None,
                              "target": e["target"].decode("utf-8", "replace")}))
    except Bad as err:
        print("error: %s" % err, file=sys.stderr)
        sys.exit(4)


if __name__ == "__main__":
    main()
