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
