#!/bin/sh
# Runs every test: formatting, lints, unit, property, end-to-end and known-answer tests.
# Installs what the tests need when it is missing and this user may install it.
set -eu
cd "$(dirname "$0")/.."

# The independent reference reader (contrib/reference) needs two Python packages.
if ! python3 -c 'import cryptography, zstandard' 2>/dev/null; then
    python3 -m pip install --quiet cryptography zstandard 2>/dev/null || pip3 install --quiet cryptography zstandard 2>/dev/null || true
fi
if python3 -c 'import cryptography, zstandard' 2>/dev/null; then
    export COFFER_REQUIRE_REFERENCE=1
else
    echo "test.sh: python3 cryptography/zstandard unavailable: the reference-reader test will be skipped" >&2
fi

# The object storage tests run against an S3 server process (moto, from PyPI).
if ! command -v moto_server >/dev/null 2>&1; then
    python3 -m pip install --quiet 'moto[server]' 2>/dev/null || echo "test.sh: moto_server unavailable: the object storage tests will be skipped" >&2
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --quiet
