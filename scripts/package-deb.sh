#!/bin/sh
# Builds the Debian package from the portable binary (scripts/build-portable.sh: the same binary
# as the tarball's, with its man page and completions), with `cargo deb` (cargo install
# cargo-deb), the debug information split into a -dbgsym package, md5sums added. Prints the
# packages' paths.
#
#   scripts/package-deb.sh            # target/debian/coffer_VERSION-1_ARCH.deb (+ -dbgsym)
set -eu
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || { echo "package-deb.sh: cargo-deb is missing: cargo install --locked cargo-deb" >&2; exit 1; }
target=${CARGO_TARGET_DIR:-$PWD/target}
triple=$(uname -m)-unknown-linux-gnu
coffer=$(scripts/build-portable.sh)
assets=$(dirname "$coffer")/assets
# The units of contrib/systemd name /usr/local/bin (an install by hand); the package's, and
# their README, /usr/bin.
for unit in contrib/systemd/*.service contrib/systemd/*.timer; do
    sed 's#/usr/local/bin/coffer#/usr/bin/coffer#g' "$unit" >"$assets/$(basename "$unit")"
done
sed 's#/usr/local/bin/coffer#/usr/bin/coffer#g' contrib/systemd/README.md >"$assets/systemd.md"
gzip -9nc contrib/galera/wsrep_sst_coffer.1 >"$assets/wsrep_sst_coffer.1.gz"
# Only this build's packages, so that the paths printed are this version's.
rm -f "$target"/debian/coffer_*.deb "$target"/debian/coffer-dbgsym_*.ddeb
# cargo-deb reads the assets' "target/release/" as the target's own directory.
cargo deb -p coffer-cli --no-build --locked --dbgsym --target "$triple" >&2
# cargo-deb writes no md5sums: added, so that `dpkg --verify coffer` (and debsums) can prove the
# installed files are the package's, as a file integrity check asks.
for deb in "$target"/debian/coffer_*.deb; do
    root=$(mktemp -d)
    dpkg-deb -R "$deb" "$root"
    (cd "$root" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
    chmod 644 "$root/DEBIAN/md5sums"
    dpkg-deb --root-owner-group -Zxz -b "$root" "$deb" >/dev/null
    rm -rf "$root"
done
ls "$target"/debian/*.deb "$target"/debian/*.ddeb 2>/dev/null || true
