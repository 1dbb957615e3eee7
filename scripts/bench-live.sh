#!/bin/bash
# Hot backups of a running MariaDB server, in one run, on the same server and data:
#   coffer backup --mysql (zstd 1, lz4, none) against
#   mariadb-backup --backup --stream=xbstream | zstd -T0 -1 | openssl enc -aes-256-ctr -pbkdf2 > file
#   and mariadb-backup --backup --stream=xbstream > /dev/null (the engine's own floor);
# restore + prepare: coffer restore --prepare against
#   openssl enc -d | zstd -d | mbstream -x, then mariadb-backup --prepare.
#
#   sudo scripts/bench-live.sh [DATADIR]     # default: a sysbench datadir of ~2.2 GB (made if absent)
#
# The server runs on DATADIR itself, idle (scripts/bench-server.sh). Before every run the page cache is dropped and the datadir read back into it, as in bench.sh. Every
# output is flushed (coffer by itself, the pipelines by `sync` inside the timing). Medians of
# BENCH_RUNS (default 3). Needs root, mariadb-server, mariadb-backup, zstd, openssl, GNU time.
bench=live
. "$(dirname "$0")/bench-server.sh"
engine="mariadb-backup --no-defaults --backup --stream=xbstream --socket=$sock --user=root --target-dir=$work/t"

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
    printf '| %s | %s | %s | %s | %s | %s | %sx |\n' "$1" "$wall" "$(echo "scale=0; $bytes / 1000000 / $wall" | bc)" "$cpu" "$rss" "$((size / 1000000))" "$(echo "scale=2; $3 / $wall" | bc)"
}

echo "## Hot backup of $(du -sh --apparent-size "$data" | cut -f1) ($bytes bytes), $(nproc) cores, median of $runs"
echo
echo "| what | wall s | MB/s | CPU s | peak RSS MB | output MB | vs pipeline |"
echo "|---|---|---|---|---|---|---|"
pipe=$(measure "$work/p.enc" "$engine | zstd -T0 -1 | openssl enc -aes-256-ctr -pbkdf2 -pass file:$key > $work/p.enc && sync" "$data")
pipe_wall=${pipe%% *}
row 'mariadb-backup \| zstd -T0 -1 \| openssl enc -aes-256-ctr' "$pipe" "$pipe_wall"
floor=$(measure /nonexistent "$engine > /dev/null" "$data")
row 'mariadb-backup > /dev/null (the engine alone)' "$floor" "$pipe_wall"
r=$(measure /nonexistent "$engine | cat > /dev/null" "$data")
row 'mariadb-backup \| cat > /dev/null (the engine through a pipe)' "$r" "$pipe_wall"
floor2=$(measure /nonexistent "$engine --parallel=$(nproc) > /dev/null" "$data")
row "mariadb-backup --parallel=$(nproc) > /dev/null (as coffer runs it)" "$floor2" "$pipe_wall"
for c in zstd lz4 none; do
    r=$(measure "$work/c-$c.coffer" "$coffer backup --mysql -S $sock -u root -o $work/c-$c.coffer --key-file $key --compress $c -q" "$data")
    row "**coffer backup --mysql --compress $c**" "$r" "$pipe_wall"
done
r=$(measure /nonexistent "$coffer backup --mysql -S $sock -u root -o - --key-file $key --compress none -q > /dev/null" "$data")
row 'coffer backup --mysql --compress none -o - > /dev/null' "$r" "$pipe_wall"
echo "| (that, against the engine alone; with --parallel=$(nproc)) | | | | | | $(echo "scale=2; ${floor%% *} / ${r%% *}" | bc)x; $(echo "scale=2; ${floor2%% *} / ${r%% *}" | bc)x |"
r=$(measure /nonexistent "$coffer backup --mysql -S $sock -u root -o - --key-file $key --compress lz4 -q > /dev/null" "$data")
row 'coffer backup --mysql --compress lz4 -o - > /dev/null' "$r" "$pipe_wall"

echo
echo "## Restore + prepare, median of $runs"
echo
echo "| what | wall s | MB/s | CPU s | peak RSS MB | output MB | vs pipeline |"
echo "|---|---|---|---|---|---|---|"
rdir=$work/restore
rpipe=$(SETUP="rm -rf $rdir" measure "$rdir" "mkdir -p $rdir && openssl enc -d -aes-256-ctr -pbkdf2 -pass file:$key < $work/p.enc | zstd -d | mbstream -x -C $rdir && mariadb-backup --no-defaults --prepare --target-dir=$rdir && sync" "$work/p.enc")
row 'openssl enc -d \| zstd -d \| mbstream -x, mariadb-backup --prepare' "$rpipe" "${rpipe%% *}"
r=$(SETUP="rm -rf $rdir" measure "$rdir" "$coffer restore $work/c-zstd.coffer --to $rdir --prepare --key-file $key -q" "$work/c-zstd.coffer")
row '**coffer restore --prepare** (zstd image)' "$r" "${rpipe%% *}"
rm -rf "$rdir" "$work"/*.coffer "$work/p.enc"
