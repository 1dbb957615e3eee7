#!/bin/bash
# The portable tarball, as a user meets it (README, "Install"): built from the checkout
# (scripts/package-tarball.sh) twice, byte for byte the same; unpacked into an empty directory;
# then checked: `ldd` lists glibc's libraries and nothing else; no glibc symbol is newer than
# COFFER_GLIBC (2.28); the binary is stripped and names its .debug file; the man page and bash
# completion load; a backup, verify, list and restore round trip (file and pipe) gives back the
# same tree; and the same binary runs that round trip on Debian 11's glibc 2.31 (its loader and
# libraries from the security archive's libc6 package, checked as apt checks it).
# Needs objdump, readelf, man-db, bash-completion; curl, gpgv and Debian's archive keyring for the
# older glibc's run (skipped, loudly, without them or the network; a failure under
# COFFER_REQUIRE_PACKAGE=1, as in CI).
# Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "test-portable.sh: FAILED: $*" >&2; exit 1; }
glibc=${COFFER_GLIBC:-2.28}
if ! command -v cargo-zigbuild >/dev/null 2>&1 || ! { command -v zig >/dev/null 2>&1 || python3 -m ziglang version >/dev/null 2>&1; }; then
    [ "${COFFER_REQUIRE_PACKAGE:-0}" = 1 ] && fail "cargo-zigbuild or zig is missing"
    echo "test-portable.sh: cargo-zigbuild or zig is missing (scripts/test.sh installs them as root): skipped" >&2
    exit 0
fi
paths=$(scripts/package-tarball.sh)
tarball=$(echo "$paths" | sed -n 1p)
debug=$(echo "$paths" | sed -n 2p)
[ -f "$tarball" ] && [ -f "$debug" ] || fail "no tarball built"
first=$(sha256sum "$tarball" "$debug" | cut -d' ' -f1)
scripts/package-tarball.sh >/dev/null
[ "$(sha256sum "$tarball" "$debug" | cut -d' ' -f1)" = "$first" ] || fail "two packings of one build differ"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$tarball" -C "$work"
dir=$work/$(basename "$tarball" .tar.gz)
coffer=$dir/coffer
echo "test-portable.sh: $(basename "$tarball"): $(stat -c %s "$tarball") bytes; coffer: $(stat -c %s "$coffer") bytes; $(basename "$debug"): $(stat -c %s "$debug") bytes"
for f in coffer coffer.1 complete/coffer.bash complete/_coffer complete/coffer.fish systemd/coffer-backup@.service \
    systemd/coffer-backup@.timer systemd/coffer-binlog@.service systemd/coffer-drill@.service systemd/coffer-drill@.timer \
    wsrep_sst_coffer wsrep_sst_coffer.1 magic coffer.toml.example README.md LICENSE doc/FORMAT.md doc/SECURITY.md doc/METRICS.md \
    grafana/coffer.json prometheus/coffer-rules.yml; do
    [ -s "$dir/$f" ] || fail "$f is not in the tarball"
done
[ -x "$coffer" ] && [ -x "$dir/wsrep_sst_coffer" ] || fail "not executable"
"$coffer" --version | grep -Eq '^coffer [0-9.]+ \(commit [0-9a-f]{12}(-dirty)?, crypto aws-lc-rs\)$' || fail "coffer --version: $("$coffer" --version)"

# Every library but glibc's is linked in.
newest=$(scripts/glibc-needs.sh "$coffer") || fail "the binary links more than glibc"
[ "$(printf '%s\n%s\n' "$newest" "$glibc" | sort -V | tail -n 1)" = "$glibc" ] || fail "needs glibc $newest, newer than $glibc"
echo "test-portable.sh: needs glibc $newest; links only: $(ldd "$coffer" | awk '{print $1}' | paste -sd' ')"
# Stripped, with its debug information apart and named.
sections=$(readelf -S "$coffer")
grep -Eq '\.debug_(info|line)' <<<"$sections" && fail "the binary keeps debug sections"
link=$(objcopy --dump-section .gnu_debuglink=/dev/stdout "$coffer" | tr '\0' '\n' | head -n 1)
[ "$link" = "$(basename "$debug")" ] || fail "the binary's debuglink names '$link', not $(basename "$debug")"
grep -q '\.debug_line' <<<"$(readelf -S "$debug" 2>/dev/null)" || fail "the .debug file holds no line tables"
grep -q 'Build ID: [0-9a-f]\{40\}' <<<"$(readelf -n "$coffer")" || fail "the binary has no build id"
# The man page and the bash completion, from where they lie.
if command -v man >/dev/null 2>&1; then
    man -l "$dir/coffer.1" 2>/dev/null | grep -q 'coffer' || fail "the man page does not render"
