#!/bin/bash
# Benchmarks coffer against the pipelines and tools DBAs use today, on the same data, in one run.
#
#   scripts/bench.sh mixed            # /usr/lib/x86_64-linux-gnu copy + 200 MB of random bytes
#   scripts/bench.sh sysbench         # a MariaDB datadir loaded by sysbench (scripts/sysbench-datadir.sh)
#   scripts/bench.sh /path/to/dir     # any directory
#   BENCH_MEMORY=1: add peak memory on 1 GB and 10 GB streams; BENCH_VALIDATE=1 (or =only): add
#   InnoDB page validation against innochecksum, warm and cold, and inside an image.
#
# Every backup and restore is made durable (coffer flushes itself; the others are followed by
# `sync` inside the timing), and outputs go to the same disk. Before every run the page cache is
# dropped and the run's inputs are read back into it (BENCH_COLD=1: left cold), so every command
# starts from the same state: on a VM, whether fresh page-cache pages are cheap depends on what
# ran before, and without this the same `cp -a` varies 4x from run to run. Prints Markdown
# tables; figures are medians of BENCH_RUNS runs (default 3). Needs root (drop_caches).
# Needs: zstd, openssl, tar, GNU time; optional: age, restic, borg.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${BENCH_DIR:-/var/tmp/coffer-bench}
runs=${BENCH_RUNS:-3}
cores=$(nproc)
mkdir -p "$work"
cargo build --release --quiet -p coffer-cli
coffer=$PWD/target/release/coffer

dataset() {
    case $1 in
    mixed)
        local d=$work/mixed
        if [ ! -d "$d" ]; then
            mkdir -p "$d" && cp -a /usr/lib/x86_64-linux-gnu "$d/lib" && head -c 200M /dev/urandom >"$d/random.bin"
        fi
        echo "$d" ;;
    sysbench)
        local d=$work/sysbench
        [ -d "$d" ] || scripts/sysbench-datadir.sh "$d" 8 1000000 >&2
        echo "$d" ;;
    *) echo "$1" ;;
    esac
}

warm() { find "$@" -type f -exec cat {} + >/dev/null 2>&1 || true; }
cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }
prepare() { cold; if [ "${BENCH_COLD:-0}" != 1 ]; then warm "$@"; fi; }

# measure NAME OUTPUT CMD: runs CMD $runs times, keeps the median wall time; prints
# "wall cpu rss_mb out_bytes".
measure() {
    local out=$2 cmd=$3 i
    local rows=()
    for i in $(seq 1 "$runs"); do
        rm -rf "$out" "$work/restic" "$work/borg"
        [ -n "${SETUP:-}" ] && eval "$SETUP" >/dev/null 2>&1
        prepare $PREP
        /usr/bin/time -f "%e %U %S %M" -o "$work/time" bash -c "$cmd" >/dev/null 2>"$work/stderr" || { echo "FAILED: $1: $(tail -3 "$work/stderr")" >&2; return 1; }
        read -r wall user sys rss <"$work/time"
        local size=0
        [ -e "$out" ] && size=$(du -sb --apparent-size "$out" | cut -f1)
        rows+=("$wall $(echo "$user + $sys" | bc) $((rss / 1024)) $size")
    done
    printf '%s\n' "${rows[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p"
}

row() { # name input_bytes result baseline_wall
    read -r wall cpu rss size <<<"$3"
    local mbs ratio
    mbs=$(echo "scale=0; $2 / 1000000 / $wall" | bc)
    ratio=$(echo "scale=2; $4 / $wall" | bc)
    printf '| %s | %s | %s | %s | %s | %s | %sx |\n' "$1" "$wall" "$mbs" "$cpu" "$rss" "$((size / 1000000))" "$ratio"
}

src=$(dataset "${1:-mixed}")
src=$(readlink -f "$src")
bytes=$(du -sb --apparent-size "$src" | cut -f1)
key=$work/bench.key
[ -f "$key" ] || $coffer key generate -o "$key" -q
openssl rand -hex 32 >"$work/pass"
agekey=$work/age.key
[ -f "$agekey" ] || age-keygen -o "$agekey" 2>/dev/null || true
recipient=$(grep -o 'age1[0-9a-z]*' "$agekey" 2>/dev/null || true)
export RESTIC_PASSWORD_FILE=$work/pass BORG_PASSPHRASE=$(cat "$work/pass") BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes

