#!/bin/sh
# The Debian package, as a user meets it (README, "Install"): built from the checkout
# (scripts/package-deb.sh), installed with apt-get as root, then checked: `coffer --version` from
# the PATH, `man -w coffer`, the bash completion loads, `systemd-analyze verify` on the installed
# units (naming /usr/bin/coffer), the Galera SST script and its man page, Debian's changelog
# and copyright, `file` names an image with the installed magic, the example config parses (failing
# only on its key file and hosts), an upgrade keeps a user's coffer.toml, and `apt-get remove`
# then `purge` leave nothing but what Debian policy keeps (purge also takes the admin's enable
# links and coffer's metrics files, never a backup). A coffer package already on the host is
# left alone (the test is skipped, or fails in CI). Needs root, apt-get, dpkg-deb, man-db,
# bash-completion, file, systemd, lintian. Run by scripts/test.sh.
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
# A coffer package this test did not install is the host's own: its timers may run backups.
if dpkg-query -W -f '${Status}' coffer 2>/dev/null | grep -Eq ' (installed|config-files|unpacked|half-installed|half-configured)$'; then
    [ "${COFFER_REQUIRE_PACKAGE:-0}" = 1 ] && fail "a coffer package is installed on this host; the test would remove it"
    echo "test-deb.sh: a coffer package is installed on this host: skipped (it would be removed)" >&2
    exit 0
fi
out=$(scripts/package-deb.sh | tail -n 20)
deb=$(echo "$out" | grep '\.deb$' | tail -n 1)
dbg=$(echo "$out" | grep '\.ddeb$' | tail -n 1 || true)
[ -f "$deb" ] || fail "no package built"
work=$(mktemp -d)
trap 'rm -rf "$work"; dpkg -P coffer coffer-dbgsym >/dev/null 2>&1 || true' EXIT
# Debian's own checker: no error, no warning (the overrides in contrib/debian say why).
if command -v lintian >/dev/null 2>&1; then
    lintian --fail-on error,warning "$deb" >"$work/lintian.log" 2>&1 || { cat "$work/lintian.log"; fail "lintian"; }
elif [ "${COFFER_REQUIRE_PACKAGE:-0}" = 1 ]; then
    fail "lintian is missing"
fi

echo "test-deb.sh: $(basename "$deb"): $(stat -c %s "$deb") bytes${dbg:+; $(basename "$dbg"): $(stat -c %s "$dbg") bytes}"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$(realpath "$deb")" >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; fail "apt-get install"; }
[ "$(command -v coffer)" = /usr/bin/coffer ] || fail "coffer is not /usr/bin/coffer on the PATH"
# Every installed file is the package's, by its md5sums (dpkg --verify, as debsums does).
[ -s /var/lib/dpkg/info/coffer.md5sums ] || fail "the package has no md5sums"
[ -z "$(dpkg --verify coffer)" ] || fail "dpkg --verify coffer: $(dpkg --verify coffer)"
cp /usr/share/coffer/magic "$work/magic" && echo '# changed' >>/usr/share/coffer/magic
dpkg --verify coffer | grep -q '/usr/share/coffer/magic$' || fail "dpkg --verify does not see a changed file"
cp "$work/magic" /usr/share/coffer/magic
coffer --version | grep -Eq '^coffer [0-9.]+ \(commit [0-9a-f]{12}(-dirty)?, crypto aws-lc-rs\)$' || fail "coffer --version: $(coffer --version)"
# The package ships the portable binary: glibc's libraries only, and Depends says the glibc it needs.
newest=$(scripts/glibc-needs.sh /usr/bin/coffer) || fail "the binary links more than glibc"
[ "$(dpkg-query -W -f '${Depends}' coffer)" = "libc6 (>= $newest)" ] || fail "Depends: $(dpkg-query -W -f '${Depends}' coffer), but the binary needs glibc $newest"
[ -x /usr/bin/wsrep_sst_coffer ] || fail "the Galera SST script is not /usr/bin/wsrep_sst_coffer"
cmp -s /usr/share/coffer/grafana/coffer.json contrib/grafana/coffer.json && cmp -s /usr/share/coffer/prometheus/coffer-rules.yml contrib/prometheus/coffer-rules.yml ||
    fail "the dashboard or the alert rules are not in /usr/share/coffer"
