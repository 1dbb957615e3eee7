#!/bin/bash
# What sharing a repository costs (issue 26): the requests a backup, a restore and a prune make
# against an S3 server (moto), counted from its access log, and the wall time of a small restore
# (request-bound), for this coffer and, if OLD names one, an older coffer binary:
#
#   scripts/bench-leases.sh                    # target/release/coffer
#   OLD=/path/to/old/coffer scripts/bench-leases.sh
#
# Needs moto_server (pip install 'moto[server]') and curl. Runs of BENCH_RUNS (default 10).
set -euo pipefail
new=${NEW:-$(dirname "$0")/../target/release/coffer}
runs=${BENCH_RUNS:-10}
work=$(mktemp -d)
trap 'kill $moto 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
moto_server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto=$!
until curl -s "http://127.0.0.1:$port/" >/dev/null; do sleep 0.2; done
curl -s -X PUT "http://127.0.0.1:$port/bench" >/dev/null
export AWS_ACCESS_KEY_ID=t AWS_SECRET_ACCESS_KEY=t AWS_REGION=us-east-1 COFFER_S3_ENDPOINT=http://127.0.0.1:$port
mkdir "$work/src"
head -c 1000000 /dev/urandom >"$work/src/data"
printf '%064x\n' 7 >"$work/k" && chmod 600 "$work/k"

requests() { grep -aoE '"(GET|PUT|POST|HEAD|DELETE) ' "$work/moto.log" | wc -l; }
bench() {
    local name=$1 bin=$2 object
    : >"$work/moto.log"
    "$bin" backup "$work/src" -o "s3://bench/$name/" --key-file "$work/k" -q
    local backup=$(requests)
    sleep 1.1 # a second apart: an older coffer names backups to the second
    "$bin" backup "$work/src" -o "s3://bench/$name/" --key-file "$work/k" -q
    object=$(curl -s "http://127.0.0.1:$port/bench?prefix=$name/" | grep -o "<Key>$name/[^<]*coffer</Key>" | head -1 | sed 's/<[^>]*>//g')
    : >"$work/moto.log"
    rm -rf "$work/r" && "$bin" restore "s3://bench/$object" --to "$work/r" --key-file "$work/k" -q
    local restore=$(requests)
    local start=$(date +%s%N)
    for _ in $(seq "$runs"); do
        rm -rf "$work/r" && "$bin" restore "s3://bench/$object" --to "$work/r" --key-file "$work/k" -q
    done
    local ms=$(( ($(date +%s%N) - start) / 1000000 / runs ))
    : >"$work/moto.log"
    "$bin" prune "s3://bench/$name/" --keep-last 1 --key-file "$work/k" -q
    local prune=$(requests)
    printf '%-6s backup %2d requests, restore %2d requests (%4d ms), prune of 2 backups %2d requests\n' \
        "$name" "$backup" "$restore" "$ms" "$prune"
}
[ -n "${OLD:-}" ] && bench old "$OLD"
bench new "$new"
