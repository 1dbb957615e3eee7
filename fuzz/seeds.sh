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