# The binary in the package is stripped; its debug information is apart, in the -dbgsym
# package, where gdb, debuginfod and coredumpctl look: under the binary's build id.
file /usr/bin/coffer | grep -q 'not stripped' && fail "the binary is not stripped"
build_id=$(readelf -n /usr/bin/coffer | sed -n 's/^ *Build ID: //p')
[ -n "$build_id" ] || fail "the binary has no build id"
[ -f "$dbg" ] || fail "no -dbgsym package built"
dpkg -i "$dbg" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -i the -dbgsym package"; }
debug_file=/usr/lib/debug/.build-id/$(echo "$build_id" | cut -c1-2)/$(echo "$build_id" | cut -c3-).debug
readelf -S "$debug_file" 2>/dev/null | grep -q '\.debug_line' || fail "no debug information at $debug_file"
dpkg -P coffer-dbgsym >/dev/null 2>&1 || fail "purge the -dbgsym package"
man -w coffer >/dev/null 2>&1 || fail "man -w coffer finds no page"
bash -c '. /usr/share/bash-completion/bash_completion 2>/dev/null; . /usr/share/bash-completion/completions/coffer && complete -p coffer' >/dev/null ||
    fail "the bash completion does not load"
[ -s /usr/share/zsh/vendor-completions/_coffer ] && [ -s /usr/share/fish/vendor_completions.d/coffer.fish ] || fail "zsh/fish completions"
for u in coffer-backup@.service coffer-backup@.timer coffer-binlog@.service coffer-drill@.service coffer-drill@.timer; do
    [ -f "/usr/lib/systemd/system/$u" ] || fail "$u not installed"
    grep -q '^ExecStart=/usr/bin/coffer ' "/usr/lib/systemd/system/$u" || [ "${u%.timer}" != "$u" ] || fail "$u does not run /usr/bin/coffer"
done
grep -q /usr/local/bin /usr/share/doc/coffer/systemd.md && fail "the packaged systemd.md names /usr/local/bin"
man -w wsrep_sst_coffer >/dev/null 2>&1 || fail "man -w wsrep_sst_coffer finds no page"
# Debian's changelog names this version; the copyright file is DEP-5 and names Debian's license.
zcat /usr/share/doc/coffer/changelog.Debian.gz | head -n 1 | grep -q "^coffer ($(dpkg-query -W -f '${Version}' coffer)) " ||
    fail "changelog.Debian.gz does not start with this version: $(zcat /usr/share/doc/coffer/changelog.Debian.gz | head -n 1)"
grep -q '^Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' /usr/share/doc/coffer/copyright &&
    grep -q '/usr/share/common-licenses/Apache-2.0' /usr/share/doc/coffer/copyright || fail "the copyright file"
systemctl is-enabled coffer-backup@prod.timer >/dev/null 2>&1 && fail "a unit is enabled"
systemd-analyze verify /usr/lib/systemd/system/coffer-backup@prod.service /usr/lib/systemd/system/coffer-drill@prod.service \
    /usr/lib/systemd/system/coffer-binlog@prod.service >"$work/verify.log" 2>&1 || { cat "$work/verify.log"; fail "systemd-analyze verify"; }
