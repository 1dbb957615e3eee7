#!/bin/bash
# Binary log archiving and point-in-time recovery, in one run, on a server this script starts
# with the binary log on (--log-bin=binlog --binlog-format=ROW --server-id=1):
#
# A. `coffer binlog archive --follow --segment-time 5` while `sysbench oltp_write_only` writes
#    for BENCH_LOAD_TIME seconds (default 60): binlog MB, each segment's lag (its object's mtime
#    minus its first and last event's timestamp), the archiver's CPU per MB. Then the catch-up
#    cost of the whole log once: `coffer binlog archive` into an empty prefix against
#    `mariadb-binlog --read-from-remote-server --raw --to-last-log` + `cat | zstd -T0 -1 |
#    openssl enc -aes-256-ctr -pbkdf2`.
# B. Restore + prepare of the full alone (coffer restore --prepare against openssl -d | zstd -d |
#    mbstream -x + mariadb-backup --prepare), then point-in-time recovery end to end:
#    `coffer restore PREFIX --until-position FILE:POS` (POS: SHOW MASTER STATUS after the load)
#    against the steps by hand on a pipeline backup taken at the same moment as coffer's full
#    (`mariadb-backup --backup --stream=xbstream | zstd -T0 -1 | openssl enc`): openssl -d |
#    zstd -d | mbstream -x, mariadb-backup --prepare, mariadbd (the options coffer's replay
#    server gets), `mariadb-binlog --start-position=P FILES --stop-position=Q | mariadb
#    --binary-mode`, shutdown; with the CPU of mariadbd, mariadb-binlog and the client.
# C. The same log applied by the server's own replication SQL thread: the binlog files copied
#    into the prepared datadir as relay logs, CHANGE MASTER TO ... MASTER_LOG_FILE/POS,
#    RELAY_LOG_FILE/POS, START SLAVE SQL_THREAD UNTIL MASTER_LOG_FILE/POS, serial and with the
#    parallel applier (slave_parallel_mode=optimistic, slave_parallel_threads 2 and 4).
# Every replayed datadir's tables are checked against the source (CHECKSUM TABLE).
#
#   sudo scripts/bench-pitr.sh
#
# The data: 4 sysbench tables of 250,000 rows (made once in $BENCH_DIR/sysbench-pitr without a
# binary log, copied for each run; RESET MASTER after the replication user is made, so the log
# starts at binlog.000001 with the backups). The source server: buffer pool 512M,
# innodb_flush_log_at_trx_commit=2, max_binlog_size=64M (so the load spans several files).
# Before each timed run of A's catch-up and B the page cache is dropped and the run's inputs
# (binlog files, images) read back into it. Medians of BENCH_RUNS (default 3) for the catch-up
# and B's restore + prepare; the load, the end-to-end recoveries (BENCH_REPLAY_RUNS, default 1)
# and C once each. Needs root, mariadb-server, mariadb-backup, sysbench,
# zstd, openssl, jq, GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${BENCH_DIR:-/var/tmp/coffer-bench}
work=$root/pitr
runs=${BENCH_RUNS:-3}
load_time=${BENCH_LOAD_TIME:-60}
seg_time=5
tables=4
rows=250000
src=$root/sysbench-pitr
[ -d "$src" ] || scripts/sysbench-datadir.sh "$src" $tables $rows >&2
cargo build --release --quiet -p coffer-cli
coffer=$PWD/target/release/coffer
tick=$(getconf CLK_TCK)

