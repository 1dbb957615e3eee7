#!/bin/sh
# Builds the seed corpus from the known-answer vectors and a few real images.
set -eu
cd "$(dirname "$0")"
mkdir -p corpus/image_reader corpus/plaintext_parsers
for v in ../crates/coffer-image/tests/vectors/*.hex; do
    tr -d '\n' < "$v" | xxd -r -p > "corpus/image_reader/$(basename "$v" .hex)"
done
mkdir -p corpus/innodb_pages
for f in $(find ../crates/coffer-innodb/tests/data -name '*.ibd' -size -200k); do
    cp "$f" "corpus/innodb_pages/$(echo "$f" | tr '/' '_')"
done
# Incremental deltas of a real MariaDB 10.11 (innodb_delta: byte 0 picks the .meta, see the
# target): each with its own .meta text in front, and each alone (its page size inferred).
mkdir -p corpus/innodb_delta
inc=../crates/coffer-innodb/tests/data/coffer/mariadb-10.11-incremental
for d in $(find "$inc" -name '*.delta' -size -100k); do
    name=$(echo "${d#$inc/}" | tr '/' '_')
    meta="${d%.delta}.meta"
    { printf '\051'; printf "\\$(printf '%03o' "$(wc -c < "$meta")")"; cat "$meta" "$d"; } > "corpus/innodb_delta/$name"
    { printf '\120'; cat "$d"; } > "corpus/innodb_delta/$name.inferred"
done
# Header regions with every slot kind, and a header backup, from the CLI (fixed identity of the
# key_slots target; its key file is the vectors' key).
mkdir -p corpus/key_slots
coffer=../target/release/coffer
if [ -x "$coffer" ]; then
    t=$(mktemp -d)
    printf '%s\n' 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f > "$t/k" && chmod 600 "$t/k"
    printf 'pass\n' > "$t/p" && chmod 600 "$t/p"
    echo data > "$t/d"
    "$coffer" keyring create "$t/ring" --name n --key-file "$t/k" -q
    "$coffer" backup "$t/d" -o "$t/i" --key-file "$t/k" --passphrase-file "$t/p" --kdf-memory 64 --kdf-iterations 1 \
        -r coffer1qaz9tjedwsrs8glyzkrptk9h83qzqm8x53spt908kerhrjsm7v7sdz3cjq \
        --keyring "$t/ring" --keyring-key-file "$t/k" --key-id n -q
    head -c 16384 "$t/i" > corpus/key_slots/all_kinds
    "$coffer" header backup "$t/i" -o corpus/key_slots/header_backup --force -q
    rm -rf "$t"
fi
for v in ../crates/coffer-image/tests/vectors/*.hex; do
    tr -d '\n' < "$v" | xxd -r -p | head -c 16384 > "corpus/key_slots/$(basename "$v" .hex)"
done
# A catalog record of the key_slots target's fixed image (data key 07.., image id 09..; the
# known answer of crates/coffer-image/src/catalog.rs with plaintext "{}"; FORMAT.md §9).
printf 'COFFERCR\001\000\000\000' > corpus/key_slots/catalog_record
printf '0909090909090909090909090909090901010101010101010101010102000000617b450d2c9c073d054da706b41976349d79' |
    xxd -r -p >> corpus/key_slots/catalog_record

# xbstreams: a small real one from mariabackup, if the test servers left one; else a made one.
mkdir -p corpus/xbstream
python3 - <<'PY'
import struct, zlib
def chunk(t, path, off=0, payload=b"", sparse=()):
    out = b"XBSTCK01" + bytes([0, ord(t)]) + struct.pack("<I", len(path)) + path
    if t == "E":
        return out
    smap = b"".join(struct.pack("<II", s, l) for s, l in sparse)
    if t == "S":
        out += struct.pack("<I", len(sparse))
    return out + struct.pack("<QQI", len(payload), off, zlib.crc32(smap + payload)) + smap + payload
s = chunk("P", b"ib_logfile0", 0, b"L" * 300) + chunk("P", b"db/t.ibd", 0, b"D" * 500)
s += chunk("P", b"ib_logfile0", 300, b"M" * 100) + chunk("E", b"db/t.ibd")
s += chunk("S", b"db/p.ibd", 0, b"S" * 30, [(4096, 10), (100, 20)]) + chunk("E", b"db/p.ibd")
s += chunk("E", b"ib_logfile0") + chunk("P", b"xtrabackup_info", 0, b"tool_name = mariabackup\n") + chunk("E", b"xtrabackup_info")
open("corpus/xbstream/interleaved", "wb").write(s)
PY

# sealed_frames: frame plaintexts, sealed by the target (see its header for the layout): valid
# images of every entry kind, a file in parts, and the hostile shapes the reader must refuse
# (sizes whose sum overflows, an index that inflates, a continuation that does not chain).
mkdir -p corpus/sealed_frames
python3 - <<'PY'
import struct
def rec(tag, payload=b""):
    return bytes([tag]) + struct.pack("<H", len(payload)) + payload
def meta(kind, path, target=b"", continues=False, size=0, mode=0o644):
    return (struct.pack("<BBHIIIqII", kind, 1 if continues else 0, 0, mode, 0, 0, 1_700_000_000, 0, 0)
            + struct.pack("<Q", size) + struct.pack("<H", len(path)) + path
            + struct.pack("<H", len(target)) + target + b"\0\0")
FILE, DIR, SYMLINK, HARDLINK = 1, 2, 3, 4
LAST, PAUSE = 1 << 3, 2 << 3
def entry(*a, **k): return rec(0, meta(*a, **k))
def chunk(start, end, data=b"", flags=LAST): return rec(7 | flags, struct.pack("<QQ", start, end) + data)
INDEX, END = rec(3), rec(5)
def lz4_zeros(n):
    # One zero literal, a match of n - 6 at offset 1, then the 5 literals a block ends with.
    m = n - 1 - 5 - 4
    out = bytes([0x10 | min(m, 15)]) + b"\0" + struct.pack("<H", 1)
    if m >= 15:
        m -= 15
        out += b"\xff" * (m // 255) + bytes([m % 255])
    return out + b"\x50" + b"\0" * 5
def member(kind, path, data=b"", **k):
    m = meta(kind, path, **k)
    return struct.pack("<II", len(m), len(data)) + m + data
def pack(*members):
    return rec(0 | ((16 | (len(members) - 1)) << 3), b"".join(members))
def big_pack(count, codec, reps, *members):
    # count u16 | codec u8 (0 none, 1 zstd, 2 lz4) | reps u16 | members, repeated reps times.
    return rec(31 << 3, struct.pack("<HBH", count, codec, reps) + b"".join(members))
seeds = {
    "packed": b"\0" + pack(member(DIR, b""), member(FILE, b"a", b"hello"), member(DIR, b"d"),
                           member(FILE, b"d/e"), member(SYMLINK, b"s", target=b"a"))
        + entry(FILE, b"big") + chunk(0, 4096, b"x" * 4096, 0) + chunk(4096, 5000, b"y" * 904)
        + pack(member(HARDLINK, b"h", target=b"a"), member(FILE, b"z", b"z" * 3000)) + INDEX + END,
    "pack_after_pause": b"\0" + entry(FILE, b"log") + chunk(0, 10, b"0123456789", LAST | PAUSE)
        + pack(member(FILE, b"log", b"x")) + INDEX + END,
    "tree": b"\0" + entry(DIR, b"") + entry(FILE, b"a") + chunk(0, 5, b"hello") + entry(DIR, b"d")
        + entry(FILE, b"d/b") + chunk(0, 4096, b"x" * 4096, 0) + chunk(4096, 9000, b"y" * 100)
        + entry(SYMLINK, b"s", b"a") + entry(HARDLINK, b"h", b"a") + entry(FILE, b"empty") + chunk(0, 0)
        + INDEX + END,
    "parts": b"\1" + entry(FILE, b"log") + chunk(0, 10, b"0123456789", LAST | PAUSE) + entry(FILE, b"x")
        + chunk(0, 3, b"xyz") + entry(FILE, b"log", continues=True, size=10) + chunk(10, 12, b"ab", LAST | PAUSE)
        + entry(FILE, b"log", continues=True, size=12) + chunk(12, 20, b"c") + INDEX + END,
    "overflow": b"\0" + entry(FILE, b"a") + chunk(0, 1 << 63) + entry(FILE, b"b") + chunk(0, 1 << 63) + INDEX + END,
    "parts_overflow": b"\0" + entry(FILE, b"log") + chunk(0, 1 << 63, b"", LAST | PAUSE)
        + entry(FILE, b"log", continues=True, size=1 << 63) + chunk(1 << 63, (1 << 64) - 1, b"z") + entry(FILE, b"c")
        + chunk(0, 2, b"cc") + INDEX + END,
    "bad_chain": b"\0" + entry(FILE, b"log") + chunk(0, 10, b"0123456789", LAST | PAUSE)
        + entry(FILE, b"log", continues=True, size=4) + chunk(4, 8, b"abcd") + INDEX + END,
    # The most entries a PACK counts (4 MiB chunks): 65,535 empty files, stored; then the same
    # pack compressed (lz4) counting one more than it holds, and 200-byte names whose metadata
    # compresses (zstd) past the 32x index rule.
    "pack_most": b"\4" + big_pack(65535, 0, 65535, member(FILE, b"a")) + INDEX + END,
    "pack_most_lies": b"\4" + big_pack(65535, 2, 65534, member(FILE, b"a")) + INDEX + END,
    "pack_32x": b"\3" + entry(DIR, b"") + big_pack(3000, 1, 3000, member(FILE, b"n" * 200)) + INDEX + END,
    # 64 KiB chunks: eight INDEX pieces of 64 KiB of zeros each (codec 2, lz4), then END.
    "inflating": b"\2" + entry(DIR, b"") + b"".join(
        rec(2 | (LAST if i == 7 else 0), struct.pack("<BxxxI", 2, 65536) + lz4_zeros(65536)) for i in range(8)) + END,
}
for name, data in seeds.items():
    open(f"corpus/sealed_frames/{name}", "wb").write(data)
PY
# mysql_protocol: answers to a query (4 bytes say how they are read, see the target): a real
# result once, its row repeated forever (by count, by the few-rows cap), 4096 NULLs a row
# forever, a column count of 2^40, and the rows a result is built from.
mkdir -p corpus/mysql_protocol
python3 - <<'PY'
import struct
def pkt(seq, p): return struct.pack("<I", len(p))[:3] + bytes([seq & 255]) + p
col = b"\x03def\0\0\0\x01c\0\x0c\x2d\0\0\0\0\0\xfd\0\0\0\0\0"
head = pkt(1, b"\x02") + pkt(2, col) + pkt(3, col) + pkt(4, b"\xfe\0\0\x02\0")
row = pkt(5, b"\x0dbinlog.000001\x041234")
seeds = {
    "result": b"\x00\x10\x40\x00" + head + row + pkt(6, b"\xfe\0\0\x02\0"),
    "row_flood": b"\x01\x20\xff\xa0" + head + row * 3,
    "row_flood_few": b"\x1d\x20\xff\xa0" + head + row * 3,
    "null_flood": b"\x03\xff\xff\x00" + struct.pack("<H", 4096) + b"\xfb" * 4096,
    "column_bomb": b"\x00\xff\xff\x00" + pkt(1, b"\xfe\0\0\0\0\0\x01\0\0") + pkt(2, col) * 4,
    "built": b"\x02\x40\x40\x00" + struct.pack("<H", 3) + b"\x05hello\xfb\x02hi" * 4,
}
for name, data in seeds.items():
    open(f"corpus/mysql_protocol/{name}", "wb").write(data)
PY

# repo_records (byte 0 picks the parser, see the target): a marker as coffer writes it, a lease,
# a crashed file's last segment and the next file's first with their descriptions, and the
# GTID_LIST event and a dump's events of a real MariaDB 10.11 binary log (data/: the first
# events of two files a test server wrote; the dump as the server sends it, with the ROTATE
# events it makes up where a dump starts and where it goes on to the next file).
mkdir -p corpus/repo_records
python3 - <<'PY'
import base64, json, struct
note = b"A coffer restore into this directory is running or did not finish: its contents are incomplete.\n"
marker = (note + b"The restore created this directory.\n" + b"token 3f2a9c0d11e47b85\n"
          + b"image 0909090909090909090909090909090a\n")
one = open("data/mariadb-10.11-binlog.000001.head", "rb").read()
two = open("data/mariadb-10.11-binlog.000002.head", "rb").read()
def fake_rotate(file, at):
    body = struct.pack("<Q", at) + file
    return struct.pack("<IBIIIH", 0, 4, 1, 19 + len(body), 0, 0x20) + body
dump = fake_rotate(b"binlog.000001", 4) + one[4:] + fake_rotate(b"binlog.000002", 4) + two[4:]
def names(a, b):
    return b"".join(struct.pack("<BII", f, s, e | (1 << 31 if c else 0)) for f, s, e, c in (a, b)) + b"\0"
crashed = {"kind": "binlog-segment", "file": "binlog.000001", "start": 4, "end": 5000, "closed": False,
           "gtid_before": "0-1-90", "gtid_after": "0-1-101", "gtid_committed": "0-1-100", "gtid_list": "0-1-90"}
after = {"kind": "binlog-segment", "file": "binlog.000002", "start": 4, "end": 300, "closed": False,
         "gtid_before": "0-1-100", "gtid_list": "0-1-100",
         "previous_file": {"file": "binlog.000001", "size": 7000, "torn_at": 5000}}
lease = {"job": "restore", "host": "db1", "pid": 4242, "started": 1796000000, "expires": 1796000300,
         "protects": ["2026-12-07T13-00-00Z-0a1b2c3d.coffer"], "binlog_from": "binlog.000007",
         "instance": "7c1f2a4e-0d3b-4c55-9a61-2f0e8d4b6a10 pid:[4026531836]"}
seeds = {
    "marker": b"\0" + marker,
    "marker_too_long": b"\0" + marker + b"#" * 4000,
    "marker_written": b"\1\3" + struct.pack("<Q", 0x3f2a9c0d11e47b85) + bytes(range(16)),
    "lease": b"\2" + json.dumps(lease, separators=(",", ":")).encode(),
    "restart": b"\3" + names((1, 4, 5000, False), (2, 4, 300, False))
        + json.dumps(crashed, indent=2).encode() + json.dumps(after, indent=2).encode(),
    "gtid_list": b"\4" + two[256:299],
    "dump": b"\5\4\200" + dump,
    "dump_small_segments": b"\5\0\7" + dump,
    "segment_name": b"\6binlog.000001_0000000004_0000001132-closed.coffer",
    # What the target found in issue 28's second campaign, kept as seeds: a join across files
    # by name only (the model's rule was stale), and a GTID_LIST naming a server twice.
    "found_join_by_name": base64.b64decode("AwEEAAAAbuz//wIEAAAALAEAAAB7CiAgImtpbmQiOiAiYmlubG1lbnQiLAogICJmaWxlIjogImJpbmxvZy4wMFxcXFxcXFxcXFxcXC0wLTkwIgp9CiAgIgp9"),
    "found_gtid_list_twice": base64.b64decode("JwMBBAAAAIgTACIAAAAAAAAAAAIEAAAA/////ywBAAAAewCEhISEhISEhISEhISEhIQEhISEhIaEhISEhISEhISEhISE0uYwMSIsCiBjNTAwMAogIH0KfQ=="),
}
assert two[256 + 4] == 0xa3, "the GTID_LIST event"
for name, data in seeds.items():
    open(f"corpus/repo_records/{name}", "wb").write(data)
PY
