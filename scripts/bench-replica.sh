#!/bin/bash
# Seeding a MariaDB replica, in one run, against the steps by hand, on a primary this script
# starts (a copy of the sysbench datadir: TLS only, GTIDs, --log-bin, --server-id=1, on
# 127.0.0.1:BENCH_PORT, a replication user `repl` with mysql_native_password). The replica is
# started by a small "service" script ($work/start-replica.sh: mariadbd --server-id=2 as the
# mysql user) that the steps by hand and `--start-with` both use. Every seed is timed from its
# first byte to "caught up" (MASTER_GTID_WAIT of the primary's gtid_binlog_pos when the
# configuration was done), then checked: both replication threads running, TLS with the server
# certificate verified, CHECKSUM TABLE of every table equal to the primary's.
#
# 1. By hand, live: `mariadb-backup --backup --stream=xbstream | socat OPENSSL:` (verified TLS)
#    -> `socat OPENSSL-LISTEN: | mbstream -x`, `mariadb-backup --prepare`, chown -R mysql, sync
#    (coffer makes the datadir durable too), start the service, `SET GLOBAL gtid_slave_pos` (xtrabackup_binlog_info), CHANGE MASTER TO
#    ... MASTER_SSL=1, MASTER_SSL_CA, MASTER_SSL_VERIFY_SERVER_CERT=1, MASTER_USE_GTID=slave_pos,
#    START SLAVE, MASTER_GTID_WAIT.
# 2. coffer, live: `coffer replica seed --listen ... --start-with start-replica.sh` on the
#    replica's side, `coffer send --mysql` on the primary's.
# 3. From stored backups taken at the same moment (nothing writes in between): by hand from a
#    pipeline backup (`mariadb-backup --backup --stream | zstd -T0 -1 | openssl enc`, restored
#    with `openssl enc -d | zstd -d | mbstream -x`, then as in 1), and `coffer replica seed
#    file:///PREFIX/ --start-with ...` from coffer's full under the prefix.
# 4. Catch-up: `sysbench oltp_write_only` writes for BENCH_LOAD_TIME seconds (default 60) after
#    the backups, `coffer binlog archive` stores that log under PREFIX/binlog/; then the seed of
#    3 with `--archive always` (the archive replayed on coffer's private server: events,
#    transactions and seconds from the --json summary's `archive`), again with the replica's
#    buffer pool given to that server (`--prepare-option innodb_buffer_pool_size=512M`), and
#    with `--archive never` (the replica's own replication fetches the same backlog from the
#    primary).
#
#   sudo scripts/bench-replica.sh                               # the 8 x 1M-row sysbench datadir
#   BENCH_TABLES=2 BENCH_ROWS=10000 sudo scripts/bench-replica.sh   # a quick try
#
# CPU s: the commands of a seed and every process they wait for (mariadb-backup, socat,
# mbstream, zstd, openssl, the clients; coffer, with the engine and its private server), from
# this shell's children times; the replica's server (started by the service, not waited for)
# and the primary's are shown apart. The primary is idle during 1-3 and between seeds. Medians
# of BENCH_RUNS (default 1: a pass takes about 6 min on the 2 GB set); the page cache is
# dropped and each seed's input (the primary's datadir, the stored backup) read back before
# it. Needs root, mariadb-server, mariadb-backup, sysbench, socat, zstd, openssl, jq, bc, ss.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${BENCH_DIR:-/var/tmp/coffer-bench}
work=$root/replica
runs=${BENCH_RUNS:-1}
tables=${BENCH_TABLES:-8}
rows=${BENCH_ROWS:-1000000}
load_time=${BENCH_LOAD_TIME:-60}
port=${BENCH_PORT:-45461}
lport=$((port + 1))
src=$root/sysbench
[ "$tables.$rows" = 8.1000000 ] || src=$root/sysbench-${tables}x$rows
[ -d "$src" ] || scripts/sysbench-datadir.sh "$src" "$tables" "$rows" >&2
# BENCH_COFFER: a coffer binary built before, instead of building one.
built=${BENCH_COFFER:-}
[ -n "$built" ] || { cargo build --release --quiet -p coffer-cli && built=${CARGO_TARGET_DIR:-$PWD/target}/release/coffer; }
tick=$(getconf CLK_TCK)

