#!/usr/bin/env bash
# Fails when a lock file is not what `uv pip compile` makes of its .in file (`make lock-check`,
# part of `make lint`): someone edited requirements.in without `make lock`, or edited the lock
# by hand.
#
#   tools/check-lock.sh UV IN_FILE LOCK_FILE [uv pip compile options …]
#
# The lock is compiled again into a temporary copy of itself, so uv keeps the pins it already
# has (as `make lock` would) and the header names the same command; then the two are compared.
# Offline first (uv's cache: ~0.1 s); when the cache lacks something (torch), from the package
# index this machine is configured with (~1–2 s).
set -euo pipefail

uv=$1 in_file=$2 lock=$3
shift 3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$lock" "$tmp/lock.txt"
compile=("$uv" pip compile --quiet "$in_file" -o "$tmp/lock.txt" "$@"
    --custom-compile-command "uv pip compile $in_file -o $lock $*")
if ! "${compile[@]}" --offline 2>"$tmp/offline.err"; then
    if ! "${compile[@]}" 2>"$tmp/online.err"; then
        echo "lock-check: cannot compile $in_file (offline, then from the package index):" >&2
        cat "$tmp/offline.err" "$tmp/online.err" >&2
        exit 2
    fi
fi
if ! diff -u --label "$lock" --label "uv pip compile $in_file" "$lock" "$tmp/lock.txt" >"$tmp/diff"; then
    head -40 "$tmp/diff" >&2
    echo "lock-check: $lock is out of date with $in_file: run \`make lock\` (or \`make lock-train\`)" >&2
    exit 1
fi
echo "lock-check: $lock matches $in_file"