fi
bash -c ". /usr/share/bash-completion/bash_completion 2>/dev/null; . '$dir/complete/coffer.bash' && complete -p coffer" >/dev/null ||
    fail "the bash completion does not load"
bash -n "$dir/wsrep_sst_coffer" || fail "wsrep_sst_coffer does not parse"

# round_trip TAG [RUNNER...]: backup, verify, list, restore and a piped restore of one tree.
src=$work/src
mkdir -p "$src/db/nested" "$src/empty"
cp -a docs crates/coffer-innodb/tests/data "$src/db/"
head -c 24M /dev/urandom >"$src/db/random.bin"
for i in $(seq 1 200000); do echo "row $i of a table, much like the next"; done >"$src/db/nested/rows.txt"
ln -s nested/rows.txt "$src/db/link"
round_trip() {
    local tag=$1 out=$work/$1
    shift
    mkdir -p "$out"
    "$@" "$coffer" key generate -o "$out/k" -q
    "$@" "$coffer" backup "$src" -o "$out/i.coffer" --key-file "$out/k" -q || fail "$tag: backup"
    "$@" "$coffer" verify "$out/i.coffer" --key-file "$out/k" -q || fail "$tag: verify"
    "$@" "$coffer" list "$out/i.coffer" --key-file "$out/k" | grep -q 'db/nested/rows.txt' || fail "$tag: list"
    "$@" "$coffer" restore "$out/i.coffer" --to "$out/r" --key-file "$out/k" -q || fail "$tag: restore"
    diff -r --no-dereference "$src" "$out/r" || fail "$tag: the restored tree differs"
    "$@" "$coffer" backup "$src" -o - --key-file "$out/k" -q | "$@" "$coffer" restore - --to "$out/p" --key-file "$out/k" -q ||
        fail "$tag: the piped round trip"
    diff -r --no-dereference "$src" "$out/p" || fail "$tag: the piped tree differs"
    echo "test-portable.sh: round trip on $tag: ok"
}
round_trip "glibc $(ldd --version | head -n 1 | grep -o '[0-9.]*$')"

# An older glibc: Debian 11's (2.31), its loader and libraries run the same binary. What is
# downloaded is checked as apt checks it: InRelease's signature by Debian's archive key, the
# index's SHA-256 from it, the package's SHA-256 from the index.
old_glibc() {
    local url=http://deb.debian.org/debian-security dists=dists/bullseye-security index deb sum
    command -v curl >/dev/null 2>&1 && command -v gpgv >/dev/null 2>&1 || return 1
    curl -sfL --max-time 60 -o "$work/InRelease" "$url/$dists/InRelease" || return 1
    gpgv --keyring /usr/share/keyrings/debian-archive-keyring.gpg --output "$work/Release" "$work/InRelease" 2>/dev/null ||
        fail "Debian 11's InRelease is not signed by Debian's archive key"
    curl -sfL --max-time 60 -o "$work/Packages.xz" "$url/$dists/main/binary-amd64/Packages.xz" || return 1
    index=$(awk '$3 == "main/binary-amd64/Packages.xz" && length($1) == 64 {print $1; exit}' "$work/Release")
    [ "$(sha256sum <"$work/Packages.xz" | cut -d' ' -f1)" = "$index" ] || fail "Packages.xz is not the one InRelease names"
    xz -dc "$work/Packages.xz" >"$work/Packages"
    deb=$(awk '/^Package: libc6$/{p=1} p && /^Filename:/{print $2} p && /^$/{exit}' "$work/Packages")
    sum=$(awk '/^Package: libc6$/{p=1} p && /^SHA256:/{print $2} p && /^$/{exit}' "$work/Packages")
    [ -n "$deb" ] && [ -n "$sum" ] || return 1
    curl -sfL --max-time 120 -o "$work/libc6.deb" "$url/$deb" || return 1
    [ "$(sha256sum <"$work/libc6.deb" | cut -d' ' -f1)" = "$sum" ] || fail "$deb is not the one the index names"
    basename "$deb" >"$work/libc6.name"
}
# (Not in a subshell: a package that fails its check fails the test; only a missing one skips.)
if old_glibc; then
    deb=$(cat "$work/libc6.name")
    dpkg-deb -x "$work/libc6.deb" "$work/old"
    lib=$work/old/lib/x86_64-linux-gnu
    loader=$(ls "$lib"/ld-2.*.so)
    round_trip "glibc $(basename "$loader" .so | cut -d- -f2) ($deb)" "$loader" --library-path "$lib"
else
    [ "${COFFER_REQUIRE_PACKAGE:-0}" = 1 ] && fail "Debian 11's libc6 could not be fetched (the run on an older glibc is required)"
    echo "test-portable.sh: WARNING: Debian 11's libc6 could not be fetched: the run on an older glibc is skipped" >&2
fi
echo "test-portable.sh: ok"
