#!/bin/bash
# Incremental backups of a running MariaDB server, in one run, on the same server and data:
#   coffer backup --mysql --incremental (parent pinned with --base) against
#   mariadb-backup --backup --stream=xbstream --incremental-lsn=N | zstd -T0 -1 | openssl enc;
# sizes against the engine's own .delta bytes (and its whole incremental stream) through
# zstd -1; then a chain of a full and 3 incrementals restored and prepared:
#   coffer restore INC3 --prepare against, by hand, for the full and each incremental:
#   openssl enc -d | zstd -d | mbstream -x, mariadb-backup --prepare [--incremental-dir].
#
#   sudo scripts/bench-incremental.sh [DATADIR]   # default: the sysbench datadir of bench-live.sh
#
# DATADIR is copied (the runs write to it). Between backups sysbench changes about 2% of the
# pages (BENCH_EVENTS updates of random rows, default 3000, each on its own leaf page in 8M
# rows). Before every timed run the page cache is dropped and the datadir read back into it,
# as in bench-live.sh. Medians of BENCH_RUNS (default 3). Needs root, mariadb-server,
# mariadb-backup, sysbench, zstd, openssl, GNU time.
set -euo pipefail
bench=incremental
root=${BENCH_DIR:-/var/tmp/coffer-bench}
src=${1:-$root/sysbench}
[ -d "$src" ] || { cd "$(dirname "$0")/.." && scripts/sysbench-datadir.sh "$src" 8 1000000 >&2; cd - >/dev/null; }
copy=$root/$bench/data
rm -rf "$copy"
mkdir -p "$root/$bench"
cp -a "$src" "$copy"
. "$(dirname "$0")/bench-server.sh" "$copy"
events=${BENCH_EVENTS:-3000}
engine="mariadb-backup --no-defaults --backup --stream=xbstream --socket=$sock --user=root --target-dir=$work/t"
sql() { mariadb --socket="$sock" -uroot -N -e "$1"; }
# The checkpoint (an incremental's to_lsn) advances with the dirty pages flushed.
sql "SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0.001"

prepare_cache() { sync; echo 3 >/proc/sys/vm/drop_caches; find "$@" -type f -exec cat {} + >/dev/null 2>&1 || true; }

# measure OUTPUT CMD [CACHE_DIRS...]: median "wall cpu rss_mb out_bytes" of $runs runs.
measure() {
    local out=$1 cmd=$2 i rows=()
    shift 2
    for i in $(seq 1 "$runs"); do
        rm -rf "$out" "$work/t"
        [ -n "${SETUP:-}" ] && eval "$SETUP"
        prepare_cache "$@"
        /usr/bin/time -f "%e %U %S %M" -o "$work/time" bash -c "$cmd" >/dev/null 2>"$work/stderr" || { echo "FAILED: $cmd: $(tail -3 "$work/stderr")" >&2; return 1; }
        read -r wall user sys rss <"$work/time"
        local size=0
        [ -e "$out" ] && size=$(du -sb --apparent-size "$out" | cut -f1)
        rows+=("$wall $(echo "$user + $sys" | bc) $((rss / 1024)) $size")
    done
    printf '%s\n' "${rows[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p"
}

row() { # name result baseline_wall
    read -r wall cpu rss size <<<"$2"
    printf '| %s | %s | %s | %s | %s | %sx |\n' "$1" "$wall" "$cpu" "$rss" "$size" "$(echo "scale=2; $3 / $wall" | bc)"
}

writes() {
    sysbench oltp_update_non_index --mysql-socket="$sock" --mysql-user=root --mysql-db=sbtest --tables=8 \
        --table-size=1000000 --threads=2 --events="$events" --time=0 run >/dev/null
    sql "FLUSH TABLES" >/dev/null
    sleep 5 # the page cleaner flushes, the checkpoint moves
}

# One chain for each tool: coffer's images in $work/c, the pipeline's in $work/p (with the
# LSNs the engine reports through --extra-lsndir, as a DBA scripting it would keep them).
rm -rf "$work/c" "$work/p"
mkdir -p "$work/c" "$work/p"
pipeline() { # NAME [ENGINE ARGS...]
    local name=$1
    shift
    rm -rf "$work/t" "$work/p/$name.lsn"
    $engine --extra-lsndir="$work/p/$name.lsn" "$@" 2>"$work/p/$name.log" | zstd -T0 -1 -q |
        openssl enc -aes-256-ctr -pbkdf2 -pass file:"$key" >"$work/p/$name.enc"
}
to_lsn() { sed -n 's/^to_lsn = //p' "$work/p/$1.lsn/xtrabackup_checkpoints"; }

$coffer backup --mysql -S "$sock" -u root -o "$work/c/full.coffer" --key-file "$key" -q
pipeline full
writes

