#!/bin/bash
# Backups to and from an S3 server on loopback, in one run (issue 7):
#   coffer backup DIR -o s3://...   and   coffer restore s3://... --to DIR
# against the same bytes moved by rclone (the server's own ceiling, each way), the pipelines
#   tar | zstd -T0 -1 | openssl enc | rclone rcat   and   rclone cat | openssl dec | zstd -d | tar x
# and coffer's local-disk figures. The server is moto_server (PyPI moto[server]) unless
# BENCH_S3_ENDPOINT names another (with BENCH_S3_BUCKET, and credentials in AWS_*).
# Medians of BENCH_RUNS (default 3); the page cache is dropped and the source read back first.
# Then a key rotation on a 1 GiB object (header only: the server copies the rest) against
# moving its bytes down and up again (rclone cat | rclone rcat), and the same rotation on a file.
# BENCH_ONLY=rotate runs only that part, BENCH_ONLY=transfer all but it; BENCH_S3_SERVER=moto uses moto_server even where
# s3s-fs is installed.
#
#   sudo scripts/bench-store.sh [DIR]     # default: two tables (~500 MB) of the sysbench datadir
set -euo pipefail
cd "$(dirname "$0")/.."
work=${BENCH_DIR:-/var/tmp/coffer-bench}/store
runs=${BENCH_RUNS:-3}
mkdir -p "$work"
cargo build --release --quiet -p coffer-cli
coffer=$PWD/target/release/coffer
src=${1:-$work/src}
if [ ! -d "$src" ]; then
    mkdir -p "$src"
    cp "${BENCH_DIR:-/var/tmp/coffer-bench}"/sysbench/sbtest/sbtest{1,2}.ibd "$src"/
fi
key=$work/bench.key
[ -f "$key" ] || $coffer key generate -o "$key" -q
bytes=$(du -sb --apparent-size "$src" | cut -f1)
unset AWS_CA_BUNDLE
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test} AWS_REGION=${AWS_REGION:-us-east-1}
bucket=${BENCH_S3_BUCKET:-bench}
server_name=${BENCH_S3_ENDPOINT:+external}
if [ -z "${BENCH_S3_ENDPOINT:-}" ]; then
    port=45900
    s3s=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
    if [ -x "$s3s" ] && [ "${BENCH_S3_SERVER:-}" != moto ]; then
        # s3s-fs (crates.io, `cargo install s3s-fs@0.14.1 --features binary`): S3 over a directory.
        server_name="s3s-fs 0.14.1"
        rm -rf "$work/s3root"; mkdir -p "$work/s3root"
        "$s3s" --host 127.0.0.1 --port $port --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" "$work/s3root" >/dev/null 2>&1 &
    else
        server_name="moto_server"
        moto_server -H 127.0.0.1 -p $port >/dev/null 2>&1 &
    fi
    server=$!
    trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
    BENCH_S3_ENDPOINT=http://127.0.0.1:$port
    until curl -s -o /dev/null "$BENCH_S3_ENDPOINT"; do sleep 0.1; done
fi
export COFFER_S3_ENDPOINT=$BENCH_S3_ENDPOINT
export RCLONE_CONFIG_S3_TYPE=s3 RCLONE_CONFIG_S3_PROVIDER=Other RCLONE_CONFIG_S3_ENDPOINT=$BENCH_S3_ENDPOINT \
    RCLONE_CONFIG_S3_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_S3_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
    RCLONE_CONFIG_S3_REGION=$AWS_REGION RCLONE_CONFIG_S3_FORCE_PATH_STYLE=true
