#!/bin/sh
# Creates a MariaDB data directory of many small tables, as multi-tenant servers hold them (a
# schema per customer): DATABASES databases of TABLES tables each, every table of 20 to 320 rows
# (sysbench's schema), so that most .ibd files are 96-160 KB. A private server on a socket is
# started, loaded, and shut down cleanly. Needs mariadb-server.
#
#   scripts/many-tables-datadir.sh DIR [DATABASES] [TABLES]     # default 20 x 500: 10,000 tables, ~1.3 GB
set -eu
dir=$1
databases=${2:-20}
tables=${3:-500}
run=$(mktemp -d)
sock=$run/mysqld.sock
rm -rf "$dir"
mkdir -p "$dir"
mariadb-install-db --no-defaults --datadir="$dir" --user="$(id -un)" --auth-root-authentication-method=normal --skip-test-db >"$run/install.log" 2>&1
mariadbd --no-defaults --datadir="$dir" --socket="$sock" --skip-networking --user="$(id -un)" \
    --innodb-buffer-pool-size=512M --innodb-flush-log-at-trx-commit=2 --table-open-cache=2000 \
    --log-error="$run/error.log" --pid-file="$run/mysqld.pid" &
pid=$!
trap 'mariadb-admin --socket="$sock" -uroot shutdown 2>/dev/null || kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$run"' EXIT
for _ in $(seq 1 60); do [ -S "$sock" ] && break; sleep 1; done

# The SQL, generated: row counts and contents from a fixed linear congruential sequence, so the
# same arguments give the same tables.
awk -v dbs="$databases" -v tbls="$tables" 'BEGIN {
    x = 12345
    for (d = 1; d <= dbs; d++) {
        printf "CREATE DATABASE tenant%03d;\nUSE tenant%03d;\nSET autocommit=0;\n", d, d
        for (t = 1; t <= tbls; t++) {
            printf "CREATE TABLE t%04d (id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, k INT UNSIGNED NOT NULL DEFAULT 0, c CHAR(120) NOT NULL DEFAULT \"\", pad CHAR(60) NOT NULL DEFAULT \"\", KEY k (k)) ENGINE=InnoDB;\n", t
            x = (x * 1103515245 + 12345) % 2147483648
            rows = 20 + x % 301
            printf "INSERT INTO t%04d (k, c, pad) VALUES ", t
            for (r = 1; r <= rows; r++) {
                x = (x * 1103515245 + 12345) % 2147483648
                # Low-entropy contents (a few hundred distinct values per column), like the
                # status, flag and template columns of such schemas: the datadir this is
                # modelled on compresses 33:1 through tar | zstd -1.
                v = x % 997
                c = sprintf("%011d-%011d-%011d-%011d-%011d-%011d-%011d-%011d-%011d-%011d", v, v, v, v, v, v, v, v, v, v)
                printf "%s(%d,\"%s\",\"%011d-%011d-%011d-%011d-%011d\")", (r > 1 ? "," : ""), x % 100000, c, x % 13, x % 13, x % 13, x % 13, x % 13
            }
            printf ";\n"
            if (t % 50 == 0) printf "COMMIT;\n"
        }
        printf "COMMIT;\n"
    }
}' | mariadb --socket="$sock" -uroot

mariadb-admin --socket="$sock" -uroot shutdown
wait $pid
trap 'rm -rf "$run"' EXIT
echo "$(find "$dir" -name '*.ibd' | wc -l) tablespaces, $(find "$dir" -type f | wc -l) files, $(du -sh "$dir" | cut -f1)"