echo "## Incremental backup of $(du -sh --apparent-size "$data" | cut -f1) ($bytes bytes) after $events row updates, $(nproc) cores, median of $runs"
echo
echo "| what | wall s | CPU s | peak RSS MB | output bytes | vs pipeline |"
echo "|---|---|---|---|---|---|"
lsn=$(to_lsn full)
pipe=$(measure "$work/p.enc" "$engine --incremental-lsn=$lsn | zstd -T0 -1 | openssl enc -aes-256-ctr -pbkdf2 -pass file:$key > $work/p.enc && sync" "$data")
row "mariadb-backup --incremental-lsn \\| zstd -T0 -1 \\| openssl enc" "$pipe" "${pipe%% *}"
floor=$(measure /nonexistent "$engine --incremental-lsn=$lsn > /dev/null" "$data")
row 'mariadb-backup --incremental-lsn > /dev/null (the engine alone)' "$floor" "${pipe%% *}"
floor2=$(measure /nonexistent "$engine --incremental-lsn=$lsn --parallel=$(nproc) > /dev/null" "$data")
row "mariadb-backup --incremental-lsn --parallel=$(nproc) > /dev/null (as coffer runs it)" "$floor2" "${pipe%% *}"
r=$(measure "$work/inc.coffer" "$coffer backup --mysql -S $sock -u root -o $work/inc.coffer --incremental --base $work/c/full.coffer --key-file $key -q" "$data")
row '**coffer backup --mysql --incremental**' "$r" "${pipe%% *}"
inc_size=$(stat -c %s "$work/inc.coffer")
full_size=$(stat -c %s "$work/c/full.coffer")

# What the engine's incremental holds, extracted: its .delta files, and everything.
rm -rf "$work/x" && mkdir -p "$work/x"
openssl enc -d -aes-256-ctr -pbkdf2 -pass file:"$key" <"$work/p.enc" | zstd -d -q | mbstream -x -C "$work/x"
delta_raw=$(find "$work/x" -name '*.delta' -printf '%s\n' | paste -sd+ | bc)
delta_z=$(find "$work/x" -name '*.delta' -print0 | sort -z | xargs -0 cat | zstd -1 -q | wc -c)
all_z=$(tar -C "$work/x" -cf - . | zstd -1 -q | wc -c)
echo
echo "| size | bytes |"
echo "|---|---|"
echo "| the engine's .delta files (raw) | $delta_raw |"
echo "| the engine's .delta files through zstd -1 | $delta_z |"
echo "| the engine's whole incremental (deltas, redo, Aria and other files) as tar through zstd -1 | $all_z |"
echo "| **coffer's incremental image** | $inc_size ($(echo "scale=3; $inc_size / $delta_z" | bc)x the deltas, $(echo "scale=3; $inc_size / $all_z" | bc)x the whole incremental) |"
echo "| coffer's full image | $full_size (the incremental is $(echo "scale=1; 100 * $inc_size / $full_size" | bc)% of it) |"

# The chain: two more incrementals each, then restore + prepare of full + 3.
mv "$work/inc.coffer" "$work/c/inc1.coffer"
pipeline inc1 --incremental-lsn="$lsn"
for n in 2 3; do
    writes
    sleep 1
    $coffer backup --mysql -S "$sock" -u root -o "$work/c/inc$n.coffer" --incremental --key-file "$key" -q
    pipeline "inc$n" --incremental-lsn="$(to_lsn "inc$((n - 1))")"
done

echo
echo "## Restore + prepare of a full and 3 incrementals, median of $runs"
echo
echo "| what | wall s | CPU s | peak RSS MB | output bytes | vs by hand |"
echo "|---|---|---|---|---|---|"
rdir=$work/restore
hand="set -e; mkdir -p $rdir"
hand+="; openssl enc -d -aes-256-ctr -pbkdf2 -pass file:$key < $work/p/full.enc | zstd -d | mbstream -x -C $rdir"
hand+="; mariadb-backup --no-defaults --prepare --target-dir=$rdir"
for n in 1 2 3; do
    hand+="; rm -rf $work/i$n; mkdir -p $work/i$n"
    hand+="; openssl enc -d -aes-256-ctr -pbkdf2 -pass file:$key < $work/p/inc$n.enc | zstd -d | mbstream -x -C $work/i$n"
    hand+="; mariadb-backup --no-defaults --prepare --target-dir=$rdir --incremental-dir=$work/i$n; rm -rf $work/i$n"
done
hand+="; sync"
rhand=$(SETUP="rm -rf $rdir" measure "$rdir" "$hand" "$work/p")
row 'by hand: openssl -d \| zstd -d \| mbstream -x, prepare; then each incremental the same and prepare --incremental-dir' "$rhand" "${rhand%% *}"
r=$(SETUP="rm -rf $rdir" measure "$rdir" "$coffer restore $work/c/inc3.coffer --to $rdir --prepare --key-file $key -q" "$work/c")
row '**coffer restore INC3 --prepare** (the chain resolved from its directory)' "$r" "${rhand%% *}"
stat -c '    %s %n' "$work"/c/*.coffer "$work"/p/*.enc
rm -rf "$rdir" "$work/x" "$work/t" "$work/p.enc"
