#!/bin/bash
# Throttling (issue 18): does `--limit-rate` hold the rate asked for, and what does a backup
# cost a server's clients with and without `--limit-rate` and `--io-priority idle`?
#
# A. `coffer backup TREE --limit-rate R` of two copies of a sysbench datadir (about 1.1 GB),
#    page cache dropped first, for R = 20M, 50M and 100M, and unthrottled (what the machine
#    does meanwhile); then `coffer restore --limit-rate 50M` of the 50M image: bytes read
#    (written) against wall seconds and against the job's own seconds (--json: from the first
#    read to the image renamed, or to the restore flushed), and the spread of the per-second
#    rate (the process's read or write syscall bytes, /proc/PID/io, sampled every second; the
#    first and last second left out).
# B. A private MariaDB server (buffer pool 128M, smaller than the data, so sysbench reads the
#    disk) under `sysbench oltp_read_write` for BENCH_LOAD_TIME seconds (default 90) with
#    per-second reports, once for each of: no backup; `coffer backup --mysql`; with
#    `--limit-rate 20M --io-priority idle`; with `--limit-rate 20M` alone; with
#    `--io-priority idle` alone; no backup again. The backup starts BENCH_DELAY seconds
#    (default 10) into the load, page cache dropped first. For each: the backup's duration,
#    sysbench's tps and p95 latency over the seconds the backup ran (the same seconds for the
#    runs without one: from the delay to the end of the slowest backup), and the whole run's
#    p95 as sysbench reports it.
#
#   sudo scripts/bench-throttle.sh
#
# The data: 4 sysbench tables of 250,000 rows (made once in $BENCH_DIR/sysbench-pitr, as
# bench-pitr.sh does; copied here). Needs root (drop_caches), mariadb-server, mariadb-backup,
# sysbench, jq, bc and util-linux's ionice.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${BENCH_DIR:-/var/tmp/coffer-bench}
work=$root/throttle
load_time=${BENCH_LOAD_TIME:-90}
delay=${BENCH_DELAY:-10}
tables=4
rows=250000
src=$root/sysbench-pitr
[ -d "$src" ] || scripts/sysbench-datadir.sh "$src" $tables $rows >&2
cargo build --release --quiet -p coffer-cli
coffer=$PWD/target/release/coffer

p=$(cat "$work/mysqld.pid" 2>/dev/null) && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = mariadbd ] && kill "$p" && sleep 3
rm -rf "$work"
mkdir -p "$work"
chmod 700 "$work"
data=$work/data
cp -a "$src" "$data"
key=$work/bench.key
$coffer key generate -o "$key" -q

now() { date +%s.%N; }
since() { echo "scale=2; ($(now) - $1) / 1" | bc; }
drop_cache() { sync; echo 3 >/proc/sys/vm/drop_caches; }
mib() { echo "scale=2; $1 / 1048576" | bc | sed 's/^\./0./'; }
# sample PID FIELD OUT: FIELD of /proc/PID/io (rchar, wchar) once a second while PID lives.
sample() {
    while [ -r "/proc/$1/io" ]; do
        awk -v f="$2" -v t="$(now)" '$1 == f ":" {print t, $2}' "/proc/$1/io" 2>/dev/null || true
        sleep 1
    done >"$3"
}
# vs BYTES SECONDS ASKED: "MiB/s | +x.x%" achieved against asked.
vs() {
    local got
    got=$(echo "scale=6; $1 / $2 / 1048576" | bc)
    printf '%.2f | %+.1f%%' "$got" "$(echo "($got / $3 - 1) * 100" | bc -l)"
}
# spread OUT: min and max MiB/s over the samples' seconds, the first and last left out.
spread() {
    awk 'NR > 1 {r[NR] = ($2 - b) / ($1 - t) / 1048576} {t = $1; b = $2}
         END {min = 1e18; max = 0; for (i = 3; i < NR; i++) {if (r[i] < min) min = r[i]; if (r[i] > max) max = r[i]}
              if (max == 0) print "- | -"; else printf "%.2f | %.2f\n", min, max}' "$1"
}

