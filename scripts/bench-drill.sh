#!/bin/bash
# A restore drill of a hot backup of the sysbench datadir (2 GB, 8 tables of 1M rows), in one
# run, on the same backup:
#   coffer drill IMAGE --scratch DIR
# against the same proof by hand, as a DBA scripts it:
#   openssl enc -d | zstd -d | mbstream -x; mariadb-backup --prepare; innochecksum on every
#   file-per-table tablespace (not ibdata1: innochecksum 10.11 counts the copies in its
#   doublewrite buffer as mismatches); mariadbd on the result (socket only);
#   mariadb-check --all-databases; shutdown; rm -rf.
#
#   sudo scripts/bench-drill.sh [DATADIR]   # default: the sysbench datadir of bench-live.sh
#
# Before every timed run the page cache is dropped and the backup read back into it (as in
# bench-live.sh). Medians of BENCH_RUNS (default 3). Needs root, mariadb-server,
# mariadb-backup, sysbench, zstd, openssl, GNU time.
set -euo pipefail
bench=drill
. "$(dirname "$0")/bench-server.sh" "$@"
engine="mariadb-backup --no-defaults --backup --stream=xbstream --socket=$sock --user=root --target-dir=$work/t"

prepare_cache() { sync; echo 3 >/proc/sys/vm/drop_caches; find "$@" -type f -exec cat {} + >/dev/null 2>&1 || true; }

# measure CMD [CACHE_DIRS...]: median "wall cpu rss_mb" of $runs runs.
measure() {
    local cmd=$1 i rows=()
    shift
    for i in $(seq 1 "$runs"); do
        prepare_cache "$@"
        /usr/bin/time -f "%e %U %S %M" -o "$work/time" bash -c "$cmd" >"$work/stdout" 2>"$work/stderr" || { echo "FAILED: $cmd: $(tail -3 "$work/stderr")" >&2; return 1; }
        read -r wall user sys rss <"$work/time"
        rows+=("$wall $(echo "$user + $sys" | bc) $((rss / 1024))")
    done
    printf '%s\n' "${rows[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p"
}

row() { # name result baseline_wall
    read -r wall cpu rss <<<"$2"
    printf '| %s | %s | %s | %s | %sx |\n' "$1" "$wall" "$cpu" "$rss" "$(echo "scale=2; $3 / $wall" | bc)"
}

rm -rf "$work/img" "$work/t" "$work/scratch"
mkdir -p "$work/img" "$work/scratch"
$coffer backup --mysql -S "$sock" -u root -o "$work/img/full.coffer" --key-file "$key" -q
$engine 2>"$work/engine.log" | zstd -T0 -1 -q | openssl enc -aes-256-ctr -pbkdf2 -pass file:"$key" >"$work/img/full.enc"

# By hand: the same steps, each tool as its documentation gives it.
d=$work/scratch/hand
hand="set -e; rm -rf $d; mkdir -p $d/data $d/run"
hand+="; openssl enc -d -aes-256-ctr -pbkdf2 -pass file:$key < $work/img/full.enc | zstd -d | mbstream -x -C $d/data"
hand+="; mariadb-backup --no-defaults --prepare --target-dir=$d/data"
hand+="; find $d/data -name '*.ibd' | xargs -n1 innochecksum"
hand+="; chown -R mysql:mysql $d"
hand+="; (mariadbd --no-defaults --datadir=$d/data --socket=$d/run/s.sock --skip-networking --skip-slave-start --skip-log-bin --skip-grant-tables --event-scheduler=DISABLED --user=mysql --log-error=$d/run/err --pid-file=$d/run/pid &)"
hand+="; for i in \$(seq 1 600); do mariadb-admin --socket=$d/run/s.sock -uroot ping >/dev/null 2>&1 && break; sleep 0.2; done"
hand+="; mariadb-check --socket=$d/run/s.sock -uroot --all-databases"
hand+="; mariadb-admin --socket=$d/run/s.sock -uroot shutdown"
hand+="; while [ -e $d/run/pid ]; do sleep 0.1; done; rm -rf $d"

echo "## Restore drill of a hot backup of $(du -sh --apparent-size "$data" | cut -f1) ($bytes bytes), $(nproc) cores, median of $runs"
echo
echo "| what | wall s | CPU s | peak RSS MB | vs by hand |"
echo "|---|---|---|---|---|"
h=$(measure "$hand" "$work/img")
row 'by hand: openssl -d \| zstd -d \| mbstream -x, prepare, innochecksum each .ibd, mariadbd, mariadb-check --all-databases, shutdown, rm' "$h" "${h%% *}"
r=$(measure "$coffer drill $work/img/full.coffer --scratch $work/scratch --key-file $key --json" "$work/img")
row '**coffer drill IMAGE --scratch DIR**' "$r" "${h%% *}"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("\ncoffer drill: passed=%s, %d pages checked, %d tables checked, restore+prepare %.1f s, server+CHECK TABLE %.1f s" % (r["passed"], r["pages_checked"], r["tables_checked"], r["restore_seconds"], r["check_seconds"]))' "$work/stdout"
stat -c '    %s %n' "$work"/img/*
rm -rf "$work/img" "$work/t" "$work/scratch"
