#!/bin/bash
# One table of about 50 MB restored into a running server, out of the 2 GB sysbench image, in
# one run, three ways, each timed from its first byte to the table imported and checked
# (CHECKSUM TABLE equal to the table's before it was dropped):
#
# 1. coffer: `coffer restore file:///PREFIX/ --tables sbtest.t50 --into-server SOCKET` (reads
#    through the image's index only the table's files and what the server needs to open it).
# 2. By hand, a full restore and a dump: `openssl enc -d | zstd -d | mbstream -x` of a pipeline
#    backup (`mariadb-backup --backup --stream | zstd -T0 -1 | openssl enc`, taken at the same
#    moment), `mariadb-backup --prepare`, a server started on it, `mariadb-dump sbtest t50 |
#    mariadb` into the running server.
# 3. By hand, the engine's export: the same extraction, `mariadb-backup --prepare --export`,
#    then CREATE TABLE, DISCARD TABLESPACE, copy t50.ibd and t50.cfg (chown, 0660), IMPORT.
#
#   sudo scripts/bench-tables.sh                                  # the 8 x 1M-row sysbench datadir
#   BENCH_TABLES=2 BENCH_ROWS=20000 BENCH_T50_ROWS=5000 sudo scripts/bench-tables.sh   # a quick try
#
# Bytes read: the image's bytes each way reads (coffer: the frames of the entries chosen, from
# its --json summary, plus the index; by hand: the whole stream). The page cache is dropped and
# each input read back before each way. Needs root, mariadb-server, mariadb-backup, sysbench,
# zstd, openssl, jq, bc.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${BENCH_DIR:-/var/tmp/coffer-bench}
work=$root/tables
tables=${BENCH_TABLES:-8}
rows=${BENCH_ROWS:-1000000}
t50_rows=${BENCH_T50_ROWS:-210000}
src=$root/sysbench
[ "$tables.$rows" = 8.1000000 ] || src=$root/sysbench-${tables}x$rows
[ -d "$src" ] || scripts/sysbench-datadir.sh "$src" "$tables" "$rows" >&2
built=${BENCH_COFFER:-}
[ -n "$built" ] || { cargo build --release --quiet -p coffer-cli && built=${CARGO_TARGET_DIR:-$PWD/target}/release/coffer; }

data=$work/live
run=$work/run
sock=$run/live.sock
p=$(cat "$run/live.pid" 2>/dev/null) && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = mariadbd ] && kill "$p" && sleep 5
rm -rf "$work"
mkdir -p "$work" "$run"
chmod 755 "$work"
chown mysql:mysql "$run"
coffer=$work/coffer
cp "$built" "$coffer"
key=$work/bench.key
$coffer key generate -o "$key" -q
cp -a "$src" "$data"
chown -R mysql:mysql "$data"

start() { # DATADIR SOCKET PIDFILE [OPTIONS...]
    local d=$1 s=$2 pid=$3
    shift 3
    mariadbd --no-defaults --datadir="$d" --socket="$s" --pid-file="$pid" --user=mysql --skip-networking \
        --innodb-buffer-pool-size=512M --innodb-log-file-size=256M --log-error="$run/$(basename "$d").err" "$@" &
    for _ in $(seq 1 600); do mariadb --no-defaults --socket="$s" -uroot -e 'SELECT 1' >/dev/null 2>&1 && return; sleep 0.2; done
    echo "FAILED: the server on $d did not start" >&2
    exit 1
}
stop() { mariadb-admin --no-defaults --socket="$1" -uroot shutdown; }
sql() { mariadb --no-defaults --socket="$sock" -uroot -N -B -e "$1"; }
now() { date +%s.%N; }
since() { echo "scale=2; ($(now) - $1) / 1" | bc | sed "s/^\./0./"; }
prepare_cache() { sync; echo 3 >/proc/sys/vm/drop_caches; find "$@" -type f -exec cat {} + >/dev/null 2>&1 || true; }
cleanup() { stop "$sock" 2>/dev/null || true; }
trap cleanup EXIT

