#!/bin/bash
# A hot backup moved to another datadir over TLS and prepared there, both ends on this machine
# (what a Galera SST does), in one run:
#   coffer receive --to DIR --prepare  <-  coffer send --mysql
# against the socat chain of the SST scripts:
#   socat OPENSSL-LISTEN | mbstream -x, then mariadb-backup --prepare
#     <-  mariadb-backup --backup --stream=xbstream | socat OPENSSL
# Timed from start to a prepared, flushed datadir. Medians of BENCH_RUNS (default 3); the page
# cache is dropped and the source datadir read back before each run.
#
#   sudo scripts/bench-transfer.sh [DATADIR]    # default: the ~2.2 GB sysbench datadir of bench-live.sh
#   BENCH_ONLY=resume ...                       # only the second table
bench=transfer
. "$(dirname "$0")/bench-server.sh"
pki=$work/pki
[ -f "$pki/node2.key" ] || { $coffer tls generate --ca-dir "$pki" --name node1 -q; $coffer tls generate --ca-dir "$pki" --name node2 -q; }
dst=$work/dst
port=45444

# Both chains start sending as soon as the receiving end listens (instead of a fixed sleep).
await_listener="until ss -ltn 'sport = :$port' | grep -q LISTEN; do sleep 0.01; done"
prepare_cache() { sync; echo 3 >/proc/sys/vm/drop_caches; find "$data" -type f -exec cat {} + >/dev/null 2>&1 || true; }

socat_chain="rm -rf $dst && mkdir -p $dst &&
  (socat -u OPENSSL-LISTEN:$port,reuseaddr,cert=$pki/node2.crt,key=$pki/node2.key,cafile=$pki/ca.crt,verify=1 STDOUT | mbstream -x -C $dst) &
  $await_listener;
  mariadb-backup --no-defaults --backup --stream=xbstream --socket=$sock --user=root --target-dir=$work/t 2>/dev/null |
    socat -u STDIN OPENSSL:localhost:$port,cert=$pki/node1.crt,key=$pki/node1.key,cafile=$pki/ca.crt,verify=1;
  wait; mariadb-backup --no-defaults --prepare --target-dir=$dst 2>/dev/null && sync"
coffer_chain="rm -rf $dst &&
  ($coffer receive --listen 127.0.0.1:$port --to $dst --prepare --key-file $key --cert $pki/node2.crt --key $pki/node2.key --ca $pki/ca.crt -q 2>/dev/null) &
  $await_listener;
  $coffer send --mysql -S $sock -u root --to 127.0.0.1:$port --key-file $key --cert $pki/node1.crt --key $pki/node1.key --ca $pki/ca.crt -q;
  wait"

measure() {
    local i rows=()
    for i in $(seq 1 "$runs"); do
        rm -rf "$work/t"
        prepare_cache
        /usr/bin/time -f "%e %U %S" -o "$work/time" bash -c "$1" >/dev/null 2>"$work/stderr" || { echo "FAILED: $(tail -3 "$work/stderr")" >&2; return 1; }
        [ -f "$dst/${2:-xtrabackup_checkpoints}" ] && [ ! -e "$dst/.coffer-restore-incomplete" ] || { echo "FAILED: no complete datadir" >&2; return 1; }
        read -r wall user sys <"$work/time"
        rows+=("$wall $(echo "$user + $sys" | bc)")
    done
    printf '%s\n' "${rows[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p"
}

if [ "${BENCH_ONLY:-}" != resume ]; then
echo "## Hot backup to another datadir over TLS, prepared there: $(du -sh --apparent-size "$data" | cut -f1), $(nproc) cores, both ends here, median of $runs"
echo
echo "| what | wall s | MB/s | CPU s | vs socat |"
echo "|---|---|---|---|---|"
s=$(measure "$socat_chain")
c=$(measure "$coffer_chain")
n=$(measure "${coffer_chain/ -q;/ -q --compress none;}")
for row in "mariadb-backup | socat OPENSSL -> socat OPENSSL-LISTEN | mbstream -x, then --prepare:$s" "**coffer send --mysql -> coffer receive --to --prepare** (zstd):$c" "**the same with --compress none**:$n"; do
    name=${row%%:*}; r=${row#*:}; read -r wall cpu <<<"$r"
    printf '| %s | %s | %s | %s | %sx |\n' "${name//|/\\|}" "$wall" "$(echo "scale=0; $bytes / 1000000 / $wall" | bc)" "$cpu" "$(echo "scale=2; ${s%% *} / $wall" | bc)"
done
rm -rf "$dst"
fi

# Resuming: the same data sent as a directory (the idle server's datadir), --compress none.
recv_dir="$coffer receive --listen 127.0.0.1:$port --to $dst --key-file $key --cert $pki/node2.crt --key $pki/node2.key --ca $pki/ca.crt -q"
send_dir="$coffer send $data --to 127.0.0.1:$port --key-file $key --cert $pki/node1.crt --key $pki/node1.key --ca $pki/ca.crt -q --compress none"
dir_chain() { echo "rm -rf $dst && ($recv_dir $1 2>$work/receiver.err) & $await_listener; $send_dir $2; wait"; }
full=$(measure "$(dir_chain "" "")" ibdata1)
nock=$(measure "$(dir_chain "--checkpoint 1T" "")" ibdata1)
# Interrupted once about half the data is in place, then resumed; the resumed run is timed.
resumed=()
for _ in $(seq 1 "$runs"); do
    rm -rf "$dst"; prepare_cache
    ($recv_dir 2>/dev/null) & rpid=$!
    eval "$await_listener"
    $send_dir 2>/dev/null & spid=$!
    until [ "$(du -sb "$dst" 2>/dev/null | cut -f1)" -gt $((bytes / 2)) ] 2>/dev/null; do sleep 0.02; done
    kill -9 $spid; wait $spid 2>/dev/null || true; wait $rpid 2>/dev/null || true
    held=$(du -sb "$dst" | cut -f1)
    /usr/bin/time -f "%e" -o "$work/time" bash -c "($recv_dir 2>/dev/null) & $await_listener; $send_dir --resume; wait" 2>/dev/null
    [ ! -e "$dst/.coffer-restore-incomplete" ] || { echo "FAILED: resumed restore incomplete" >&2; exit 1; }
    resumed+=("$(cat "$work/time") $held")
done
r=$(printf '%s\n' "${resumed[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p")
echo
echo "## Resuming a directory transfer: $(du -sh --apparent-size "$data" | cut -f1) as a directory, --compress none, median of $runs"
echo
echo "| what | wall s | vs full |"
echo "|---|---|---|"
printf '| full transfer, checkpoint every 256 MiB (default) | %s | 1.00x |\n' "${full%% *}"
printf '| full transfer, no checkpoint (--checkpoint 1T) | %s | %s |\n' "${nock%% *}" "$(echo "scale=2; ${nock%% *} / ${full%% *}" | bc)"
printf '| send --resume after the first try was killed with %s MB in place | %s | %s |\n' "$(( ${r#* } / 1000000 ))" "${r%% *}" "$(echo "scale=2; ${r%% *} / ${full%% *}" | bc)"
rm -rf "$dst"
