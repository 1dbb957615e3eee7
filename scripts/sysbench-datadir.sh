#!/bin/sh
# Creates a MariaDB data directory loaded by sysbench, with a private server that is shut down
# cleanly afterwards. Usage: scripts/sysbench-datadir.sh DIR [TABLES] [ROWS]
# 8 tables of 1,000,000 rows give about 2 GB. Needs mariadb-server and sysbench.
set -eu
dir=$1
tables=${2:-8}
rows=${3:-1000000}
run=$(mktemp -d)
sock=$run/mysqld.sock
rm -rf "$dir"
mkdir -p "$dir"
mariadb-install-db --no-defaults --datadir="$dir" --user="$(id -un)" --auth-root-authentication-method=normal --skip-test-db >"$run/install.log" 2>&1
mariadbd --no-defaults --datadir="$dir" --socket="$sock" --skip-networking --user="$(id -un)" \
    --innodb-buffer-pool-size=1G --innodb-log-file-size=256M --innodb-flush-log-at-trx-commit=2 \
    --log-error="$run/error.log" --pid-file="$run/mysqld.pid" &
pid=$!
trap 'mariadb-admin --socket="$sock" -uroot shutdown 2>/dev/null || kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$run"' EXIT
for _ in $(seq 1 60); do [ -S "$sock" ] && break; sleep 1; done
mariadb --socket="$sock" -uroot -e "CREATE DATABASE sbtest"
sysbench oltp_read_write --db-driver=mysql --mysql-socket="$sock" --mysql-user=root \
    --tables="$tables" --table-size="$rows" --threads=2 prepare >"$run/prepare.log"
mariadb-admin --socket="$sock" -uroot shutdown
wait $pid
trap 'rm -rf "$run"' EXIT
du -sh "$dir"
