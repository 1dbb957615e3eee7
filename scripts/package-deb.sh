#!/bin/sh
# Builds the Debian package: the release binary, its man page and completions made from the
# command line (they never drift from it), then `cargo deb` (cargo install cargo-deb) with the
# debug information split into a -dbgsym package. Prints the packages' paths.
#
#   scripts/package-deb.sh            # target/debian/coffer_VERSION-1_ARCH.deb (+ -dbgsym)
set -eu
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || { echo "package-deb.sh: cargo-deb is missing: cargo install --locked cargo-deb" >&2; exit 1; }
target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -p coffer-cli
coffer=$target/release/coffer
assets=$target/release/deb-assets
rm -rf "$assets"
mkdir -p "$assets"
"$coffer" manpage | gzip -9n >"$assets/coffer.1.gz"
"$coffer" completions bash >"$assets/coffer.bash"
"$coffer" completions zsh >"$assets/_coffer"
"$coffer" completions fish >"$assets/coffer.fish"
# The units of contrib/systemd name /usr/local/bin (an install by hand); the package's, /usr/bin.
for unit in contrib/systemd/*.service contrib/systemd/*.timer; do
    sed 's#/usr/local/bin/coffer#/usr/bin/coffer#g' "$unit" >"$assets/$(basename "$unit")"
done
cargo deb -p coffer-cli --no-build --locked --dbgsym
ls "$target"/debian/*.deb "$target"/debian/*.ddeb 2>/dev/null || true