rclone mkdir "s3:$bucket" 2>/dev/null || true
pass=$work/pass; [ -f "$pass" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$pass"
dst=$work/dst

prepare_cache() { sync; echo 3 >/proc/sys/vm/drop_caches; find "$src" -type f -exec cat {} + >/dev/null; }
measure() {
    local i rows=()
    for i in $(seq 1 "$runs"); do
        rm -rf "$dst"; mkdir -p "$dst"
        eval "${2:-true}"
        prepare_cache
        /usr/bin/time -f "%e" -o "$work/time" bash -c "$1" >/dev/null 2>"$work/stderr" || { echo "FAILED: $1: $(tail -3 "$work/stderr")" >&2; exit 1; }
        rows+=("$(cat "$work/time")")
    done
    printf '%s\n' "${rows[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p"
}

rotation() {
    mkdir -p "$work/big"
    [ -f "$work/big/blob" ] || head -c 1G /dev/urandom >"$work/big/blob"
    local key2=$work/bench2.key
    [ -f "$key2" ] || $coffer key generate -o "$key2" -q
    $coffer backup "$work/big" -o "s3://$bucket/big.coffer" --compress none --key-file "$key" -q --force
    $coffer backup "$work/big" -o "$work/big.coffer" --compress none --key-file "$key" -q --force
    local size; size=$(stat -c %s "$work/big.coffer")
    # Each run rotates there and back: two rotations, halved.
    local there_back="$coffer key rotate s3://$bucket/big.coffer --key-file $key --new-key-file $key2 -q && $coffer key rotate s3://$bucket/big.coffer --key-file $key2 --new-key-file $key -q"
    local rot_s3; rot_s3=$(measure "$there_back")
    local file_back="$coffer key rotate $work/big.coffer --key-file $key --new-key-file $key2 -q && $coffer key rotate $work/big.coffer --key-file $key2 --new-key-file $key -q"
    local rot_file; rot_file=$(measure "$file_back")
    # rclone 1.60's rcat fails against moto (a HEAD with ?versionId=null answered 400).
    local moved="n/a"
    [ "$server_name" = moto_server ] || moved=$(measure "rclone cat s3:$bucket/big.coffer | rclone rcat s3:$bucket/big-copy.coffer")
    local rekeyed; rekeyed=$(measure "$coffer rekey s3://$bucket/big.coffer -o s3://$bucket/big-rekeyed.coffer --key-file $key --new-key-file $key2 -q --force")
    local log; log=$($coffer key rotate "s3://$bucket/big.coffer" --key-file "$key" --new-key-file "$key2" 2>&1 | head -1)
    $coffer key rotate "s3://$bucket/big.coffer" --key-file "$key2" --new-key-file "$key" -q
    half() { echo "scale=2; $1 / 2" | bc; }
    echo "## Key rotation on a $(( size / 1000000 )) MB image, $server_name on loopback, $(nproc) cores, median of $runs"
    echo
    echo "| what | s |"
    echo "|---|---|"
    echo "| **coffer key rotate s3://...** (new header part + server-side copy) | $(half "$rot_s3") |"
    echo "| rclone cat \| rclone rcat of the same object (what a rewrite through the host moves) | $moved |"
    echo "| coffer rekey s3://... -o s3://... (a new data key: down, re-encrypted, up) | $rekeyed |"
    echo "| coffer key rotate FILE (both header copies rewritten in place, flushed) | $(half "$rot_file") |"
    echo
    echo "coffer said: ${log#coffer: }"
    echo "Rotation vs rekey through this host: $(echo "scale=1; $rekeyed / $(half "$rot_s3")" | bc)x."
}
if [ "${BENCH_ONLY:-}" = rotate ]; then
    rotation
    exit 0
fi

# The image's size, for rclone's raw copies of as many bytes.
$coffer backup "$src" -o "$work/local.coffer" --key-file "$key" -q --force
head -c "$(stat -c %s "$work/local.coffer")" /dev/urandom >"$work/raw"
head -c "$bytes" /dev/urandom >"$work/raw-data"
rclone copyto "$work/raw" s3:$bucket/raw-read
rclone copyto "$work/raw-data" s3:$bucket/raw-data-read

up_raw=$(measure "rclone copyto --ignore-times $work/raw s3:$bucket/raw")
# As coffer must upload an image it streams (its size unknown until the end): multipart, with
# coffer's default parts (16 MiB, 8 in flight). rclone sends a file under 200 MiB in one PUT.
up_raw_mp=$(measure "rclone copyto --ignore-times --s3-upload-cutoff 0 --s3-chunk-size 16M --s3-upload-concurrency 8 $work/raw s3:$bucket/raw")
down_raw=$(measure "rclone cat s3:$bucket/raw-read >/dev/null")
up_raw_data=$(measure "rclone copyto --ignore-times $work/raw-data s3:$bucket/raw-data")
down_raw_data=$(measure "rclone cat s3:$bucket/raw-data-read >/dev/null")
up_coffer=$(measure "$coffer backup $src -o s3://$bucket/c.coffer --key-file $key -q --force")
down_coffer=$(measure "$coffer restore s3://$bucket/c.coffer --to $dst --key-file $key -q --force")
up_pipe=$(measure "tar -C $src -cf - . | zstd -T0 -1 -q | openssl enc -aes-256-ctr -pbkdf2 -pass file:$pass | rclone rcat s3:$bucket/t.tar.zst.enc")
down_pipe=$(measure "rclone cat s3:$bucket/t.tar.zst.enc | openssl enc -d -aes-256-ctr -pbkdf2 -pass file:$pass | zstd -d -q | tar -C $dst -xf - && sync")
up_local=$(measure "$coffer backup $src -o $work/l.coffer --key-file $key -q --force")
down_local=$(measure "$coffer restore $work/l.coffer --to $dst --key-file $key -q --force" "true")

mbs() { echo "scale=0; $bytes / 1000000 / $1" | bc; }
ratio() { echo "scale=2; $2 / $1" | bc; }
echo "## Object storage: $(du -sh --apparent-size "$src" | cut -f1) in $(find "$src" -type f | wc -l) files, $server_name on loopback, $(nproc) cores, median of $runs"
echo
echo "| what | up s | up MB/s | down s | down MB/s |"
echo "|---|---|---|---|---|"
# rclone sends a file under its --s3-upload-cutoff (200 MiB) in one PUT.
how="one PUT"; [ "$(stat -c %s "$work/raw")" -lt $((200 << 20)) ] || how="multipart, rclone's defaults"
echo "| rclone, raw bytes of the image's size (the server's ceiling for coffer's bytes; up: $how) | $up_raw | $(mbs "$up_raw") | $down_raw | $(mbs "$down_raw") |"
echo "| rclone, the same raw bytes up as a multipart upload like coffer's (16 MiB parts, 8 in flight) | $up_raw_mp | $(mbs "$up_raw_mp") | | |"
echo "| rclone, raw bytes of the data's size | $up_raw_data | $(mbs "$up_raw_data") | $down_raw_data | $(mbs "$down_raw_data") |"
echo "| tar \\| zstd -T0 -1 \\| openssl enc \\| rclone rcat, and back | $up_pipe | $(mbs "$up_pipe") | $down_pipe | $(mbs "$down_pipe") |"
echo "| **coffer backup -o s3:// / restore s3://** | $up_coffer | $(mbs "$up_coffer") | $down_coffer | $(mbs "$down_coffer") |"
echo "| coffer backup / restore, local disk | $up_local | $(mbs "$up_local") | $down_local | $(mbs "$down_local") |"
echo
echo "MB/s are of the data ($(( bytes / 1000000 )) MB); the image is $(( $(stat -c %s "$work/local.coffer") / 1000000 )) MB."
echo "coffer vs the server's ceiling: up $(ratio "$up_coffer" "$up_raw")x of rclone's upload ($how), $(ratio "$up_coffer" "$up_raw_mp")x of a multipart upload of the same bytes, down $(ratio "$down_coffer" "$down_raw")x; vs the rclone pipelines: up $(ratio "$up_coffer" "$up_pipe")x, down $(ratio "$down_coffer" "$down_pipe")x (MB/s of the data, time ratios)."
[ "${BENCH_ONLY:-}" = transfer ] || { echo; rotation; }
