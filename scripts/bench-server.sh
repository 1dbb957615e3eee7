# Sourced by bench-live.sh and bench-transfer.sh: builds coffer, makes (or reuses) the sysbench
# datadir given as $1 and a key, and runs an idle MariaDB server on that datadir until the
# script exits. Expects $bench (the work directory's name) to be set.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${BENCH_DIR:-/var/tmp/coffer-bench}/$bench
runs=${BENCH_RUNS:-3}
mkdir -p "$work"
cargo build --release --quiet -p coffer-cli
coffer=$PWD/target/release/coffer
data=${1:-${BENCH_DIR:-/var/tmp/coffer-bench}/sysbench}
[ -d "$data" ] || scripts/sysbench-datadir.sh "$data" 8 1000000 >&2
key=$work/bench.key
[ -f "$key" ] || $coffer key generate -o "$key" -q
sock=$work/mysqld.sock
mariadbd --no-defaults --datadir="$data" --socket="$sock" --skip-networking --user="$(id -un)" \
    --innodb-buffer-pool-size=256M --log-error="$work/error.log" --pid-file="$work/mysqld.pid" &
server=$!
trap 'mariadb-admin --socket="$sock" -uroot shutdown 2>/dev/null || kill $server; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do mariadb-admin --socket="$sock" -uroot ping >/dev/null 2>&1 && break; sleep 1; done
bytes=$(du -sb --apparent-size "$data" | cut -f1)
