#!/bin/sh
# What a binary needs of the system, for the packages' tests (test-deb.sh, test-portable.sh):
# prints the newest glibc symbol version it asks for, and fails, naming them, if `ldd` lists
# any library that is not glibc's.
#
#   scripts/glibc-needs.sh BINARY     # e.g. 2.28
set -eu
binary=${1:?usage: scripts/glibc-needs.sh BINARY}
others=$(ldd "$binary" | awk '{print $1}' |
    grep -Ev '^(linux-vdso\.so\.1|/lib64/ld-linux-x86-64\.so\.2|lib(c|m|pthread|dl|rt)\.so\.[0-9]+)$' || true)
[ -z "$others" ] || { echo "glibc-needs.sh: $binary links more than glibc: $(echo $others)" >&2; exit 1; }
objdump -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1
