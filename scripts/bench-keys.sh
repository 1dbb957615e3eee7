#!/bin/bash
# Key management timings, in one run:
# - key slot changes (add, remove, rotate, header backup) on a 10 MB and a 10 GB image: they
#   rewrite the header region only, so both sizes should take the same time;
# - what the same change costs the peers, whose backups are encrypted directly under the
#   master key (xtrabackup/xbcrypt, MEB, `openssl enc`): decrypting and re-encrypting the whole
#   file; and coffer's `rekey`, which re-encrypts under a new data key for a leaked one;
# - the passphrase KDF: the parameters chosen by default and what they cost.
#
#   scripts/bench-keys.sh            # BENCH_BIG_GB=10 (size of the big image), BENCH_RUNS=5
#
# Prints Markdown tables. Needs: openssl, GNU time. Uses BENCH_DIR (default /var/tmp/coffer-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${BENCH_DIR:-/var/tmp/coffer-bench}/keys
runs=${BENCH_RUNS:-5}
big=${BENCH_BIG_GB:-10}
mkdir -p "$work"
cargo build --release --quiet -p coffer-cli
coffer=$PWD/target/release/coffer
old=$work/old.key new=$work/new.key pass=$work/pass.txt
[ -f "$old" ] || $coffer key generate -o "$old" -q
[ -f "$new" ] || $coffer key generate -o "$new" -q
[ -f "$pass" ] || { (umask 077; echo 'a long and private passphrase' >"$pass"); }

# Images of random bytes, stored uncompressed, so each is as large as its name says.
image() {
    local f=$work/img-$1.coffer
    [ -f "$f" ] || head -c "$1" /dev/urandom | $coffer backup - -o "$f" --key-file "$old" --compress none -q
    echo "$f"
}

# ms CMD...: median wall milliseconds of $runs runs.
ms() {
    local i t0 rows=()
    for i in $(seq 1 "$runs"); do
        t0=$(date +%s%N)
        "$@" >/dev/null
        rows+=($((($(date +%s%N) - t0) / 1000000)))
    done
    printf '%s\n' "${rows[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p"
}

add() { $coffer key add "$1" --key-file "$old" --new-key-file "$new" -q && $coffer key remove "$1" --slot 1 --key-file "$old" -q; }
rotate() { $coffer key rotate "$1" --key-file "$old" --new-key-file "$new" -q && $coffer key rotate "$1" --key-file "$new" --new-key-file "$old" -q; }
hbackup() { $coffer header backup "$1" -o "$work/h" --force -q; }

echo "## Key slot changes (median of $runs; each op is a header rewrite with two fdatasyncs)"
echo
echo "| operation | 10 MB image | ${big} GB image |"
echo "|---|---|---|"
small=$(image 10M)
large=$(image "${big}G")
before=$(sha256sum <(tail -c +16385 "$large") | cut -c1-16)
for op in add rotate hbackup; do
    a=$(ms $op "$small")
    b=$(ms $op "$large")
    case $op in
    add) name='key add + key remove (2 rewrites)' ;;
    rotate) name='key rotate there and back (2 rewrites)' ;;
    hbackup) name='header backup' ;;
    esac
    echo "| $name | $a ms | $b ms |"
done
after=$(sha256sum <(tail -c +16385 "$large") | cut -c1-16)
[ "$before" = "$after" ] && echo && echo "Data region of the ${big} GB image unchanged after all of the above (SHA-256 $after...)."

echo
echo "## Changing the key of a ${big} GB backup: coffer vs re-encrypting (one run each, durable)"
echo
enc=$work/img.enc
[ -f "$enc" ] || openssl enc -aes-256-ctr -pbkdf2 -pass "file:$old" -in "$large" -out "$enc"
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
t_rot=$(runs=1 ms rotate "$large")
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
t0=$(date +%s%N)
openssl enc -d -aes-256-ctr -pbkdf2 -pass "file:$old" -in "$enc" | openssl enc -aes-256-ctr -pbkdf2 -pass "file:$new" -out "$work/re.enc" && sync
t_ssl=$((($(date +%s%N) - t0) / 1000000))
rm -f "$work/re.enc"
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
t0=$(date +%s%N)
$coffer rekey "$large" -o "$work/re.coffer" --key-file "$old" --new-key-file "$new" --force -q
t_rekey=$((($(date +%s%N) - t0) / 1000000))
rm -f "$work/re.coffer"
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
t0=$(date +%s%N)
cp "$large" "$work/copy.coffer" && sync
t_cp=$((($(date +%s%N) - t0) / 1000000))
rm -f "$work/copy.coffer"
bytes=$(stat -c %s "$large")
echo "| method | wall | MB/s | vs openssl |"
echo "|---|---|---|---|"
echo "| coffer key rotate (header only, 2 rewrites) | $t_rot ms | n/a | $(echo "scale=0; $t_ssl / ($t_rot + 1)" | bc)x faster |"
echo "| openssl enc -d \| openssl enc (what xbcrypt/MEB/openssl users must do) | $t_ssl ms | $((bytes / 1000 / t_ssl)) | 1.00x |"
echo "| coffer rekey (new data key, frames re-sealed, nothing decompressed) | $t_rekey ms | $((bytes / 1000 / t_rekey)) | $(echo "scale=2; $t_ssl / $t_rekey" | bc)x |"
echo "| cp + sync (copying the file, no crypto: the disk's floor for a full rewrite) | $t_cp ms | $((bytes / 1000 / t_cp)) | $(echo "scale=2; $t_ssl / $t_cp" | bc)x |"

echo
echo "## Passphrase slots (Argon2id, default parameters)"
echo
p_img=$work/p.coffer
t0=$(date +%s%N)
echo x | $coffer backup - -o "$p_img" --passphrase-file "$pass" --force -q
t_seal=$((($(date +%s%N) - t0) / 1000000))
t_open=$(runs=3 ms $coffer verify "$p_img" --passphrase-file "$pass" -q)
rss=$( { /usr/bin/time -f %M $coffer verify "$p_img" --passphrase-file "$pass" -q; } 2>&1 | tail -1)
echo "| what | figure |"
echo "|---|---|"
echo "| parameters chosen | $($coffer key list "$p_img" | grep -o 'argon2id.*') |"
echo "| backup of a tiny stream with a new passphrase slot (tuning + derivation) | $t_seal ms |"
echo "| verify with the passphrase (one derivation) | $t_open ms |"
echo "| peak memory of that verify | $((rss / 1024)) MiB |"