echo "## $(basename "$src"): $((bytes / 1000000)) MB in $(find "$src" -type f | wc -l) files, $cores cores, $(date -u +%F)"
echo
if [ "${BENCH_VALIDATE:-}" != only ]; then
if [ "${BENCH_COLD:-0}" = 1 ]; then state="cold (page cache dropped)"; else state="in the page cache"; fi
echo "Backup, input $state, output durable on the same disk. Ratio: speed relative to tar | zstd | openssl."
echo
echo "| backup | wall s | MB/s of input | CPU s | peak RSS MB | output MB | vs pipeline |"
echo "|---|---|---|---|---|---|---|"
PREP=$src
base=$(measure pipeline "$work/p.enc" "tar -C '$src' -cf - . | zstd -T0 -1 -q | openssl enc -aes-256-ctr -pbkdf2 -pass file:$work/pass > $work/p.enc && sync")
base_wall=$(cut -d' ' -f1 <<<"$base")
row 'tar \| zstd -T0 -1 \| openssl enc -aes-256-ctr' "$bytes" "$base" "$base_wall"
r=$(measure coffer "$work/c.coffer" "$coffer backup '$src' -o $work/c.coffer --key-file $key -q"); row 'coffer backup (zstd 1, AES-256-GCM)' "$bytes" "$r" "$base_wall"
r=$(measure coffer-lz4 "$work/l.coffer" "$coffer backup '$src' -o $work/l.coffer --key-file $key -q --compress lz4"); row 'coffer backup --compress lz4' "$bytes" "$r" "$base_wall"
if [ -n "$recipient" ]; then
    r=$(measure age "$work/a.age" "tar -C '$src' -cf - . | zstd -T0 -1 -q | age -r $recipient > $work/a.age && sync"); row 'tar \| zstd -T0 -1 \| age' "$bytes" "$r" "$base_wall"
fi
if command -v restic >/dev/null; then
    SETUP="restic init -r $work/restic" r=$(measure restic "$work/restic" "restic -r $work/restic backup -q '$src' && sync"); row 'restic backup' "$bytes" "$r" "$base_wall"
fi
if command -v borg >/dev/null; then
    SETUP="borg init -e repokey-blake2 $work/borg" r=$(measure borg "$work/borg" "borg create $work/borg::a '$src' && sync"); row 'borg create (lz4)' "$bytes" "$r" "$base_wall"
fi
SETUP=""

echo
echo "Ceilings (input in the page cache, no output): what the compressor and the cipher allow on $cores cores."
echo "The zstd ceiling is zstd's own CPU time at level 1 on the same bytes (one tar file), divided by the cores."
echo
echo "| what | wall s | MB/s of input | CPU s | peak RSS MB | output MB | share of ceiling |"
echo "|---|---|---|---|---|---|---|"
tar -C "$src" -cf "$work/src.tar" .
PREP=$work/src.tar
z=$(measure zstd1 /nonexistent "zstd -T1 -1 -q -c $work/src.tar > /dev/null")
zcpu=$(cut -d' ' -f2 <<<"$z")
ceiling=$(echo "scale=2; $zcpu / $cores" | bc)
row "zstd -1, one thread, on the tar of it (CPU s / $cores = $ceiling s: the ceiling)" "$bytes" "$z" "$ceiling"
rm -f "$work/src.tar"
PREP=$src
r=$(measure coffer-null /nonexistent "$coffer backup '$src' -o - --key-file $key -q > /dev/null"); row 'coffer backup -o - > /dev/null (zstd 1)' "$bytes" "$r" "$ceiling"
r=$(measure coffer-none /nonexistent "$coffer backup '$src' -o - --key-file $key -q --compress none > /dev/null")
gcm=$(openssl speed -multi "$cores" -evp aes-256-gcm -bytes 16384 -seconds 2 2>/dev/null | awk 'tolower($1) == "aes-256-gcm" {print $NF}' | tr -d k)
gcm_wall=$(echo "scale=3; $bytes / ($gcm * 1000)" | bc)
row "coffer backup --compress none > /dev/null (openssl speed -multi $cores -evp aes-256-gcm: $(echo "$gcm / 1000" | bc) MB/s)" "$bytes" "$r" "$gcm_wall"

