#!/bin/bash
# Compares two builds of coffer on the same data in one run: backup and restore, each made
# durable, medians of BENCH_RUNS runs (default 3), page cache dropped and refilled before each
# run (as scripts/bench.sh does). For refactorings that must not change speed.
#
#   scripts/bench-compare.sh OLD_COMMIT [DATASET]     # DATASET: mixed (default), sysbench, or a directory
#   scripts/bench-compare.sh OLD_BINARY [DATASET]     # an executable instead of a commit
#   BENCH_NEW=BINARY scripts/bench-compare.sh ...     # compare that executable, not the working tree
#
# Builds OLD_COMMIT in a worktree (target dir under BENCH_DIR) and the working tree, then prints a
# Markdown table: wall seconds for each, and new/old, and the image's size. The portable build
# against today's: BENCH_NEW=$(scripts/build-portable.sh) scripts/bench-compare.sh target/release/coffer. BENCH_COLD=1 leaves
# the inputs out of the page cache. Needs root (drop_caches).
set -euo pipefail
cd "$(dirname "$0")/.."
old_rev=${1:?usage: scripts/bench-compare.sh OLD_COMMIT [DATASET]}
set_name=${2:-mixed}
work=${BENCH_DIR:-/var/tmp/coffer-bench}
runs=${BENCH_RUNS:-3}
mkdir -p "$work"

case $set_name in
mixed)
    data=$work/mixed
    if [ ! -d "$data" ]; then
        mkdir -p "$data" && cp -a /usr/lib/x86_64-linux-gnu "$data/lib" && head -c 200M /dev/urandom >"$data/random.bin"
    fi ;;
sysbench)
    data=$work/sysbench
    [ -d "$data" ] || scripts/sysbench-datadir.sh "$data" 8 1000000 >&2 ;;
*) data=$set_name ;;
esac

if [ -n "${BENCH_NEW:-}" ]; then
    new=$(realpath "$BENCH_NEW")
else
    cargo build --release --quiet -p coffer-cli
    new=$PWD/target/release/coffer
fi
if [ -f "$old_rev" ] && [ -x "$old_rev" ]; then
    old=$(realpath "$old_rev")
    old_rev=$(basename "$old_rev")
else
    tree=$work/old-tree
    rm -rf "$tree" && git worktree prune && git worktree add --quiet --detach "$tree" "$old_rev"
    (cd "$tree" && CARGO_TARGET_DIR=$work/old-target cargo build --release --quiet -p coffer-cli)
    old=$work/old-target/release/coffer
    git worktree remove --force "$tree"
fi
new_name=${BENCH_NEW:+$(basename "$BENCH_NEW")}

key=$work/compare.key
[ -f "$key" ] || { "$new" key generate -o "$key" -q; }

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
warm() { find "$@" -type f -exec cat {} + >/dev/null 2>&1 || true; }

# median SECONDS...
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# one_run WARM_DIR CMD: wall seconds of CMD, page cache dropped and refilled first.
one_run() {
    local start
    rm -rf "$work/out.coffer" "$work/restored"
    drop
    [ "${BENCH_COLD:-0}" = 1 ] || warm "$1"
    start=$(date +%s.%N)
    # A run that fails is no time: stop the whole comparison.
    eval "$2" >/dev/null 2>"$work/stderr" || { echo "bench-compare.sh: FAILED: $2: $(tail -n 2 "$work/stderr")" >&2; kill -TERM $$; exit 1; }
    echo "$(date +%s.%N) - $start" | bc
}

echo "| $set_name ($(du -sh "$data" | cut -f1)) | $old_rev | ${new_name:-working tree} | new/old |"
echo "|---|---|---|---|"
# The two builds take turns (old first on odd runs, new first on even ones): whichever runs
# second after a write-heavy run pays for the disk's writeback, which skewed AAA-BBB orders by
# up to 15%.
for op in backup restore; do
    declare -A t=([old]="" [new]="")
    declare -A size=()
    if [ $op = restore ]; then
        for which in old new; do
            "${!which}" backup "$data" -o "$work/image-$which.coffer" --key-file "$key" -q --force
        done
    fi
    for i in $(seq 1 "$runs"); do
        order="old new"
        [ $((i % 2)) = 0 ] && order="new old"
        for which in $order; do
            bin=${!which}
            if [ $op = backup ]; then
                t[$which]+=" $(one_run "$data" "$bin backup $data -o $work/out.coffer --key-file $key -q")"
                size[$which]=$(stat -c %s "$work/out.coffer")
            else
                t[$which]+=" $(one_run "$work/image-$which.coffer" "$bin restore $work/image-$which.coffer --to $work/restored --key-file $key -q")"
            fi
        done
    done
    old_s=$(median ${t[old]})
    new_s=$(median ${t[new]})
    printf '| %s | %.2f s | %.2f s | %.2f |\n' "$op" "$old_s" "$new_s" "$(echo "$new_s / $old_s" | bc -l)"
    if [ $op = backup ]; then
        printf '| image size | %s MB | %s MB | %.3f |\n' "$((size[old] / 1000000))" "$((size[new] / 1000000))" "$(echo "${size[new]} / ${size[old]}" | bc -l)"
    fi
done
rm -rf "$work/out.coffer" "$work/restored" "$work/image-old.coffer" "$work/image-new.coffer"
