#!/bin/sh
# The Grafana dashboard (contrib/grafana/coffer.json) against Grafana's own schema: the
# `Dashboard` type of @grafana/schema (Grafana 13.2's JSON model), checked by TypeScript, which
# refuses a misspelt or unknown field, a missing required one and a wrong type (its enums are
# loosened to their string values, as the JSON holds them). A copy with one field misspelt
# must fail, so the check is known to bite. What the queries select is tests/monitoring.rs's.
# Needs node and npm (the npm registry); skipped without them unless COFFER_REQUIRE_PACKAGE=1.
# Run by scripts/test.sh.
set -eu
cd "$(dirname "$0")/.."
fail() { echo "test-dashboard.sh: FAILED: $*" >&2; exit 1; }
if ! command -v npm >/dev/null 2>&1; then
    [ "${COFFER_REQUIRE_PACKAGE:-0}" = 1 ] && fail "npm is missing"
    echo "test-dashboard.sh: npm is missing: skipped" >&2
    exit 0
fi
dir=${CARGO_TARGET_DIR:-$PWD/target}/grafana-schema
mkdir -p "$dir"
# Exactly the packages of the lockfile (versions and hashes), installed once.
if ! cmp -s scripts/pins/grafana-schema/package-lock.json "$dir/package-lock.json" || [ ! -x "$dir/node_modules/.bin/tsc" ]; then
    rm -rf "$dir/node_modules"
    cp scripts/pins/grafana-schema/package.json scripts/pins/grafana-schema/package-lock.json "$dir/"
    (cd "$dir" && npm ci --silent --no-audit --no-fund >/dev/null) || fail "npm ci (@grafana/schema, typescript)"
fi
# check NAME JSON_FILE: type-checks the dashboard as a Dashboard.
check() {
    {
        echo "import type { Dashboard } from '@grafana/schema';"
        echo 'type Loose<T> = T extends string ? `${T}` : T extends object ? { [K in keyof T]: Loose<T[K]> } : T;'
        printf 'export const dashboard: Loose<Dashboard> = '
        cat "$2"
        echo ';'
    } >"$dir/$1.ts"
    "$dir/node_modules/.bin/tsc" --noEmit --strict --skipLibCheck --module esnext --moduleResolution bundler \
        --target es2022 "$dir/$1.ts" >"$dir/$1.log" 2>&1
}
check coffer contrib/grafana/coffer.json || { cat "$dir/coffer.log" >&2; fail "the dashboard is not Grafana's JSON model"; }
sed '0,/"gridPos"/s//"gridPoz"/' contrib/grafana/coffer.json >"$dir/misspelt.json"
check misspelt "$dir/misspelt.json" && fail "a misspelt field passed the check"
grep -q gridPoz "$dir/misspelt.log" || fail "the misspelt field failed for another reason: $(head -n 3 "$dir/misspelt.log")"
echo "test-dashboard.sh: ok ($(grep -c '"type":' contrib/grafana/coffer.json) typed objects; Grafana schema $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$dir/node_modules/@grafana/schema/package.json" | head -n 1))"
