#!/bin/sh
# The Debian package, as a user meets it (README, "Install"): built from the checkout
# (scripts/package-deb.sh), installed with apt-get as root, then checked: `coffer --version` from
# the PATH, `man -w coffer`, the bash completion loads, `systemd-analyze verify` on the installed
# units, the Galera SST script on the PATH, `file` names an image with the installed magic, the example config parses (failing
# only on its key file and hosts), an upgrade keeps a user's coffer.toml, and `apt-get remove`
# then `purge` leave nothing but what Debian policy keeps. Needs root, apt-get, dpkg-deb, man-db,
# bash-completion, file, systemd. Run by scripts/test.sh.
set -eu
cd "$(dirname "$0")/.."
fail() { echo "test-deb.sh: FAILED: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "test-deb.sh: needs root (it installs the package): skipped" >&2; exit 0; }
for tool in cargo-deb cargo-zigbuild; do
    command -v "$tool" >/dev/null 2>&1 && continue
    [ "${COFFER_REQUIRE_PACKAGE:-0}" = 1 ] && fail "$tool is missing"
    echo "test-deb.sh: $tool is missing (scripts/test.sh installs it as root): skipped" >&2
    exit 0
done
out=$(scripts/package-deb.sh | tail -n 20)
deb=$(echo "$out" | grep '\.deb$' | tail -n 1)
dbg=$(echo "$out" | grep '\.ddeb$' | tail -n 1 || true)
[ -f "$deb" ] || fail "no package built"
work=$(mktemp -d)
trap 'rm -rf "$work"; dpkg -P coffer coffer-dbgsym >/dev/null 2>&1 || true' EXIT
dpkg -P coffer >/dev/null 2>&1 || true

echo "test-deb.sh: $(basename "$deb"): $(stat -c %s "$deb") bytes${dbg:+; $(basename "$dbg"): $(stat -c %s "$dbg") bytes}"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$(realpath "$deb")" >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; fail "apt-get install"; }
[ "$(command -v coffer)" = /usr/bin/coffer ] || fail "coffer is not /usr/bin/coffer on the PATH"
coffer --version | grep -Eq '^coffer [0-9.]+ \(commit [0-9a-f]{12}, crypto aws-lc-rs\)$' || fail "coffer --version: $(coffer --version)"
# The package ships the portable binary: glibc's libraries only, and Depends says the glibc it needs.
others=$(ldd /usr/bin/coffer | awk '{print $1}' | grep -Ev '^(linux-vdso\.so\.1|/lib64/ld-linux-x86-64\.so\.2|lib(c|m|pthread|dl|rt)\.so\.[0-9]+)$' || true)
[ -z "$others" ] || fail "the binary links more than glibc: $others"
newest=$(objdump -T /usr/bin/coffer | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
[ "$(dpkg-query -W -f '${Depends}' coffer)" = "libc6 (>= $newest)" ] || fail "Depends: $(dpkg-query -W -f '${Depends}' coffer), but the binary needs glibc $newest"
[ -x /usr/bin/wsrep_sst_coffer ] || fail "the Galera SST script is not /usr/bin/wsrep_sst_coffer"
cmp -s /usr/share/coffer/grafana/coffer.json contrib/grafana/coffer.json && cmp -s /usr/share/coffer/prometheus/coffer-rules.yml contrib/prometheus/coffer-rules.yml ||
    fail "the dashboard or the alert rules are not in /usr/share/coffer"
# The binary in the package is stripped; its debug information is apart.
file /usr/bin/coffer | grep -q 'not stripped' && fail "the binary is not stripped"
man -w coffer >/dev/null 2>&1 || fail "man -w coffer finds no page"
bash -c '. /usr/share/bash-completion/bash_completion 2>/dev/null; . /usr/share/bash-completion/completions/coffer && complete -p coffer' >/dev/null ||
    fail "the bash completion does not load"
[ -s /usr/share/zsh/vendor-completions/_coffer ] && [ -s /usr/share/fish/vendor_completions.d/coffer.fish ] || fail "zsh/fish completions"
for u in coffer-backup@.service coffer-backup@.timer coffer-binlog@.service coffer-drill@.service coffer-drill@.timer; do
    [ -f "/lib/systemd/system/$u" ] || fail "$u not installed"
done
systemctl is-enabled coffer-backup@prod.timer >/dev/null 2>&1 && fail "a unit is enabled"
systemd-analyze verify /lib/systemd/system/coffer-backup@prod.service /lib/systemd/system/coffer-drill@prod.service \
    /lib/systemd/system/coffer-binlog@prod.service >"$work/verify.log" 2>&1 || { cat "$work/verify.log"; fail "systemd-analyze verify"; }
# An image, named by file(1) with the installed magic.
mkdir "$work/src" && echo hello >"$work/src/a"
coffer key generate -o "$work/k" -q
coffer backup "$work/src" -o "$work/i.coffer" --key-file "$work/k" -q
file -m /usr/share/coffer/magic "$work/i.coffer" | grep -q 'coffer backup image' || fail "file: $(file -m /usr/share/coffer/magic "$work/i.coffer")"
# The example parses: what fails is what an example cannot have (its key file, its hosts).
[ -f /etc/coffer/coffer.toml.example ] && [ ! -e /etc/coffer/coffer.toml ] || fail "/etc/coffer/coffer.toml.example, and no coffer.toml"
coffer config check --config /etc/coffer/coffer.toml.example >"$work/check.log" 2>&1 && fail "config check passed on an example"
grep -Eq 'backup.key|backups|mysqld.sock|socket' "$work/check.log" || { cat "$work/check.log"; fail "config check failed on something else"; }
grep -Eiq 'unknown|not an option|expected' "$work/check.log" && { cat "$work/check.log"; fail "the example does not parse"; }
# An upgrade (the same package, a later version) keeps the user's file.
printf '[profile.mine]\nthreads = 2\n' >/etc/coffer/coffer.toml
mkdir "$work/up" && dpkg-deb -R "$deb" "$work/up"
version=$(sed -n 's/^Version: //p' "$work/up/DEBIAN/control")
sed -i "s/^Version: .*/Version: $version+1/" "$work/up/DEBIAN/control"
dpkg-deb -b "$work/up" "$work/coffer_up.deb" >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$work/coffer_up.deb" >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; fail "upgrade"; }
[ "$(dpkg-query -W -f '${Version}' coffer)" = "$version+1" ] || fail "not upgraded"
grep -q 'profile.mine' /etc/coffer/coffer.toml || fail "the upgrade changed the user's coffer.toml"
# remove keeps the conffiles (and the user's file); purge takes the package's conffiles.
DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq coffer >/dev/null 2>&1 || fail "apt-get remove"
[ ! -e /usr/bin/coffer ] && [ ! -e /usr/bin/wsrep_sst_coffer ] && [ ! -e /usr/share/man/man1/coffer.1.gz ] && [ ! -e /lib/systemd/system/coffer-backup@.service ] || fail "remove left files"
[ -f /etc/coffer/coffer.toml.example ] || fail "remove took the conffile"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq coffer >/dev/null 2>&1 || fail "apt-get purge"
[ ! -e /etc/coffer/coffer.toml.example ] || fail "purge left the example"
[ -f /etc/coffer/coffer.toml ] || fail "purge took the user's own coffer.toml"
rm -f /etc/coffer/coffer.toml && rmdir /etc/coffer 2>/dev/null || true
dpkg -L coffer >/dev/null 2>&1 && fail "the package is still known"
echo "test-deb.sh: ok"
