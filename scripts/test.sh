#!/bin/sh
# Runs every test: formatting, lints, unit, property, end-to-end and known-answer tests, and the
# tests against real servers (MariaDB, Galera, S3, age).
# As root on Debian it first installs what those tests need, if missing: Debian's mariadb-server,
# mariadb-backup, sysbench, galera-4, age, socat, systemd (systemd-analyze), prometheus (promtool),
# man-db, bash-completion, binutils, xz-utils, curl and lintian (the packages' tests) and the MariaDB
# compression providers; PyPI's cryptography, zstandard, moto[server] and prometheus-client;
# crates.io's s3s-fs; for the packages, crates.io's cargo-deb and cargo-zigbuild and PyPI's
# ziglang; for the dashboard, npm's @grafana/schema and typescript (Debian's nodejs and npm if
# missing). The fault tests (docs/RELIABILITY.md) need root as well: a small tmpfs for a full
# disk, /dev/fuse for the power-cut file system. Otherwise tests whose tools are
# missing say so and skip (COFFER_REQUIRE_*=1 makes them fail instead, as CI does).
set -eu
cd "$(dirname "$0")/.."

packages="mariadb-server mariadb-backup sysbench mariadb-plugin-provider-lz4 mariadb-plugin-provider-lzo
  mariadb-plugin-provider-lzma mariadb-plugin-provider-bzip2 mariadb-plugin-provider-snappy python3 file age
  galera-4 socat openssl systemd man-db bash-completion prometheus binutils xz-utils curl lintian"
pip_install() {
    python3 -m pip install --quiet "$@" 2>/dev/null || python3 -m pip install --quiet --break-system-packages "$@" 2>/dev/null
}
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    missing=""
    for p in $packages; do
        dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "test.sh: installing with apt-get:$missing" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # The packages' own service is never used (tests start private servers); keep it from
        # starting during installation.
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        apt-get install -y -qq $missing >/dev/null
    fi
    # The Debian package's builder (scripts/package-deb.sh, tested by scripts/test-deb.sh).
    if ! command -v cargo-deb >/dev/null 2>&1; then
        echo "test.sh: installing cargo-deb with cargo" >&2
        cargo install --quiet --locked cargo-deb@3.8.0
    fi
    # The portable binary's builder (scripts/build-portable.sh): zig links against its stubs of
    # an older glibc, and brings a static unwinder.
    if ! command -v cargo-zigbuild >/dev/null 2>&1; then
        echo "test.sh: installing cargo-zigbuild with cargo" >&2
        cargo install --quiet --locked cargo-zigbuild@0.24.1
    fi
    command -v zig >/dev/null 2>&1 || python3 -m ziglang version >/dev/null 2>&1 || pip_install --require-hashes -r scripts/pins/ziglang.txt
    # The dashboard's check against Grafana's schema (scripts/test-dashboard.sh) runs TypeScript.
    command -v npm >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
    # An S3 server that checks credentials, for that test (s3s-fs, from crates.io; its newer
    # releases need a newer rustc).
    if [ ! -x "$HOME/.cargo/bin/s3s-fs" ]; then
        echo "test.sh: installing s3s-fs 0.14.1 with cargo" >&2
        cargo install --quiet --locked s3s-fs@0.14.1 --features binary || cargo install --quiet s3s-fs@0.14.1 --features binary
    fi
fi

# The independent reference reader (contrib/reference) needs cryptography 44 or later (Argon2id)
# and zstandard.
if ! python3 -c 'import zstandard; from cryptography.hazmat.primitives.kdf.argon2 import Argon2id' 2>/dev/null; then
    echo "test.sh: installing cryptography>=44 and zstandard with pip" >&2
    pip_install --upgrade 'cryptography>=44' zstandard || true
fi
if python3 -c 'import zstandard; from cryptography.hazmat.primitives.kdf.argon2 import Argon2id' 2>/dev/null; then
    export COFFER_REQUIRE_REFERENCE=1
else
    echo "test.sh: python3 cryptography/zstandard unavailable: the reference-reader test will be skipped" >&2
fi

# The object storage tests run against an S3 server process (moto, from PyPI).
if ! command -v moto_server >/dev/null 2>&1; then
    echo "test.sh: installing moto[server] with pip" >&2
    pip_install 'moto[server]' || echo "test.sh: moto_server unavailable: the object storage tests will be skipped" >&2
fi
python3 -c 'import prometheus_client' 2>/dev/null || pip_install prometheus-client || echo "test.sh: prometheus_client unavailable: the metrics tests will be skipped" >&2

# The power-cut file system (crates/powercut) mounts through /dev/fuse.
[ "$(id -u)" != 0 ] || [ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --quiet
# The Debian package, built, installed, checked, upgraded and purged (as root; skipped otherwise),
# and the portable tarball, unpacked and run, also on an older glibc. Both ship one binary.
scripts/test-deb.sh
scripts/test-portable.sh
# The Grafana dashboard against Grafana's own JSON model (@grafana/schema, TypeScript).
scripts/test-dashboard.sh