pdata=$work/primary
psock=$work/primary.sock
rdata=$work/replica/data
rrun=$work/replica-run
rsock=$rrun/mysqld.sock
# Servers left by an interrupted run of this script.
for pidfile in "$work/primary.pid" "$rrun/mysqld.pid"; do
    p=$(cat "$pidfile" 2>/dev/null) || continue
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = mariadbd ] && kill "$p" && sleep 5
done
rm -rf "$work"
mkdir -p "$work/replica" "$rrun"
chmod 755 "$work" "$work/replica"
chown mysql:mysql "$rrun"
# A copy, so that a rebuild of the shared target during the run changes nothing here.
coffer=$work/coffer
cp "$built" "$coffer"
key=$work/bench.key
$coffer key generate -o "$key" -q
pw=$work/repl.pw
(umask 077 && openssl rand -hex 16 >"$pw")
pki=$work/pki
$coffer tls generate --ca-dir "$pki" --name db -q
$coffer tls generate --ca-dir "$pki" --name replica -q
chmod 755 "$pki"
chmod 644 "$pki/ca.crt"
prod=$work/prod
mkdir -p "$prod"

cp -a "$src" "$pdata"
mariadbd --no-defaults --datadir="$pdata" --socket="$psock" --pid-file="$work/primary.pid" \
    --log-error="$work/primary.err" --user=root --port="$port" --bind-address=127.0.0.1 \
    --log-bin=binlog --binlog-format=ROW --server-id=1 --gtid-strict-mode=ON --max-binlog-size=64M \
    --ssl-ca="$pki/ca.crt" --ssl-cert="$pki/db.crt" --ssl-key="$pki/db.key" --require-secure-transport=ON \
    --innodb-buffer-pool-size=512M --innodb-flush-log-at-trx-commit=2 &
primary=$!
bg=()
cleanup() {
    local p
    for p in "${bg[@]}"; do kill "$p" 2>/dev/null || true; done
    stop_replica
    mariadb-admin --socket="$psock" -uroot shutdown 2>/dev/null || kill $primary 2>/dev/null
    wait $primary 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 120); do mariadb-admin --socket="$psock" -uroot ping >/dev/null 2>&1 && break; sleep 1; done
psql() { mariadb --no-defaults --socket="$psock" -uroot -N -B -e "$1"; }
rsql() { mariadb --no-defaults --socket="$rsock" -uroot -N -B -e "$1"; }
psql "CREATE USER repl@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('$(cat "$pw")');
      CREATE USER repl@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD('$(cat "$pw")');
      GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO repl@'127.0.0.1', repl@localhost;
      RESET MASTER"
# One transaction, so that every backup has a GTID position (0-1-1), as a primary in use has.
psql "CREATE TABLE sbtest.bench_marker (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO sbtest.bench_marker VALUES (1)"

# The replica's own service, as `systemctl start mariadb` would: in the background, as mysql.
cat >"$work/start-replica.sh" <<EOF
#!/bin/sh
mariadbd --no-defaults --datadir=$rdata --socket=$rsock --pid-file=$rrun/mysqld.pid \\
    --log-error=$rrun/error.log --user=mysql --skip-networking --server-id=2 --log-bin=replica-bin \\
    --log-slave-updates --innodb-buffer-pool-size=512M --innodb-flush-log-at-trx-commit=2 >/dev/null 2>&1 &