# A server left by an interrupted run of this script.
for pidfile in "$work/mysqld.pid" "$work/replay.pid"; do
    p=$(cat "$pidfile" 2>/dev/null) || continue
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = mariadbd ] && kill "$p" && sleep 3
done
rm -rf "$work"
mkdir -p "$work"
chmod 700 "$work"
data=$work/data
cp -a "$src" "$data"
key=$work/bench.key
$coffer key generate -o "$key" -q
pw=$work/repl.pw
(umask 077 && openssl rand -hex 16 >"$pw")
sock=$work/mysqld.sock
rsock=$work/replay.sock
mariadbd --no-defaults --datadir="$data" --socket="$sock" --skip-networking --user=root \
    --log-bin=binlog --binlog-format=ROW --server-id=1 --max-binlog-size=64M \
    --innodb-buffer-pool-size=512M --innodb-flush-log-at-trx-commit=2 \
    --log-error="$work/error.log" --pid-file="$work/mysqld.pid" &
server=$!
rserver=
cleanup() {
    [ -n "$rserver" ] && { mariadb-admin --socket="$rsock" -uroot shutdown 2>/dev/null || kill "$rserver" 2>/dev/null; wait "$rserver" 2>/dev/null || true; }
    mariadb-admin --socket="$sock" -uroot shutdown 2>/dev/null || kill $server 2>/dev/null
    wait $server 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 60); do mariadb-admin --socket="$sock" -uroot ping >/dev/null 2>&1 && break; sleep 1; done
sql() { mariadb --socket="$sock" -uroot -N -B -e "$1"; }
rsql() { mariadb --socket="$rsock" -uroot -N -B -e "$1"; }
sql "CREATE USER repl@localhost IDENTIFIED BY '$(cat "$pw")';
     GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO repl@localhost;
     RESET MASTER"
binlog_bytes() { sql "SHOW BINARY LOGS" | awk '{s += $2} END {print s}'; }