# An image, named by file(1) with the installed magic.
mkdir "$work/src" && echo hello >"$work/src/a"
coffer key generate -o "$work/k" -q
coffer backup "$work/src" -o "$work/i.coffer" --key-file "$work/k" -q
file -m /usr/share/coffer/magic "$work/i.coffer" | grep -q 'coffer backup image' || fail "file: $(file -m /usr/share/coffer/magic "$work/i.coffer")"
# The example parses: what fails is what an example cannot have (its key file, its hosts).
[ -f /etc/coffer/coffer.toml.example ] && [ ! -e /etc/coffer/coffer.toml ] || fail "/etc/coffer/coffer.toml.example, and no coffer.toml"
coffer config check --config /etc/coffer/coffer.toml.example >"$work/check.log" 2>&1 && fail "config check passed on an example"
# Every line is a failure of what an example cannot have, or the count of them.
grep -Evq '^(prod: FAIL (key-file|password-file|secrets:|repository|binlogs|server) |coffer: error: [0-9]+ checks failed$)' "$work/check.log" &&
    { cat "$work/check.log"; fail "config check failed on something else"; }
grep -q '^prod: FAIL key-file ' "$work/check.log" || { cat "$work/check.log"; fail "config check did not check the example's key"; }
# What the admin and coffer leave on the host: an enabled instance (linked offline, as
# `systemctl enable` does), metrics files, a drill's scratch and a backup kept beside it.
systemctl enable coffer-backup@prod.timer >/dev/null 2>&1 || ln -s /usr/lib/systemd/system/coffer-backup@.timer \
    /etc/systemd/system/timers.target.wants/coffer-backup@prod.timer
prom=/var/lib/prometheus/node-exporter
prom_made=0
[ -d "$prom" ] || { mkdir -p "$prom"; prom_made=1; }
echo 'coffer_last_run_success{command="backup"} 1' >"$prom/coffer.prom"
echo 'other 1' >"$prom/other.prom"
mkdir -p /var/lib/coffer/drill/coffer-drill-Xy3kQ9/datadir /var/lib/coffer/backups
echo leftover >/var/lib/coffer/drill/coffer-drill-Xy3kQ9/datadir/ibdata1
echo "the admin's" >/var/lib/coffer/drill/notes.txt
cp "$work/i.coffer" /var/lib/coffer/backups/kept.coffer
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
[ ! -e /usr/bin/coffer ] && [ ! -e /usr/bin/wsrep_sst_coffer ] && [ ! -e /usr/share/man/man1/coffer.1.gz ] && [ ! -e /usr/lib/systemd/system/coffer-backup@.service ] || fail "remove left files"
[ -f /etc/coffer/coffer.toml.example ] || fail "remove took the conffile"
# purge also takes the admin's enable links (they would name units that are gone), coffer's
# metrics files and a drill's leftovers, never another file there, nor a backup kept under
# /var/lib/coffer.
[ -L /etc/systemd/system/timers.target.wants/coffer-backup@prod.timer ] || fail "remove took the admin's enable link"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq coffer >/dev/null 2>&1 || fail "apt-get purge"
[ ! -L /etc/systemd/system/timers.target.wants/coffer-backup@prod.timer ] || fail "purge left the enable link"
[ ! -e "$prom/coffer.prom" ] && [ -f "$prom/other.prom" ] || fail "purge: coffer's metrics file, or someone else's"
[ ! -e /var/lib/coffer/drill/coffer-drill-Xy3kQ9 ] || fail "purge left a drill's leftover"
[ -f /var/lib/coffer/drill/notes.txt ] || fail "purge took a file of the admin's from the drill's scratch"
cmp -s /var/lib/coffer/backups/kept.coffer "$work/i.coffer" || fail "purge took a backup under /var/lib/coffer"
rm -rf /var/lib/coffer "$prom/other.prom"
[ "$prom_made" = 0 ] || rmdir "$prom" 2>/dev/null || true
[ ! -e /etc/coffer/coffer.toml.example ] || fail "purge left the example"
[ -f /etc/coffer/coffer.toml ] || fail "purge took the user's own coffer.toml"
rm -f /etc/coffer/coffer.toml && rmdir /etc/coffer 2>/dev/null || true
dpkg -L coffer >/dev/null 2>&1 && fail "the package is still known"
echo "test-deb.sh: ok"
