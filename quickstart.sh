#!/bin/sh
# Builds coffer and runs a round trip of a sample datadir: key, backup (validating every
# InnoDB page), list, verify, restore, compare. Needs only a Rust toolchain. Work files go to
# target/quickstart/.
set -eu
cd "$(dirname "$0")"
cargo build --release --quiet -p coffer-cli
coffer=target/release/coffer
w=target/quickstart
rm -rf "$w" && mkdir -p "$w/sample"

# A small datadir: real tablespaces written by MySQL and MariaDB servers (the test data this
# repository ships, with its sources in crates/coffer-innodb/tests/data), which validate
# clean; beside them files that are not InnoDB, under names that say so: a compressible dump,
# random bytes, a sparse file, a symlink.
data=crates/coffer-innodb/tests/data
mkdir -p "$w/sample/fae_dummy" "$w/sample/sakila" "$w/sample/mysql80"
cp "$data"/fae/mysql/fae_dummy/*.ibd "$w/sample/fae_dummy/"
cp "$data"/innodb_ruby/spec/data/sakila/8.0/sakila/film.ibd "$w/sample/sakila/"
cp "$data"/mariadb-server/mysql-test/std_data/mysql80/t1.ibd "$w/sample/mysql80/"
yes 'INSERT INTO sbtest1 VALUES (42, 4242, "68487932199-96439406143-93774651418", "22195207048");' | head -c 64M > "$w/sample/dump.sql"
head -c 16M /dev/urandom > "$w/sample/random.bin"
truncate -s 128M "$w/sample/sparse.dat"
printf 'data' | dd of="$w/sample/sparse.dat" bs=1 seek=100000000 conv=notrunc status=none
echo '[mysqld]' > "$w/sample/my.cnf"
ln -s dump.sql "$w/sample/current"
# `./quickstart.sh --damaged`: also a copy of a tablespace with one byte flipped, to see a
# corrupt page caught.
if [ "${1:-}" = "--damaged" ]; then
    cp "$w/sample/sakila/film.ibd" "$w/sample/sakila/film_damaged.ibd"
    printf '\377' | dd of="$w/sample/sakila/film_damaged.ibd" bs=1 seek=49252 conv=notrunc status=none
fi

set -x
$coffer key generate -o "$w/quickstart.key"
$coffer backup "$w/sample" -o "$w/sample.coffer" --key-file "$w/quickstart.key"
$coffer list --long "$w/sample.coffer" --key-file "$w/quickstart.key"
$coffer verify "$w/sample.coffer" --key-file "$w/quickstart.key"
$coffer restore "$w/sample.coffer" --to "$w/restored" --key-file "$w/quickstart.key"
diff -r --no-dereference "$w/sample" "$w/restored"
set +x
echo "quickstart: round trip OK ($(du -sh --apparent-size "$w/sample" | cut -f1) in, $(du -h "$w/sample.coffer" | cut -f1) image; file(1) says: $(file -b -m contrib/magic "$w/sample.coffer" 2>/dev/null || echo n/a))"