now() { date +%s.%N; }
since() { echo "scale=2; ($(now) - $1) / 1" | bc; }
cpu_of() { awk '{print $1 + $2}' "$1"; } # a GNU time file of "%U %S"
prepare_cache() { sync; echo 3 >/proc/sys/vm/drop_caches; find "$@" -type f -exec cat {} + >/dev/null 2>&1 || true; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
ratio() { echo "scale=2; $1 / $2" | bc | sed 's/^\./0./'; }

# measure OUTPUT CMD [CACHE_DIRS...]: median "wall cpu rss_mb out_bytes" of $runs runs.
measure() {
    local out=$1 cmd=$2 i rows=()
    shift 2
    for i in $(seq 1 "$runs"); do
        rm -rf "$out"
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

echo "# Binary log archiving and point-in-time recovery: $tables sysbench tables x $rows rows, MariaDB $(sql 'SELECT VERSION()'), $(nproc) cores"
echo
echo "    load at start: $(uptime)"

# Backups at the same moment (nothing writes in between): coffer's full under the prefix, and
# the pipeline's, for the restores by hand.
prod=$work/prod
mkdir -p "$prod" "$work/p"
t0=$(now)
$coffer backup --mysql -S "$sock" -u root -o "file://$prod/" --key-file "$key" -q
coffer_backup_s=$(since "$t0")
t0=$(now)
mariadb-backup --no-defaults --backup --stream=xbstream --socket="$sock" --user=root --target-dir="$work/t" \
    2>"$work/p/backup.log" | zstd -T0 -1 -q |
    openssl enc -aes-256-ctr -pbkdf2 -pass file:"$key" >"$work/p/full.enc"
pipe_backup_s=$(since "$t0")
rm -rf "$work/t"
image=$(ls "$prod"/*.coffer)
start_file=$($coffer info "$image" --key-file "$key" --json | jq -r '.backup.binlog.file')
start_pos=$($coffer info "$image" --key-file "$key" --json | jq -r '.backup.binlog.position')
echo "    full backups: coffer $coffer_backup_s s ($(stat -c %s "$image") bytes, binlog $start_file:$start_pos), pipeline $pipe_backup_s s ($(stat -c %s "$work/p/full.enc") bytes)"

# ---------------------------------------------------------------------------------------------
# A. The archiver following the server under load.
bytes0=$(binlog_bytes)
archiver_start=$(date +%s)
$coffer binlog archive -S "$sock" -u repl --password-file "$pw" -o "file://$prod/binlog/" --key-file "$key" \
    --follow --segment-time $seg_time 2>"$work/archive.log" &
archiver=$!
sleep 2
cpu0=$(cpu_ticks $archiver)
load_start=$(date +%s)
echo "    load before the write load: $(uptime)"
sysbench oltp_write_only --db-driver=mysql --mysql-socket="$sock" --mysql-user=root --mysql-db=sbtest \
    --tables=$tables --table-size=$rows --threads=2 --time="$load_time" run >"$work/sysbench.log"
load_end=$(date +%s)
read -r end_file end_pos _ < <(sql "SHOW MASTER STATUS")
cpu1=$(cpu_ticks $archiver)
bytes1=$(binlog_bytes)
# The archive's end reaches the server's within one segment time; then the archiver stops.
archived=
for _ in $(seq 1 $((4 * seg_time * 4))); do
    last=$($coffer binlog list "file://$prod/binlog/" --json -q | jq -r '.[-1] | "\(.file):\(.end)"')
    [ "$last" = "$end_file:$end_pos" ] && { archived=$(date +%s); break; }
    sleep 0.25
done
cpu2=$(cpu_ticks $archiver)
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$archiver/status")
kill $archiver
sleep 1
kill $archiver 2>/dev/null || true
wait $archiver 2>/dev/null || true
[ -n "$archived" ] || { echo "the archive did not reach $end_file:$end_pos: it ends at $last" >&2; exit 1; }
load_mb=$(echo "scale=1; ($bytes1 - $bytes0) / 1000000" | bc)
tps=$(awk '/transactions:/ {gsub(/[()]/, "", $3); print $3}' "$work/sysbench.log")
echo
echo "## A. Archive under load: sysbench oltp_write_only, 2 threads, ${load_time} s ($tps tps): $load_mb MB of binlog ($end_file:$end_pos)"
echo
echo "    $(grep -c '' "$work/archive.log") lines from the archiver; gaps in the archive: $($coffer binlog list "file://$prod/binlog/" --json -q | jq '[.[] | select(.gap_before)] | length')"
echo
echo "| segment | events | bytes | stored (mtime) | lag after its first event s | lag after its last event s |"
echo "|---|---|---|---|---|---|"
: >"$work/lags"
for f in "$prod"/binlog/*.coffer; do
    mt=$(stat -c %.3Y "$f")
    read -r first last events size < <($coffer extract "$f" coffer-binlog.json --stdout --key-file "$key" -q |
        jq -r '"\(.first_event_time) \(.last_event_time) \(.events) \(.end - .start)"')
    lf=$(echo "$mt - $first" | bc)
    ll=$(echo "$mt - $last" | bc)
    # Segments whose events were all written after the archiver started (the first one also
    # holds the events logged before it: the user, the backups).
    [ "$first" -ge "$archiver_start" ] && echo "$lf $ll $size" >>"$work/lags"
    echo "| $(basename "$f" .coffer) | $events | $size | $(date -u -d "@$mt" +%T.%2N) | $lf | $ll |"
done
nseg=$(wc -l <"$work/lags")
echo
echo "| archiver under load | value |"
echo "|---|---|"
echo "| segments written while it ran | $nseg, median $(cut -d' ' -f3 "$work/lags" | median) bytes |"
echo "| lag after a segment's first event: median / max | $(cut -d' ' -f1 "$work/lags" | median) / $(cut -d' ' -f1 "$work/lags" | sort -n | tail -1) s (target: within the segment time, $seg_time s, + 1 s of timestamp granularity) |"
echo "| lag after a segment's last event: median / max | $(cut -d' ' -f2 "$work/lags" | median) / $(cut -d' ' -f2 "$work/lags" | sort -n | tail -1) s |"
echo "| the archive reached the server's end | $((archived - load_end)) s after the load ended |"
a_cpu=$(echo "scale=2; ($cpu1 - $cpu0) / $tick" | bc)
echo "| archiver CPU during the load | $a_cpu s in ${load_time} s ($(echo "scale=1; 100 * $a_cpu / $load_time" | bc)% of one core), $(echo "scale=4; $a_cpu / $load_mb" | bc | sed 's/^\./0./') s per MB of binlog |"
echo "| archiver CPU, whole run (connect to stop) | $(echo "scale=2; $cpu2 / $tick" | bc) s; peak RSS $((rss_kb / 1024)) MB |"
echo "| sysbench | $tps tps |"

# The catch-up: the whole log once.
echo
echo "## A2. Catch-up: the whole binary log ($(binlog_bytes) bytes in $(sql 'SHOW BINARY LOGS' | wc -l) files) archived once, median of $runs"
echo
echo "    load: $(uptime)"
echo
echo "| what | wall s | CPU s | CPU s per MB | peak RSS MB | output bytes | vs pipeline (wall; CPU) |"
echo "|---|---|---|---|---|---|---|"
all_mb=$(echo "scale=3; $(binlog_bytes) / 1000000" | bc)
caches=$(ls "$data"/binlog.[0-9]*)
fetch=$(measure "$work/raw" "mkdir -p $work/raw && mariadb-binlog --no-defaults --read-from-remote-server --raw --to-last-log --result-file=$work/raw/ -S $sock -u root binlog.000001 && sync" $caches)
seal=$(measure "$work/raw.enc" "cat $work/raw/binlog.* | zstd -T0 -1 -q | openssl enc -aes-256-ctr -pbkdf2 -pass file:$key > $work/raw.enc && sync" "$work/raw")
read -r fw fc frss _ <<<"$fetch"
read -r sw sc srss ssize <<<"$seal"
pw_wall=$(echo "$fw + $sw" | bc)
pw_cpu=$(echo "$fc + $sc" | bc)
row() { # name wall cpu rss size
    printf '| %s | %s | %s | %s | %s | %s | %sx; %sx |\n' "$1" "$2" "$3" "$(echo "scale=4; $3 / $all_mb" | bc | sed 's/^\./0./')" "$4" "$5" "$(ratio "$pw_wall" "$2")" "$(ratio "$pw_cpu" "$3")"
}
row 'mariadb-binlog --read-from-remote-server --raw --to-last-log (into files, + sync)' "$fw" "$fc" "$frss" "$(du -sb --apparent-size "$work/raw" | cut -f1)"
row 'cat files \| zstd -T0 -1 \| openssl enc -aes-256-ctr -pbkdf2 (+ sync)' "$sw" "$sc" "$srss" "$ssize"
row 'pipeline: the two above' "$pw_wall" "$pw_cpu" "$((frss > srss ? frss : srss))" "$ssize"
r=$(measure "$work/catchup" "$coffer binlog archive -S $sock -u repl --password-file $pw -o file://$work/catchup/ --key-file $key -q" $caches)
read -r cw cc crss csize <<<"$r"
row '**coffer binlog archive** (into an empty prefix)' "$cw" "$cc" "$crss" "$csize"
echo
echo "    segments: $($coffer binlog list "file://$work/catchup/" -q | wc -l); mariadb-binlog fetched $(du -sb --apparent-size "$work/raw" | cut -f1) bytes in $(ls "$work/raw" | wc -l) files"

# ---------------------------------------------------------------------------------------------
# B. Point-in-time recovery to the end of the load.
checksums() { # SQL-FUNCTION: CHECKSUM TABLE of every sbtest table
    local t list=
    for t in $(seq 1 $tables); do list+="${list:+,}sbtest.sbtest$t"; done
    $1 "CHECKSUM TABLE $list" | awk '{print $2}' | paste -sd' '
}
want=$(checksums sql)
start_server() { # DATADIR [ARGS...]: the replay server, as coffer starts it (backup-my.cnf, no network, no binlog)
    local dir=$1
    shift
    rm -f "$rsock"
    mariadbd --defaults-file="$dir/backup-my.cnf" --datadir="$dir" --socket="$rsock" --pid-file="$work/replay.pid" \
        --log-error="$work/replay.err" --skip-networking --skip-slave-start --skip-log-bin \
        --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 --user=root "$@" &
    rserver=$!
    for _ in $(seq 1 6000); do
        mariadb-admin --socket="$rsock" -uroot ping >/dev/null 2>&1 && return 0
        kill -0 $rserver 2>/dev/null || { echo "the replay server exited: $(tail -3 "$work/replay.err")" >&2; return 1; }
        sleep 0.05
    done
    return 1
}
stop_server() {
    mariadb-admin --socket="$rsock" -uroot shutdown
    wait $rserver
    rserver=
}
files=$(for f in "$work"/raw/binlog.[0-9]*; do
    n=$(basename "$f")
    [ "${n##*.}" -ge "${start_file##*.}" ] && [ "${n##*.}" -le "${end_file##*.}" ] && echo "$f"
done | paste -sd' ')

# Per-process CPU during coffer's replay: /proc sampled every second (a process's last second
# may be missed), "time pid comm ticks"; it runs during the replay by hand too, for the same
# conditions (that one's figures are exact: GNU time and /proc before and after).
sampler() {
    while :; do
        for p in $(pgrep -x 'mariadbd|mariadb-binlog|mariadb'); do
            [ "$p" = "$server" ] && continue
            awk -v t="$(now)" '{print t, $1, $2, $14 + $15}' "/proc/$p/stat" 2>/dev/null || true
        done
        sleep 1
    done
}
stamp() { while IFS= read -r l; do echo "$(now) $l"; done; } # each line with its time
proc_cpu() { # SAMPLES COMM: CPU s of the processes named COMM
    awk -v c="($2)" -v k="$tick" '$3 == c {if ($4 > m[$2]) m[$2] = $4} END {for (p in m) s += m[p]; printf "%.2f", s / k}' "$1"
}

rdir=$work/restore
hdir=$work/hand
echo
echo "## B1. Restore + prepare of the full backup alone, median of $runs"
echo
echo "    load: $(uptime)"
echo
echo "| what | wall s | CPU s | peak RSS MB | output bytes | vs by hand |"
echo "|---|---|---|---|---|---|"
r1=$(measure "$hdir" "mkdir -p $hdir && openssl enc -d -aes-256-ctr -pbkdf2 -pass file:$key < $work/p/full.enc | zstd -d -q | mbstream -x -C $hdir && mariadb-backup --no-defaults --prepare --target-dir=$hdir && sync" "$work/p/full.enc")
brow() { # name result baseline_wall
    read -r wall cpu rss size <<<"$2"
    printf '| %s | %s | %s | %s | %s | %sx |\n' "$1" "$wall" "$cpu" "$rss" "$size" "$(ratio "$3" "$wall")"
}
brow 'openssl enc -d \| zstd -d \| mbstream -x, mariadb-backup --prepare, sync' "$r1" "${r1%% *}"
r2=$(measure "$rdir" "$coffer restore $image --to $rdir --prepare --key-file $key -q" "$image")
brow '**coffer restore IMAGE --prepare**' "$r2" "${r1%% *}"
# The prepared backup, for C.
mv "$hdir" "$work/prepared"
rm -rf "$rdir"

replay_runs=${BENCH_REPLAY_RUNS:-1}
echo
echo "    load before B2: $(uptime)"
: >"$work/b-coffer"
: >"$work/b-hand"
for i in $(seq 1 "$replay_runs"); do
    # coffer
    rm -rf "$rdir" "$rdir.binlog"
    prepare_cache "$prod"
    sampler >"$work/samples" &
    spid=$!
    { /usr/bin/time -f "%e %U %S %M" -o "$work/time" \
        $coffer restore "file://$prod/" --until-position "$end_file:$end_pos" --to "$rdir" --key-file "$key" \
        2>&1 >/dev/null; } | stamp >"$work/pitr.log"
    kill $spid
    wait $spid 2>/dev/null || true
    read -r wall user sys _ <"$work/time"
    cp "$rdir/coffer-pitr.json" "$work/pitr.json"
    # The replay itself: from the server's start to the replay's end, as coffer says them.
    feed=$(awk '/replay server started/ {a = $1} /replay ended/ {b = $1} END {printf "%.2f", b - a}' "$work/pitr.log")
    read -r events trx rs ps < <(jq -r '"\(.events) \(.transactions) \(.restore_seconds * 100 | round / 100) \(.replay_seconds * 100 | round / 100)"' "$work/pitr.json")
    # "wall cpu restore replay feed server_cpu binlog_cpu client_cpu"
    echo "$wall $(echo "$user + $sys" | bc) $rs $ps $feed $(proc_cpu "$work/samples" mariadbd) $(proc_cpu "$work/samples" mariadb-binlog) $(proc_cpu "$work/samples" mariadb)" >>"$work/b-coffer"

    # by hand
    rm -rf "$hdir"
    mkdir -p "$hdir"
    prepare_cache "$work/p/full.enc" "$work/raw.enc" $files
    sampler >"$work/samples-hand" &
    spid=$!
    # The archived log back in the clear (its bytes; the replay then reads mariadb-binlog's
    # files, which hold the same: cat's output is one stream that no tool splits back).
    t0=$(now)
    /usr/bin/time -f "%U %S" -o "$work/t.l" bash -c "openssl enc -d -aes-256-ctr -pbkdf2 -pass file:$key < $work/raw.enc | zstd -d -q > $work/log.bin"
    l=$(since "$t0")
    rm -f "$work/log.bin"
    t0=$(now)
    /usr/bin/time -f "%U %S" -o "$work/t.x" bash -c "openssl enc -d -aes-256-ctr -pbkdf2 -pass file:$key < $work/p/full.enc | zstd -d -q | mbstream -x -C $hdir"
    x=$(since "$t0")
    t0=$(now)
    /usr/bin/time -f "%U %S" -o "$work/t.p" mariadb-backup --no-defaults --prepare --target-dir="$hdir" 2>"$work/prepare.log"
    p=$(since "$t0")
    t0=$(now)
    start_server "$hdir"
    s=$(since "$t0")
    c0=$(cpu_ticks $rserver)
    t0=$(now)
    # shellcheck disable=SC2086
    /usr/bin/time -f "%U %S" -o "$work/t.b" mariadb-binlog --no-defaults --start-position="$start_pos" $files --stop-position="$end_pos" |
        /usr/bin/time -f "%U %S" -o "$work/t.c" mariadb --no-defaults --socket="$rsock" -uroot --binary-mode
    f=$(since "$t0")
    c1=$(cpu_ticks $rserver)
    t0=$(now)
    stop_server
    d=$(since "$t0")
    kill $spid
    wait $spid 2>/dev/null || true
    total=$(echo "$l + $x + $p + $s + $f + $d" | bc)
    # "total extract prepare start feed shutdown server_cpu binlog_cpu client_cpu extract_cpu prepare_cpu log log_cpu"
    echo "$total $x $p $s $f $d $(echo "scale=2; ($c1 - $c0) / $tick" | bc) $(cpu_of "$work/t.b") $(cpu_of "$work/t.c") $(cpu_of "$work/t.x") $(cpu_of "$work/t.p") $l $(cpu_of "$work/t.l")" >>"$work/b-hand"
done
col() { cut -d' ' -f"$2" "$1" | median; } # FILE FIELD: the median of a column
cwall=$(col "$work/b-coffer" 1)
hwall=$(col "$work/b-hand" 1)
crest=$(col "$work/b-coffer" 3)
crep=$(col "$work/b-coffer" 4)
cfeed=$(col "$work/b-coffer" 5)
hx=$(col "$work/b-hand" 2)
hp=$(col "$work/b-hand" 3)
hs=$(col "$work/b-hand" 4)
hf=$(col "$work/b-hand" 5)
hd=$(col "$work/b-hand" 6)
hrep=$(echo "$hs + $hf + $hd" | bc)
replay_mb=$(jq -r '.bytes / 1000000 * 10 | floor / 10' "$work/pitr.json")
echo
echo "## B2. Point-in-time recovery to $end_file:$end_pos ($replay_mb MB of binlog from $start_file:$start_pos, $events events), median of $replay_runs"
echo
echo "    coffer restore file://$prod/ --until-position $end_file:$end_pos --to $rdir --key-file $key"
echo "    coffer: $(tail -1 "$work/pitr.log" | cut -d' ' -f2- | sed 's/^coffer: //')"
echo "    the pipeline backup's binlog position: $(awk '{print $1 ":" $2}' "$hdir/xtrabackup_binlog_info") (coffer's: $start_file:$start_pos)"
echo
echo "| step | coffer s | by hand s | vs by hand |"
echo "|---|---|---|---|"
hl=$(col "$work/b-hand" 12)
echo "| read the archive, check it, write the binary log files (by hand: openssl -d \\| zstd -d of the archived log into one file) | $(printf %.2f "$(echo "$cwall - $crest - $crep" | bc)") | $hl | $(ratio "$hl" "$(echo "$cwall - $crest - $crep" | bc)")x |"
echo "| restore + prepare | $crest | $(echo "$hx + $hp" | bc) (openssl -d \\| zstd -d \\| mbstream -x: $hx; prepare: $hp) | $(ratio "$(echo "$hx + $hp" | bc)" "$crest")x |"
echo "| replay: server start + mariadb-binlog \\| mariadb + shutdown | $crep | $hrep (start $hs, replay $hf, shutdown $hd) | $(ratio "$hrep" "$crep")x |"
echo "| of which mariadb-binlog \\| mariadb (coffer: from its \"replay server started\" to \"replay ended\") | $cfeed | $hf | |"
echo "| **total** | **$cwall** | $hwall | **$(ratio "$hwall" "$cwall")x** |"
echo
echo "| replay of $events events ($trx transactions, $replay_mb MB) | events/s | transactions/s | MB/s | CPU s: mariadbd / mariadb-binlog / mariadb | total CPU s |"
echo "|---|---|---|---|---|---|"
echo "| coffer (CPU sampled from /proc every second) | $(echo "$events / $cfeed" | bc) | $(echo "$trx / $cfeed" | bc) | $(echo "scale=2; $replay_mb / $cfeed" | bc) | $(col "$work/b-coffer" 6) / $(col "$work/b-coffer" 7) / $(col "$work/b-coffer" 8) | $(col "$work/b-coffer" 2) (the whole restore) |"
echo "| by hand | $(echo "$events / $hf" | bc) | $(echo "$trx / $hf" | bc) | $(echo "scale=2; $replay_mb / $hf" | bc) | $(col "$work/b-hand" 7) / $(col "$work/b-hand" 8) / $(col "$work/b-hand" 9) | extract $(col "$work/b-hand" 10), prepare $(col "$work/b-hand" 11) |"
echo
echo "    coffer runs (wall cpu restore replay feed mariadbd mariadb-binlog mariadb):"
sed 's/^/      /' "$work/b-coffer"
echo "    by hand (total extract prepare start replay shutdown mariadbd mariadb-binlog mariadb extract-cpu prepare-cpu log log-cpu):"
sed 's/^/      /' "$work/b-hand"
echo "    by hand, the same sampler (last run): mariadbd $(proc_cpu "$work/samples-hand" mariadbd) / mariadb-binlog $(proc_cpu "$work/samples-hand" mariadb-binlog) / mariadb $(proc_cpu "$work/samples-hand" mariadb)"

# The results against the source's tables.
start_server "$rdir"
got_coffer=$(checksums rsql)
stop_server
start_server "$hdir"
got_hand=$(checksums rsql)
stop_server
echo "    CHECKSUM TABLE: source $want; coffer $([ "$got_coffer" = "$want" ] && echo same || echo "DIFFERENT: $got_coffer"); by hand $([ "$got_hand" = "$want" ] && echo same || echo "DIFFERENT: $got_hand")"

# ---------------------------------------------------------------------------------------------
# C. The server's own applier: the binary log as relay logs of the prepared backup.
echo
echo "## C. The same log through the replication SQL thread (relay logs), one run each"
echo
echo "    load: $(uptime)"
echo
tmpl=$work/prepared
last_gtid=$(jq -r '.last_gtid' "$work/pitr.json")
cdir=$work/relay
echo "| applier | copy the logs in s | server start s | apply s | shutdown s | total s | events/s | MB/s | mariadbd CPU s | vs coffer's client replay (apply; with start and shutdown) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for threads in 0 2 4; do
    rm -rf "$cdir"
    cp -a "$tmpl" "$cdir"
    prepare_cache "$cdir" $files
    t0=$(now)
    : >"$cdir/relay.index"
    for f in $files; do
        cp "$f" "$cdir/relay.${f##*.}"
        echo "./relay.${f##*.}" >>"$cdir/relay.index"
    done
    cp_s=$(since "$t0")
    t0=$(now)
    start_server "$cdir" --server-id=2 --relay-log=relay --relay-log-index=relay.index --relay-log-purge=0
    s=$(since "$t0")
    # The master's file is named too: a binary log copied as a relay log lacks the ROTATE event
    # a replica's I/O thread writes first, and the parallel applier of 10.11.19 crashes on an
    # empty master log name (compare_log_name in Relay_log_info::inc_group_relay_log_pos).
    rsql "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_USER='none', MASTER_USE_GTID=no,
              MASTER_LOG_FILE='$start_file', MASTER_LOG_POS=$start_pos,
              RELAY_LOG_FILE='relay.${start_file##*.}', RELAY_LOG_POS=$start_pos;
          SET GLOBAL slave_parallel_threads=$threads, slave_parallel_mode='optimistic'"
    c0=$(cpu_ticks $rserver)
    t0=$(now)
    rsql "START SLAVE SQL_THREAD UNTIL MASTER_LOG_FILE='$end_file', MASTER_LOG_POS=$end_pos"
    ok=$(rsql "SELECT MASTER_GTID_WAIT('$last_gtid', 600)")
    a=$(since "$t0")
    c1=$(cpu_ticks $rserver)
    status=$(mariadb --socket="$rsock" -uroot -e "SHOW SLAVE STATUS\G" | tr -s ' ' | grep -E 'Relay_Master_Log_File|Exec_Master_Log_Pos|Last_SQL_Error|Slave_SQL_Running:' | paste -sd';')
    rsql "STOP SLAVE" >/dev/null 2>&1 || true
    got=$(checksums rsql)
    t0=$(now)
    stop_server
    d=$(since "$t0")
    total=$(echo "$cp_s + $s + $a + $d" | bc)
    name="SQL thread, serial"
    [ "$threads" -gt 0 ] && name="slave_parallel_threads=$threads, optimistic"
    echo "| $name | $cp_s | $s | $a | $d | $total | $(echo "$events / $a" | bc) | $(echo "scale=2; $replay_mb / $a" | bc) | $(echo "scale=2; ($c1 - $c0) / $tick" | bc) | $(ratio "$cfeed" "$a")x; $(ratio "$crep" "$total")x |"
    echo "    ($name: MASTER_GTID_WAIT($last_gtid) = $ok; $status; CHECKSUM TABLE $([ "$got" = "$want" ] && echo "same as the source" || echo "DIFFERENT: $got"))" >>"$work/c-notes"
done
echo
sed 's/^/    /' "$work/c-notes"
echo
echo "    load at the end: $(uptime)"
