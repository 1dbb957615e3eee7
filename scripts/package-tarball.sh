#!/bin/sh
# Builds the portable tarball: the binary of scripts/build-portable.sh (every library but
# glibc's linked in; glibc 2.28 or later), stripped, with its man page, completions, systemd
# units, Galera SST script, Grafana dashboard, Prometheus alert rules, file(1) magic, example
# configuration and docs beside it. Its debug information goes to a separate .debug file
# (found by gdb through the binary's debuglink).
# The archive is reproducible: names sorted, owner root, times those of the commit.
# Prints the paths of the tarball, the .debug file and SHA256SUMS.
#
#   scripts/package-tarball.sh        # target/dist/coffer-VERSION-ARCH-linux-gnu.tar.gz
set -eu
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/target}
coffer=$(scripts/build-portable.sh)
assets=$(dirname "$coffer")/assets
version=$("$coffer" --version | cut -d' ' -f2)
name=coffer-$version-$(uname -m)-linux-gnu
dist=$target/dist
stage=$dist/$name
rm -rf "$stage" "$dist/$name.tar.gz" "$dist/$name.debug"
mkdir -p "$stage/complete" "$stage/systemd" "$stage/doc" "$stage/grafana" "$stage/prometheus"
objcopy --only-keep-debug --compress-debug-sections "$coffer" "$dist/$name.debug"
chmod 644 "$dist/$name.debug"
objcopy --strip-all --add-gnu-debuglink="$dist/$name.debug" "$coffer" "$stage/coffer"
# The units name /usr/local/bin/coffer: where the README's steps put the binary.
cp contrib/systemd/*.service contrib/systemd/*.timer contrib/systemd/README.md "$stage/systemd/"
gzip -dc "$assets/coffer.1.gz" >"$stage/coffer.1"
cp "$assets/coffer.bash" "$assets/_coffer" "$assets/coffer.fish" "$stage/complete/"
cp contrib/galera/wsrep_sst_coffer contrib/galera/wsrep_sst_coffer.1 contrib/magic contrib/coffer.toml.example README.md LICENSE "$stage/"
cp docs/FORMAT.md docs/SECURITY.md docs/METRICS.md "$stage/doc/"
cp contrib/grafana/coffer.json contrib/grafana/README.md "$stage/grafana/"
cp contrib/prometheus/coffer-rules.yml contrib/prometheus/README.md "$stage/prometheus/"
chmod 755 "$stage/coffer" "$stage/wsrep_sst_coffer"
epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)
tar -C "$dist" --sort=name --owner=0 --group=0 --numeric-owner --mode=go-w,a+rX --mtime="@$epoch" -cf - "$name" |
    gzip -9n >"$dist/$name.tar.gz"
rm -rf "$stage"
(cd "$dist" && sha256sum "$name.tar.gz" "$name.debug" >SHA256SUMS)
echo "$dist/$name.tar.gz"
echo "$dist/$name.debug"
echo "$dist/SHA256SUMS"