start "$data" "$sock" "$run/live.pid"
sql "CREATE TABLE sbtest.t50 LIKE sbtest.sbtest1; INSERT INTO sbtest.t50 SELECT * FROM sbtest.sbtest1 LIMIT $t50_rows"
sql "FLUSH TABLES sbtest.t50 FOR EXPORT; UNLOCK TABLES"
t50_bytes=$(stat -c %s "$data/sbtest/t50.ibd")
sum=$(sql "CHECKSUM TABLE sbtest.t50" | cut -f2)
prefix=$work/repo
mkdir -p "$prefix"
$coffer backup --mysql -S "$sock" -u root -o "file://$prefix/" --key-file "$key" -q
image=$(ls "$prefix"/*.coffer)
image_bytes=$(stat -c %s "$image")
mariadb-backup --backup --stream=xbstream --socket="$sock" -uroot --target-dir="$work/pipe-scratch" 2>"$work/pipe.log" |
    zstd -T0 -1 -q | openssl enc -aes-256-ctr -pbkdf2 -pass file:"$key" >"$work/full.enc"
pipe_bytes=$(stat -c %s "$work/full.enc")

check() { # WAY
    local got
    got=$(sql "CHECKSUM TABLE sbtest.t50" | cut -f2)
    [ "$got" = "$sum" ] || { echo "FAILED: $1: CHECKSUM $got, expected $sum" >&2; exit 1; }
}

# 1. coffer
sql "DROP TABLE sbtest.t50"
prepare_cache "$prefix"
t0=$(now)
$coffer restore "file://$prefix/" --tables sbtest.t50 --into-server "$sock" --key-file "$key" --json >"$work/coffer.json" 2>"$work/coffer.err"
coffer_s=$(since "$t0")
check coffer
coffer_read=$(jq .read_bytes "$work/coffer.json")

extract() { # DIR: the pipeline backup extracted into DIR
    mkdir -p "$1"
    openssl enc -d -aes-256-ctr -pbkdf2 -pass file:"$key" <"$work/full.enc" | zstd -d -q | mbstream -x -C "$1"
}

# 2. full restore + prepare + dump + reload
sql "DROP TABLE sbtest.t50"
prepare_cache "$work/full.enc"
t0=$(now)
extract "$work/full"
mariadb-backup --prepare --target-dir="$work/full" >"$work/prepare.log" 2>&1
chown -R mysql:mysql "$work/full"
start "$work/full" "$run/full.sock" "$run/full.pid" --skip-log-bin
mariadb-dump --no-defaults --socket="$run/full.sock" -uroot --single-transaction sbtest t50 | mariadb --no-defaults --socket="$sock" -uroot sbtest
stop "$run/full.sock"
dump_s=$(since "$t0")
check dump
rm -rf "$work/full"

# 3. the engine's --export, imported by hand
create=$(sql "SHOW CREATE TABLE sbtest.t50" | cut -f2- | sed 's/\\n/ /g')
sql "DROP TABLE sbtest.t50"
prepare_cache "$work/full.enc"
t0=$(now)
extract "$work/full"
mariadb-backup --prepare --export --target-dir="$work/full" >"$work/export.log" 2>&1
sql "USE sbtest; $create; ALTER TABLE sbtest.t50 DISCARD TABLESPACE"
install -o mysql -g mysql -m 0660 "$work/full/sbtest/t50.ibd" "$work/full/sbtest/t50.cfg" "$data/sbtest/"
sql "ALTER TABLE sbtest.t50 IMPORT TABLESPACE"
rm -f "$data/sbtest/t50.cfg"
export_s=$(since "$t0")
check export
rm -rf "$work/full"

ratio() { echo "scale=2; $1 / $2" | bc | sed 's/^\./0./'; }
mib() { echo "scale=1; $1 / 1048576" | bc; }
echo "# one table ($t50_rows rows, t50.ibd $(mib "$t50_bytes") MiB) of $tables x $rows sysbench rows; coffer image $(mib "$image_bytes") MiB, pipeline backup $(mib "$pipe_bytes") MiB"
echo "| way | wall s | image bytes read | coffer/way, wall |"
echo "|---|---|---|---|"
echo "| coffer restore --tables --into-server | $coffer_s | $(mib "$coffer_read") MiB | 1.00x |"
echo "| by hand: full restore + prepare + mariadb-dump + reload | $dump_s | $(mib "$pipe_bytes") MiB | $(ratio "$coffer_s" "$dump_s")x |"
echo "| by hand: full restore + prepare --export + DISCARD/IMPORT | $export_s | $(mib "$pipe_bytes") MiB | $(ratio "$coffer_s" "$export_s")x |"