echo "# Throttling: $tables sysbench tables x $rows rows ($(du -sh "$data" | cut -f1)), MariaDB $(mariadbd --version | awk '{print $3}'), $(nproc) cores"
echo
echo "    kernel $(uname -r); the data's disk: $(df --output=source "$work" | tail -1), scheduler: $(cat /sys/block/"$(basename "$(df --output=source "$work" | tail -1)")"/queue/scheduler 2>/dev/null || echo unknown)"
echo "    load at start: $(uptime)"
echo
tree=$work/tree
mkdir -p "$tree"
cp -a "$data" "$tree/a"
cp -a "$data" "$tree/b"
echo "## A. Directory backup and restore at a rate: $(du -sh "$tree" | cut -f1) (page cache dropped first)"
echo
echo "| what | asked MiB/s | bytes | wall s | MiB/s (bytes / wall) | vs asked | job s (--json seconds) | MiB/s (bytes / job s) | vs asked | per-second min MiB/s | per-second max MiB/s |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for rate in 20 50 100 none; do
    out=$work/dir-$rate.coffer
    limit=()
    [ $rate = none ] || limit=(--limit-rate "${rate}M")
    drop_cache
    t0=$(now)
    $coffer backup "$tree" -o "$out" --key-file "$key" "${limit[@]}" --json >"$work/b.json" 2>"$work/b.err" &
    pid=$!
    sample $pid rchar "$work/rate-$rate" &
    wait $pid
    wall=$(since "$t0")
    wait
    bytes=$(jq .logical_bytes "$work/b.json")
    if [ $rate = none ]; then
        echo "| backup, unthrottled | - | $bytes | $wall | $(vs "$bytes" "$wall" 1 | cut -d'|' -f1)| - | $(jq -r '.seconds * 100 | round / 100' "$work/b.json") | $(vs "$bytes" "$(jq .seconds "$work/b.json")" 1 | cut -d'|' -f1)| - | $(spread "$work/rate-$rate") |"
        rm -f "$out"
        continue
    fi
    echo "| backup --limit-rate ${rate}M | $rate | $bytes | $wall | $(vs "$bytes" "$wall" $rate) | $(jq -r '.seconds * 100 | round / 100' "$work/b.json") | $(vs "$bytes" "$(jq .seconds "$work/b.json")" $rate) | $(spread "$work/rate-$rate") |"
    [ $rate = 50 ] || rm -f "$out"
done
drop_cache
t0=$(now)
$coffer restore "$work/dir-50.coffer" --to "$work/restored" --key-file "$key" --limit-rate 50M --json >"$work/r.json" 2>"$work/r.err" &
pid=$!
sample $pid wchar "$work/rate-restore" &
wait $pid
wall=$(since "$t0")
wait
bytes=$(jq .logical_bytes "$work/r.json")
echo "| restore --limit-rate 50M | 50 | $bytes | $wall | $(vs "$bytes" "$wall" 50) | $(jq -r '.seconds * 100 | round / 100' "$work/r.json") | $(vs "$bytes" "$(jq .seconds "$work/r.json")" 50) | $(spread "$work/rate-restore") |"
diff -r "$tree" "$work/restored" >/dev/null && echo && echo "    the restored tree is identical to the source"
rm -rf "$work/restored" "$work/dir-50.coffer" "$tree"

# ---------------------------------------------------------------------------------------------
# B. A server under load while it is backed up.
sock=$work/mysqld.sock
mariadbd --no-defaults --datadir="$data" --socket="$sock" --skip-networking --user=root \
    --innodb-buffer-pool-size=128M --innodb-log-file-size=256M \
    --log-error="$work/error.log" --pid-file="$work/mysqld.pid" &
server=$!
cleanup() {
    mariadb-admin --socket="$sock" -uroot shutdown 2>/dev/null || kill $server 2>/dev/null
    wait $server 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 60); do mariadb-admin --socket="$sock" -uroot ping >/dev/null 2>&1 && break; sleep 1; done
