#!/bin/sh
# Builds coffer and runs a round trip of a generated sample directory: key, backup, list,
# verify, restore, compare. Needs only a Rust toolchain. Work files go to target/quickstart/.
set -eu
cd "$(dirname "$0")"
cargo build --release --quiet -p coffer-cli
coffer=target/release/coffer
w=target/quickstart
rm -rf "$w" && mkdir -p "$w/sample/db1" "$w/sample/db2"

# A small stand-in for a MySQL datadir: compressible tables, an incompressible one, a sparse
# (page_compressed-like) file, a dump with text, a symlink.
yes 'INSERT INTO sbtest1 VALUES (42, 4242, "68487932199-96439406143-93774651418", "22195207048");' | head -c 96M > "$w/sample/db1/sbtest1.ibd"
head -c 32M /dev/urandom > "$w/sample/db1/encrypted.ibd"
truncate -s 256M "$w/sample/db2/sparse.ibd"
printf 'page' | dd of="$w/sample/db2/sparse.ibd" bs=1 seek=100000000 conv=notrunc status=none
echo '[mysqld]' > "$w/sample/my.cnf"
ln -s db1/sbtest1.ibd "$w/sample/current"

set -x
$coffer key generate -o "$w/quickstart.key"
$coffer backup "$w/sample" -o "$w/sample.coffer" --key-file "$w/quickstart.key"
$coffer list --long "$w/sample.coffer" --key-file "$w/quickstart.key"
$coffer verify "$w/sample.coffer" --key-file "$w/quickstart.key"
$coffer restore "$w/sample.coffer" --to "$w/restored" --key-file "$w/quickstart.key"
diff -r --no-dereference "$w/sample" "$w/restored"
set +x
echo "quickstart: round trip OK ($(du -sh --apparent-size "$w/sample" | cut -f1) in, $(du -h "$w/sample.coffer" | cut -f1) image; file(1) says: $(file -b -m contrib/magic "$w/sample.coffer" 2>/dev/null || echo n/a))"
