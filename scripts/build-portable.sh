#!/bin/sh
# Builds the release binary that the Debian package and the portable tarball both ship, and the
# man page and completions made from it (they never drift from the command line). Prints the
# binary's path; the generated files are in assets/ beside it.
#
# Portable: every library but glibc's is linked in (liblzma through xz2's `static` feature; the
# unwinder from zig's static libunwind, not libgcc_s), and glibc's symbols are those of
# COFFER_GLIBC (default 2.28: RHEL 8, Debian 10, Ubuntu 20.04 and later), because
# cargo-zigbuild links against zig's stubs of that glibc version. Needs cargo-zigbuild
# (cargo install --locked cargo-zigbuild) and zig (pip install ziglang). A musl build would
# need the musl Rust target, which this toolchain cannot install.
#
#   scripts/build-portable.sh         # target/x86_64-unknown-linux-gnu/release/coffer
set -eu
cd "$(dirname "$0")/.."
glibc=${COFFER_GLIBC:-2.28}
# Read by build.rs: a new digest of the differences from HEAD reruns it (its "-dirty" mark).
COFFER_TREE_STATE=$(git diff HEAD 2>/dev/null | sha256sum | cut -c1-16)
export COFFER_TREE_STATE
triple=$(uname -m)-unknown-linux-gnu
command -v cargo-zigbuild >/dev/null 2>&1 || { echo "build-portable.sh: cargo-zigbuild is missing: cargo install --locked cargo-zigbuild" >&2; exit 1; }
command -v zig >/dev/null 2>&1 || python3 -m ziglang version >/dev/null 2>&1 || { echo "build-portable.sh: zig is missing: pip install ziglang" >&2; exit 1; }
target=${CARGO_TARGET_DIR:-$PWD/target}
# A build id (zig's linker adds none by itself), for debuginfod, coredumpctl and the dbgsym's
# /usr/lib/debug/.build-id/ path; _FORTIFY_SOURCE for the C libraries built in (zstd, aws-lc,
# liblzma, bzip2), as Debian builds C.
ftriple=$(echo "$triple" | tr 'a-z-' 'A-Z_')
export "CARGO_TARGET_${ftriple}_RUSTFLAGS=-C link-arg=-Wl,--build-id=sha1"
export "CFLAGS_$(echo "$triple" | tr '-' '_')=-D_FORTIFY_SOURCE=2"
cargo zigbuild --release --locked --quiet -p coffer-cli --target "$triple.$glibc" >&2
dir=$target/$triple/release
coffer=$dir/coffer
assets=$dir/assets
rm -rf "$assets"
mkdir -p "$assets"
"$coffer" manpage | gzip -9n >"$assets/coffer.1.gz"
"$coffer" completions bash >"$assets/coffer.bash"
"$coffer" completions zsh >"$assets/_coffer"
"$coffer" completions fish >"$assets/coffer.fish"
echo "$coffer"