echo
echo "Restore into an empty directory on the same disk, durable (image in page cache). Ratio: speed relative to cp -a + sync."
echo
echo "| restore | wall s | MB/s of input | CPU s | peak RSS MB | output MB | vs cp -a + sync |"
echo "|---|---|---|---|---|---|---|"
PREP="$src"
cp_r=$(measure cp "$work/out" "cp -a '$src' $work/out && sync")
cp_wall=$(cut -d' ' -f1 <<<"$cp_r")
row 'cp -a + sync (the disk floor)' "$bytes" "$cp_r" "$cp_wall"
PREP="$work/c.coffer"
r=$(measure coffer-restore "$work/out" "$coffer restore $work/c.coffer --to $work/out --key-file $key -q"); row 'coffer restore' "$bytes" "$r" "$cp_wall"
PREP="$work/p.enc"
r=$(measure pipeline-restore "$work/out" "mkdir -p $work/out && openssl enc -d -aes-256-ctr -pbkdf2 -pass file:$work/pass < $work/p.enc | zstd -d -q | tar -C $work/out -xf - && sync"); row 'openssl -d \| zstd -d \| tar -x + sync' "$bytes" "$r" "$cp_wall"
if [ -n "$recipient" ]; then
    PREP="$work/a.age"
    r=$(measure age-restore "$work/out" "mkdir -p $work/out && age -d -i $agekey < $work/a.age | zstd -d -q | tar -C $work/out -xf - && sync"); row 'age -d \| zstd -d \| tar -x + sync' "$bytes" "$r" "$cp_wall"
fi
PREP="$work/c.coffer"
r=$(measure coffer-verify /nonexistent "$coffer verify $work/c.coffer --key-file $key -q"); row 'coffer verify (authenticate + decompress, no output)' "$bytes" "$r" "$cp_wall"
rm -rf "$work/out" "$work/restic" "$work/borg"
fi

if [ -n "${BENCH_MEMORY:-}" ]; then
    echo
    echo "Peak memory: a stream of the data set repeated to 1 GB and to 10 GB, through coffer backup - to /dev/null."
    echo
    echo "| input | wall s | MB/s of input | CPU s | peak RSS MB | output MB | |"
    echo "|---|---|---|---|---|---|---|"
    PREP=$src
    for gb in 1 10; do
        n=$((gb * 1000000000))
        reps=$((n / bytes + 1))
        r=$(BENCH_RUNS=1 measure "mem$gb" /nonexistent "for i in \$(seq $reps); do find '$src' -type f -exec cat {} + 2>/dev/null; done | head -c $n | $coffer backup - -o - --key-file $key -q > /dev/null")
        row "$gb GB stream" "$n" "$r" "$(cut -d' ' -f1 <<<"$r")"
    done
fi

if [ -n "${BENCH_VALIDATE:-}" ]; then
    echo
    echo "InnoDB page validation: coffer validate (all files, every page, in parallel) against"
    echo "innochecksum run once per tablespace, as DBAs do; and inside an image against coffer verify."
    echo
    echo "| what | wall s | MB/s | CPU s | peak RSS MB | | vs innochecksum / verify |"
    echo "|---|---|---|---|---|---|---|"
    tablespaces=$(find "$src" -name '*.ibd' -o -name 'ibdata*' -o -name 'undo0*' | sort | tr '\n' ' ')
    ib_bytes=$(du -cb --apparent-size $tablespaces | tail -1 | cut -f1)
    for state in warm cold; do
        if [ $state = cold ]; then export BENCH_COLD=1; else unset BENCH_COLD; fi
        PREP=$src
        # innochecksum stops at the first bad page and refuses the doublewrite pages of a
        # datadir's ibdata1 that coffer skips as the server does; its exit status is ignored.
        r=$(measure innochecksum /nonexistent "for f in $tablespaces; do innochecksum \$f 2>/dev/null; done; true")
        base=$(cut -d' ' -f1 <<<"$r")
        row "innochecksum, one run per file ($state)" "$ib_bytes" "$r" "$base"
        r=$(measure validate /nonexistent "$coffer validate '$src' -q"); row "coffer validate DATADIR ($state)" "$ib_bytes" "$r" "$base"
    done
    unset BENCH_COLD
    [ -f "$work/c.coffer" ] || $coffer backup "$src" -o "$work/c.coffer" --key-file "$key" -q
    PREP=$work/c.coffer
    r=$(measure verify /nonexistent "$coffer verify $work/c.coffer --key-file $key -q"); base=$(cut -d' ' -f1 <<<"$r")
    row "coffer verify IMAGE (authenticate + decompress)" "$bytes" "$r" "$base"
    r=$(measure validate-image /nonexistent "$coffer validate $work/c.coffer --key-file $key -q"); row "coffer validate IMAGE (+ every page checked)" "$bytes" "$r" "$base"
fi