EOF
start_cmd="sh $work/start-replica.sh"
stop_replica() {
    local p
    p=$(cat "$rrun/mysqld.pid" 2>/dev/null) || return 0
    mariadb-admin --socket="$rsock" -uroot shutdown >/dev/null 2>&1 || kill "$p" 2>/dev/null || true
    for _ in $(seq 1 600); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = mariadbd ]; then kill -9 "$p"; fi
    rm -f "$rrun/mysqld.pid"
}

now() { date +%s.%N; }
since() { echo "scale=2; ($(now) - $1) / 1" | bc | sed "s/^\./0./"; }
cpu_self() { awk '{print $16 + $17}' "/proc/$$/stat"; } # ticks of the children this shell waited for
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
secs() { echo "scale=2; $1 / $tick" | bc | sed 's/^\./0./'; }
ratio() { echo "scale=2; $1 / $2" | bc | sed 's/^\./0./'; }
round() { printf '%.2f' "$1"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
prepare_cache() { sync; echo 3 >/proc/sys/vm/drop_caches; find "$@" -type f -exec cat {} + >/dev/null 2>&1 || true; }
await_listener() {
    for _ in $(seq 1 3000); do ss -ltn "sport = :$lport" | grep -q LISTEN && return 0; sleep 0.01; done
    fail "nothing listens on :$lport"
}
checksums() { # SQL-FUNCTION: CHECKSUM TABLE of every sbtest table
    local t list=
    for t in $(seq 1 "$tables"); do list+="${list:+,}sbtest.sbtest$t"; done
    $1 "CHECKSUM TABLE $list" | awk '{print $2}' | paste -sd' '
}
ssl_accepts() { psql "SHOW GLOBAL STATUS LIKE 'Ssl_accepts'" | cut -f2; }

# The replica as seeded: replicating over verified TLS, every table as the primary's; then
# stopped and removed. NAME.
check_replica() {
    local status got
    status=$(mariadb --no-defaults --socket="$rsock" -uroot -e 'SHOW SLAVE STATUS\G' | tr -s ' ')
    for want in "Slave_IO_Running: Yes" "Slave_SQL_Running: Yes" "Master_SSL_Allowed: Yes" \
        "Master_SSL_Verify_Server_Cert: Yes" "Using_Gtid: Slave_Pos" "Last_IO_Errno: 0" "Last_SQL_Errno: 0"; do
        grep -q "$want" <<<"$status" || fail "$1: not '$want': $(grep -E 'Running|Errno|Error' <<<"$status" | paste -sd';')"
    done
    [ "$(ssl_accepts)" -gt "$accepts0" ] || fail "$1: the primary's Ssl_accepts did not grow"
    got=$(checksums rsql)
    [ "$got" = "$want_sums" ] || fail "$1: CHECKSUM TABLE $got, the primary's $want_sums"
    echo "    $1: replicating over verified TLS from $(rsql 'SELECT @@gtid_slave_pos'), CHECKSUM TABLE of $tables tables equal to the primary's" >>"$work/checks"
    stop_replica
    rm -rf "$rdata"
}

# The steps by hand after the files are in $rdata: prepare, chown, start, position and
# connection, wait. Each step's "name wall cpu" goes to $work/steps.
step() { # NAME CMD...
    local t0 c0
    t0=$(now)
    c0=$(cpu_self)
    "${@:2}"
    echo "$1 $(since "$t0") $(($(cpu_self) - c0))" >>"$work/steps"
}
ping_replica() {
    for _ in $(seq 1 1200); do mariadb-admin --socket="$rsock" -uroot ping >/dev/null 2>&1 && return 0; sleep 0.1; done
    fail "the replica did not start: $(tail -3 "$rrun/error.log")"
}
configure_by_hand() {
    local info gtid
    info=$rdata/xtrabackup_binlog_info
    [ -f "$info" ] || info=$rdata/mariadb_backup_binlog_info
    gtid=$(awk '{print $3}' "$info")
    (umask 077 && cat >"$work/change.sql" <<EOF
SET GLOBAL gtid_slave_pos = '$gtid';
CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = $port, MASTER_USER = 'repl',
  MASTER_PASSWORD = '$(cat "$pw")', MASTER_SSL = 1, MASTER_SSL_CA = '$pki/ca.crt',
  MASTER_SSL_VERIFY_SERVER_CERT = 1, MASTER_USE_GTID = slave_pos;
START SLAVE;
EOF
    )
    mariadb --no-defaults --socket="$rsock" -uroot <"$work/change.sql"
    target=$(psql "SELECT @@gtid_binlog_pos")
}
wait_caught_up() {
    [ "$(rsql "SELECT MASTER_GTID_WAIT('$target', 3600)")" = 0 ] || fail "the replica did not catch up with $target"
}
by_hand() { # FETCH-FUNCTION: the files into $rdata
    : >"$work/steps"
    step fetch "$1"
    step prepare mariadb-backup --no-defaults --prepare --target-dir="$rdata" 2>"$work/prepare.log"
    step chown chown -R mysql:mysql "$rdata"
    # Durable before the server starts on it, as coffer makes it (and bench-transfer.sh's socat chain).
    step sync sync
    step start sh -c "$start_cmd"
    step ping ping_replica
    step configure configure_by_hand
    step wait wait_caught_up
}
fetch_live() {
    local l
    mkdir -p "$rdata"
    (socat -u OPENSSL-LISTEN:$lport,reuseaddr,cert="$pki/replica.crt",key="$pki/replica.key",cafile="$pki/ca.crt",verify=1 STDOUT |
        mbstream -x -C "$rdata") &
    l=$!
    bg+=($l)
    await_listener
    mariadb-backup --no-defaults --backup --stream=xbstream --socket="$psock" --user=root --target-dir="$work/t" 2>"$work/backup.log" |
        socat -u STDIN OPENSSL:localhost:$lport,cert="$pki/db.crt",key="$pki/db.key",cafile="$pki/ca.crt",verify=1
    wait $l
    rm -rf "$work/t"
}
fetch_stored() {
    mkdir -p "$rdata"
    openssl enc -d -aes-256-ctr -pbkdf2 -pass file:"$key" <"$work/full.enc" | zstd -d -q | mbstream -x -C "$rdata"
}
seed_args=(--to "$rdata" --owner mysql --primary "127.0.0.1:$port" --user repl --password-file "$pw" --ssl-ca "$pki/ca.crt"
    --key-file "$key" --start-with "$start_cmd" --replica-socket "$rsock" --json)
coffer_live() {
    local s
    $coffer replica seed --listen "127.0.0.1:$lport" --cert "$pki/replica.crt" --key "$pki/replica.key" --ca "$pki/ca.crt" \
        "${seed_args[@]}" >"$work/seed.json" 2>"$work/seed.log" &
    s=$!
    bg+=($s)
    await_listener
    $coffer send --mysql -S "$psock" -u root --to "127.0.0.1:$lport" --cert "$pki/db.crt" --key "$pki/db.key" --ca "$pki/ca.crt" \
        --key-file "$key" -q
    wait $s || fail "coffer replica seed: $(tail -3 "$work/seed.log")"
}
coffer_stored() { # [SEED OPTIONS...]
    $coffer replica seed "file://$prod/" "${seed_args[@]}" "$@" >"$work/seed.json" 2>"$work/seed.log" ||
        fail "coffer replica seed: $(tail -3 "$work/seed.log")"
}

# measure NAME KIND CMD [ARGS...] [-- CACHE-DIRS...]: runs a seed $runs times (KIND: hand or
# coffer), each checked; appends to $work/NAME one line a run:
# "wall cpu replica_cpu primary_cpu  steps..." (hand: the steps' "name=wall/cpu"; coffer: the
# --json summary's restore, archive and wait seconds).
measure() {
    local name=$1 kind=$2 cmd=() caches=() i t0 c0 p0 wall cpu rcpu pcpu detail
    shift 2
    while [ $# -gt 0 ] && [ "$1" != -- ]; do cmd+=("$1"); shift; done
    [ $# -gt 0 ] && shift && caches=("$@")
    for i in $(seq 1 "$runs"); do
        rm -rf "$rdata"
        prepare_cache "${caches[@]}"
        accepts0=$(ssl_accepts)
        p0=$(cpu_ticks $primary)
        t0=$(now)
        c0=$(cpu_self)
        "${cmd[@]}"
        wall=$(since "$t0")
        cpu=$(($(cpu_self) - c0))
        pcpu=$(($(cpu_ticks $primary) - p0))
        rcpu=$(cpu_ticks "$(cat "$rrun/mysqld.pid")")
        if [ "$kind" = hand ]; then
            detail=$(awk '{printf "%s=%s/%s ", $1, $2, $3}' "$work/steps")
        else
            detail=$(jq -r '"restore=\(.restore_seconds) archive=\(.archive.seconds // 0) wait=\(.wait.seconds) events=\(.archive.events // 0) transactions=\(.archive.transactions // 0)"' "$work/seed.json")
            cp "$work/seed.json" "$work/$name.$i.json"
        fi
        echo "$wall $cpu $rcpu $pcpu $detail" >>"$work/$name"
        check_replica "$name (run $i)"
    done
}
median_run() { sort -n "$work/$1" | sed -n "$(((runs + 1) / 2))p"; } # NAME: the median run by wall time
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }                  # RUN KEY
hand_part() { field "$1" "$2" | cut -d/ -f1; }                          # RUN STEP: its wall s

echo "# Seeding a replica: $tables sysbench tables x $rows rows ($(du -sh --apparent-size "$src" | cut -f1)), MariaDB $(psql 'SELECT VERSION()'), $(nproc) cores, $(date -u +%FT%TZ)"
echo
echo "    load at start: $(uptime)"
want_sums=$(checksums psql)

# 1 and 2: live.
measure hand-live hand by_hand fetch_live -- "$pdata"
measure coffer-live coffer coffer_live -- "$pdata"
echo "    load after the live seeds: $(uptime)"

# 3: the stored backups, taken one after the other with nothing written in between.
t0=$(now)
$coffer backup --mysql -S "$psock" -u root -o "file://$prod/" --key-file "$key" -q
coffer_backup_s=$(since "$t0")
t0=$(now)
mariadb-backup --no-defaults --backup --stream=xbstream --socket="$psock" --user=root --target-dir="$work/t" 2>"$work/backup.log" |
    zstd -T0 -1 -q | openssl enc -aes-256-ctr -pbkdf2 -pass file:"$key" >"$work/full.enc"
pipe_backup_s=$(since "$t0")
rm -rf "$work/t"
measure hand-stored hand by_hand fetch_stored -- "$work/full.enc"
measure coffer-stored coffer coffer_stored -- "$prod"
rm -f "$work/full.enc"
echo "    load after the stored seeds: $(uptime)"

# 4: a log written after the backup, archived; the seed caught up from the archive, then the
# same backlog fetched by the replica from the primary.
sysbench oltp_write_only --db-driver=mysql --mysql-socket="$psock" --mysql-user=root --mysql-db=sbtest \
    --tables="$tables" --table-size="$rows" --threads=2 --time="$load_time" run >"$work/sysbench.log"
tps=$(awk '/transactions:/ {gsub(/[()]/, "", $3); print $3}' "$work/sysbench.log")
binlog_mb=$(echo "scale=1; $(psql 'SHOW BINARY LOGS' | awk '{s += $2} END {print s}') / 1000000" | bc)
want_sums=$(checksums psql)
t0=$(now)
$coffer binlog archive -S "$psock" -u repl --password-file "$pw" -o "file://$prod/binlog/" --key-file "$key" -q
archive_s=$(since "$t0")
segments=$($coffer binlog list "file://$prod/binlog/" -q | wc -l)
echo "    load before the catch-ups: $(uptime)"
measure coffer-archive coffer coffer_stored --archive always -- "$prod"
# The private server with the replica's buffer pool instead of the server's default (128M).
measure coffer-archive-bp coffer coffer_stored --archive always --prepare-option innodb_buffer_pool_size=512M -- "$prod"
measure coffer-primary coffer coffer_stored --archive never -- "$prod"

# ---------------------------------------------------------------------------------------------
# The tables.
row() { # LABEL RUN [BASE-RUN]
    local wall cpu rcpu pcpu _ vs=
    read -r wall cpu rcpu pcpu _ <<<"$2"
    if [ -n "${3:-}" ]; then
        local bw bc
        read -r bw bc _ <<<"$3"
        vs=" $(ratio "$wall" "$bw")x; $(ratio "$cpu" "$bc")x |"
    else
        vs=" 1.00x; 1.00x |"
    fi
    echo "| $1 | $wall | $(secs "$cpu") | $(secs "$rcpu") | $(secs "$pcpu") |$vs"
}
hl=$(median_run hand-live)
cl=$(median_run coffer-live)
hs=$(median_run hand-stored)
cs=$(median_run coffer-stored)
ca=$(median_run coffer-archive)
cb=$(median_run coffer-archive-bp)
cp_=$(median_run coffer-primary)
echo
echo "## Seeding a replica over verified TLS, to caught up, median of $runs"
echo
echo "    coffer replica seed --listen 127.0.0.1:$lport --cert replica.crt --key replica.key --ca ca.crt --key-file k --to DATADIR --owner mysql \\"
echo "        --primary 127.0.0.1:$port --user repl --password-file pw --ssl-ca ca.crt --start-with 'sh start-replica.sh' --replica-socket S --json"
echo "      + coffer send --mysql -S primary.sock -u root --to 127.0.0.1:$lport --cert db.crt --key db.key --ca ca.crt --key-file k"
echo "    coffer replica seed file://PREFIX/ --to DATADIR --owner mysql --primary ... (as above) --start-with ... --json"
echo "    stored backups: coffer backup --mysql $coffer_backup_s s ($(du -sb "$prod" | cut -f1) bytes); pipeline (mariadb-backup | zstd -T0 -1 | openssl enc) $pipe_backup_s s; not in the seeds' times"
echo
echo "| seed | wall s | CPU s (commands) | replica's server CPU s | primary's server CPU s | coffer/hand (wall; CPU) |"
echo "|---|---|---|---|---|---|"
row 'by hand, live: mariadb-backup \| socat OPENSSL -> socat OPENSSL-LISTEN \| mbstream -x, prepare, chown, start, CHANGE MASTER, START SLAVE, wait' "$hl"
row '**coffer, live: replica seed --listen <- send --mysql**' "$cl" "$hl"
row 'by hand, stored: openssl -d \| zstd -d \| mbstream -x, prepare, chown, start, CHANGE MASTER, START SLAVE, wait' "$hs"
row '**coffer, stored: replica seed file://PREFIX/** (coffer/hand against the stored by hand)' "$cs" "$hs"
printf '| (coffer from the prefix against by hand, live) | | | | | %sx; %sx |\n' "$(ratio "${cs%% *}" "${hl%% *}")" "$(ratio "$(cut -d' ' -f2 <<<"$cs")" "$(cut -d' ' -f2 <<<"$hl")")"
echo
echo "| step (median run) | by hand, live s | coffer, live s | by hand, stored s | coffer, stored s |"
echo "|---|---|---|---|---|"
rest_cl=$(round "$(echo "${cl%% *} - $(field "$cl" restore) - $(field "$cl" wait)" | bc)")
rest_cs=$(round "$(echo "${cs%% *} - $(field "$cs" restore) - $(field "$cs" wait)" | bc)")
up_hl=$(echo "$(hand_part "$hl" start) + $(hand_part "$hl" ping) + $(hand_part "$hl" wait)" | bc | sed "s/^\./0./")
up_hs=$(echo "$(hand_part "$hs" start) + $(hand_part "$hs" ping) + $(hand_part "$hs" wait)" | bc | sed "s/^\./0./")
echo "| get the files (backup, TLS transfer, mbstream -x; stored: openssl -d \\| zstd -d \\| mbstream -x) | $(hand_part "$hl" fetch) | $rest_cl (all but the prepare and the wait: transfer, probe, configure) | $(hand_part "$hs" fetch) | $(round "$(field "$cs" restore)") (restore + prepare) |"
echo "| mariadb-backup --prepare | $(hand_part "$hl" prepare) | $(round "$(field "$cl" restore)") | $(hand_part "$hs" prepare) | (above) |"
echo "| chown -R mysql; sync | $(hand_part "$hl" chown); $(hand_part "$hl" sync) | (in the restore) | $(hand_part "$hs" chown); $(hand_part "$hs" sync) | (in the restore) |"
echo "| set the position, CHANGE MASTER, START SLAVE (coffer: on its private server, before the start) | $(hand_part "$hl" configure) | (above) | $(hand_part "$hs" configure) | $rest_cs (probe, plan, configure) |"
echo "| start the service until it answers, then until caught up | $up_hl | $(round "$(field "$cl" wait)") | $up_hs | $(round "$(field "$cs" wait)") |"
echo "| **total** | ${hl%% *} | ${cl%% *} | ${hs%% *} | ${cs%% *} |"
events=$(field "$ca" events)
trx=$(field "$ca" transactions)
as=$(field "$ca" archive)
bs=$(field "$cb" archive)
pw_s=$(field "$cp_" wait)
echo
echo "## Catch-up: the log of sysbench oltp_write_only after the backup (2 threads, $load_time s, $tps tps; $binlog_mb MB of binlog in all; archived in $archive_s s, $segments segments), median of $runs"
echo
echo "| how the replica catches up on $events events ($trx transactions) | seconds | events/s | transactions/s | seed wall s | CPU s (commands) | replica's server CPU s |"
echo "|---|---|---|---|---|---|---|"
echo "| **--archive always**: the archive replayed on coffer's private server (--json archive.seconds: start, replay, shutdown) | $(round "$as") | $(echo "$events / $as" | bc) | $(echo "$trx / $as" | bc) | ${ca%% *} | $(secs "$(cut -d' ' -f2 <<<"$ca")") | $(secs "$(cut -d' ' -f3 <<<"$ca")") |"
echo "| **--archive always --prepare-option innodb_buffer_pool_size=512M** (the replica's buffer pool) | $(round "$bs") | $(echo "$events / $bs" | bc) | $(echo "$trx / $bs" | bc) | ${cb%% *} | $(secs "$(cut -d' ' -f2 <<<"$cb")") | $(secs "$(cut -d' ' -f3 <<<"$cb")") |"
echo "| --archive never: the replica's own replication from the primary over TLS (--json wait.seconds: the service's start to caught up) | $(round "$pw_s") | $(echo "$events / $pw_s" | bc) | $(echo "$trx / $pw_s" | bc) | ${cp_%% *} | $(secs "$(cut -d' ' -f2 <<<"$cp_")") | $(secs "$(cut -d' ' -f3 <<<"$cp_")") |"
echo
echo "    coffer: $(tail -1 "$work/seed.log" | sed 's/^coffer: //')"
echo "    runs (wall, CPU ticks, replica's server CPU ticks, primary's CPU ticks, steps: wall/CPU ticks):"
for n in hand-live coffer-live hand-stored coffer-stored coffer-archive coffer-archive-bp coffer-primary; do sed "s/^/      $n: /" "$work/$n"; done
cat "$work/checks"
echo
echo "    load at the end: $(uptime)"
