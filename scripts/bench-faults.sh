#!/bin/bash
# What retries cost (issue 28): backup and restore of the same tree to an S3 server on loopback
# (moto_server), directly, and through the fault-injecting proxy (crates/fault-proxy) with 0%,
# 1% and 5% of requests failing (BENCH_FAULTS: the shares, default "0 0.01 0.05") (a mix of 500, 503 SlowDown and connection resets, and GET
# bodies cut short), medians of BENCH_RUNS runs (default 3), then ratios against the clean
# proxied run. Parts and ranges of 5 MiB (S3's smallest; BENCH_PART_SIZE), so that a run makes
# many requests. Each configuration's last restore is compared with the source (diff -r).
#
#   scripts/bench-faults.sh [DIR]     # default: ~300 MB of the sysbench datadir (or generated)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${BENCH_DIR:-/var/tmp/coffer-bench}
work=$base/faults
runs=${BENCH_RUNS:-3}
part=${BENCH_PART_SIZE:-5M}
mkdir -p "$work"
cargo build --release --quiet -p coffer-cli -p fault-proxy
target=${CARGO_TARGET_DIR:-$PWD/target}
coffer=$target/release/coffer
proxy_bin=$target/release/fault-proxy
src=${1:-$work/src}
if [ ! -d "$src" ]; then
    mkdir -p "$src"
    if [ -f "$base/sysbench/sbtest/sbtest1.ibd" ]; then
        cp "$base/sysbench/sbtest/sbtest1.ibd" "$src/"
        head -c 64M "$base/sysbench/sbtest/sbtest2.ibd" >"$src/sbtest2.part"
    else
        # Half random, half text: compressible like a database's files, roughly.
        head -c 150M /dev/urandom >"$src/random.bin"
        seq 1 30000000 | head -c 150M >"$src/text.txt"
    fi
fi
key=$work/bench.key
[ -f "$key" ] || $coffer key generate -o "$key" -q
bytes=$(du -sb --apparent-size "$src" | cut -f1)
unset AWS_CA_BUNDLE
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
port=45910
moto_server -H 127.0.0.1 -p $port >/dev/null 2>&1 &
moto=$!
proxy=
cleanup() {
    [ -n "$proxy" ] && kill "$proxy" 2>/dev/null && wait "$proxy" 2>/dev/null
    kill $moto 2>/dev/null; wait $moto 2>/dev/null || true
}
trap cleanup EXIT
until curl -s -o /dev/null "http://127.0.0.1:$port"; do sleep 0.1; done
curl -s -X PUT -o /dev/null "http://127.0.0.1:$port/bench"
dst=$work/dst

# start_proxy PROBABILITY: a proxy failing that share of every kind of request; sets $endpoint.
start_proxy() {
    rm -f "$work/port" "$work/counters"
    "$proxy_bin" --upstream 127.0.0.1:$port --seed 28 --rule "*:mix@p=$1" --counters "$work/counters" >"$work/port" &
    proxy=$!
    until [ -s "$work/port" ]; do sleep 0.05; done
    endpoint=http://127.0.0.1:$(head -1 "$work/port")
}
stop_proxy() { kill "$proxy"; wait "$proxy" 2>/dev/null || true; proxy=; }

# run_timed CMD: "WALL CPU" seconds of CMD (which must succeed); CPU is coffer's user + system.
run_timed() {
    local start wall
    sync
    start=$(date +%s.%N)
    /usr/bin/time -f '%U %S' -o "$work/cpu" bash -c "$1" >/dev/null 2>"$work/stderr" || { echo "FAILED: $1: $(tail -3 "$work/stderr")" >&2; exit 1; }
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    echo "$wall $(tail -1 "$work/cpu" | awk '{print $1 + $2}')"
}
median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }

# measure NAME: medians of backup and restore through $endpoint, wall and CPU seconds; fills
# B[NAME], R[NAME] (wall) and BC[NAME], RC[NAME] (CPU).
declare -A B R BC RC F
measure() {
    local i t b=() r=() bc=() rc=()
    for i in $(seq 1 "$runs"); do
        t=$(run_timed "COFFER_S3_ENDPOINT=$endpoint $coffer backup '$src' -o s3://bench/f.coffer --force --key-file '$key' -q --part-size $part")
        b+=("${t% *}") bc+=("${t#* }")
        rm -rf "$dst"
        t=$(run_timed "COFFER_S3_ENDPOINT=$endpoint $coffer restore s3://bench/f.coffer --to '$dst' --key-file '$key' -q --part-size $part")
        r+=("${t% *}") rc+=("${t#* }")
    done
    diff -r -q "$src" "$dst" >/dev/null || { echo "FAILED: $1: the restore differs from the source" >&2; exit 1; }
    B[$1]=$(median "${b[@]}") R[$1]=$(median "${r[@]}")
    BC[$1]=$(median "${bc[@]}") RC[$1]=$(median "${rc[@]}")
}

endpoint=http://127.0.0.1:$port
measure direct
F[direct]="-"
shares=${BENCH_FAULTS:-0 0.01 0.05}
for p in $shares; do
    start_proxy $p
    measure "proxy $p"
    sleep 1.2
    F["proxy $p"]=$(cut -d: -f1 "$work/counters" | awk '{print $2 " of " $4}')
    stop_proxy
done

image=$(curl -s "http://127.0.0.1:$port/bench?list-type=2&prefix=f.coffer" | grep -o '<Size>[0-9]*' | head -1 | tr -dc 0-9)
echo "Tree: $src ($((bytes / 1000000)) MB), image $((${image:-0} / 1000000)) MB, parts of $part; $runs runs each, medians;"
echo "moto_server on loopback; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
echo
echo "| path | faults injected of requests (all runs) | backup s | restore s | backup / clean proxy | restore / clean proxy | backup CPU s | restore CPU s |"
echo "|---|---|---|---|---|---|---|---|"
names=(direct)
for p in $shares; do names+=("proxy $p"); done
for name in "${names[@]}"; do
    rb=$(echo "scale=2; ${B[$name]} / ${B["proxy 0"]}" | bc)
    rr=$(echo "scale=2; ${R[$name]} / ${R["proxy 0"]}" | bc)
    printf '| %s | %s | %.1f | %.1f | %s | %s | %.1f | %.1f |\n' "$name" "${F[$name]}" "${B[$name]}" "${R[$name]}" "$rb" "$rr" "${BC[$name]}" "${RC[$name]}"
done