sb() {
    sysbench oltp_read_write --db-driver=mysql --mysql-socket="$sock" --mysql-user=root --mysql-db=sbtest \
        --tables=$tables --table-size=$rows --threads=2 "$@"
}
sb --time=30 run >/dev/null # warm the buffer pool

# load NAME no|backup [BACKUP ARGS...]: sysbench for $load_time s; the backup (if any)
# $delay s in.
declare -A dur start_at ended_at
load() {
    local name=$1 backup=$2
    shift 2
    drop_cache
    local t0
    t0=$(now)
    sb --time="$load_time" --report-interval=1 --percentile=95 run >"$work/sb-$name.log" &
    local sbpid=$!
    if [ "$backup" = backup ]; then
        sleep "$delay"
        local b0
        b0=$(now)
        $coffer backup --mysql -S "$sock" -u root -o "$work/$name.coffer" --key-file "$key" -q --json "$@" \
            >"$work/$name.json" &
        local cpid=$! e=
        # The engine's class, once it runs (coffer asks the server a few things first).
        for _ in $(seq 1 200); do
            e=$(pgrep -P $cpid -f -- '--stream=xbstream' | head -1) && break
            sleep 0.05
        done
        [ -n "$e" ] && { ionice -p "$e" >"$work/engine-$name" || true; }
        wait $cpid
        dur[$name]=$(since "$b0")
        start_at[$name]=$(echo "$b0 - $t0" | bc)
        ended_at[$name]=$(echo "$(now) - $t0" | bc)
        rm -f "$work/$name.coffer"
    fi
    wait $sbpid
}
load none no
load full backup
load limited-idle backup --limit-rate 20M --io-priority idle
load limited backup --limit-rate 20M
load idle backup --io-priority idle
load none-again no

# window NAME FROM TO: sysbench's per-second reports of the seconds that overlap [FROM, TO]:
# mean tps | median p95 | worst p95.
window() {
    awk -v a="$2" -v b="$3" '/^\[ [0-9]+s \]/ && $2 + 0 > a && $2 - 1 < b {
            for (i = 1; i <= NF; i++) { if ($i == "tps:") tps = $(i + 1); if ($i == "(ms,95%):") lat = $(i + 1) }
            print tps, lat
        }' "$work/sb-$1.log" | sort -k2 -g |
        awk '{t += $1; l[NR] = $2} END {printf "%.0f | %.2f | %.2f", t / NR, l[int((NR + 1) / 2)], l[NR]}'
}
slowest=0
for n in full limited-idle limited idle; do
    e=${ended_at[$n]}
    [ "$(echo "$e > $slowest" | bc)" = 1 ] && slowest=$e
done
echo
echo "## B. sysbench oltp_read_write (2 threads, ${load_time} s, per-second reports) during a hot backup started ${delay} s in"
echo
echo "| run | backup s | backup MiB/s (image input) | engine's I/O class | tps (backup's seconds) | p95 ms: median of the seconds | p95 ms: worst second | whole run: tps, p95 ms |"
echo "|---|---|---|---|---|---|---|---|"
for n in none full limited-idle limited idle none-again; do
    whole="$(awk '/transactions:/ {gsub(/[()]/, "", $3); printf "%.0f", $3}' "$work/sb-$n.log"), $(awk '/95th percentile:/ {print $3}' "$work/sb-$n.log")"
    if [ -n "${dur[$n]:-}" ]; then
        case $n in
            full) what='`backup --mysql`' ;;
            limited-idle) what='`--limit-rate 20M --io-priority idle`' ;;
            limited) what='`--limit-rate 20M`' ;;
            idle) what='`--io-priority idle`' ;;
        esac
        echo "| $what | ${dur[$n]} | $(mib "$(echo "$(jq .logical_bytes "$work/$n.json") / ${dur[$n]}" | bc)") | $(cat "$work/engine-$n" 2>/dev/null || echo '?') | $(window "$n" "${start_at[$n]}" "${ended_at[$n]}") | $whole |"
    else
        echo "| no backup ($n) | - | - | - | $(window "$n" "$delay" "$slowest") | $whole |"
    fi
done
echo
echo "    load at the end: $(uptime)"
