#!/bin/bash
# Compares two builds of coffer on the same data in one run: backup and restore, each made
# durable, medians of BENCH_RUNS runs (default 3), page cache dropped and refilled before each
# run (as scripts/bench.sh does). For refactorings that must not change speed.
#
#   scripts/bench-compare.sh OLD_COMMIT [DATASET]     # DATASET: mixed (default), sysbench, or a directory
#
# Builds OLD_COMMIT in a worktree (target dir under BENCH_DIR) and the working tree, then prints a
# Markdown table: wall seconds for each, and new/old, and the image's size. BENCH_COLD=1 leaves
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

cargo build --release --quiet -p coffer-cli
new=$PWD/target/release/coffer
tree=$work/old-tree
rm -rf "$tree" && git worktree prune && git worktree add --quiet --detach "$tree" "$old_rev"
(cd "$tree" && CARGO_TARGET_DIR=$work/old-target cargo build --release --quiet -p coffer-cli)
old=$work/old-target/release/coffer
git worktree remove --force "$tree"

key=$work/compare.key
[ -f "$key" ] || { "$new" key generate -o "$key" -q; }

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
warm() { find "$@" -type f -exec cat {} + >/dev/null 2>&1 || true; }

# median SECONDS...
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# time_runs WARM_DIR CMD: median wall seconds of CMD over $runs runs.
time_runs() {
    local warm_dir=$1 cmd=$2 t=() i start
    for i in $(seq 1 "$runs"); do
        rm -rf "$work/out.coffer" "$work/restored"
        drop
        [ "${BENCH_COLD:-0}" = 1 ] || warm "$warm_dir"
        start=$(date +%s.%N)
        eval "$cmd" >/dev/null 2>&1
        t+=("$(echo "$(date +%s.%N) - $start" | bc)")
    done
    median "${t[@]}"
}

echo "| $set_name ($(du -sh "$data" | cut -f1)) | $old_rev | working tree | new/old |"
echo "|---|---|---|---|"
for op in backup restore; do
    declare -A secs=()
    declare -A size=()
    for which in old new; do
        bin=${!which}
        if [ $op = backup ]; then
            secs[$which]=$(time_runs "$data" "$bin backup $data -o $work/out.coffer --key-file $key -q")
            size[$which]=$(stat -c %s "$work/out.coffer")
        else
            "$bin" backup "$data" -o "$work/image.coffer" --key-file "$key" -q --force
            secs[$which]=$(time_runs "$work/image.coffer" "$bin restore $work/image.coffer --to $work/restored --key-file $key -q")
        fi
    done
    printf '| %s | %.2f s | %.2f s | %.2f |\n' "$op" "${secs[old]}" "${secs[new]}" "$(echo "${secs[new]} / ${secs[old]}" | bc -l)"
    if [ $op = backup ]; then
        printf '| image size | %s MB | %s MB | %.3f |\n' "$((size[old] / 1000000))" "$((size[new] / 1000000))" "$(echo "${size[new]} / ${size[old]}" | bc -l)"
    fi
done
rm -rf "$work/out.coffer" "$work/restored" "$work/image.coffer"
