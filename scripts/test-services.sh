#!/usr/bin/env bash
# Run a command (the test suite) against real services:
#   1. install what is missing (Debian packages, Kafka jars from Maven Central),
#   2. start PostgreSQL 15, etcd and Kafka 3.9 (KRaft) in parallel on free
#      127.0.0.1 ports in a fresh /tmp/wiresens-services.* directory,
#   3. export WIRESENS_SERVICES_DIR, WIRESENS_PG_DSN, WIRESENS_ETCD_ENDPOINT and
#      WIRESENS_KAFKA_BOOTSTRAP and run the command,
#   4. stop everything and delete the directory, whatever happened, and exit with
#      the command's exit code.
# Usage: bash scripts/test-services.sh COMMAND [ARGS...]
# WIRESENS_SERVICES (space-separated, default "postgres etcd kafka") narrows the set.
# See docs/testing.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
services_sh="$here/services"
((${#@})) || {
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
}

read -r -a services <<<"${WIRESENS_SERVICES:-postgres etcd kafka}"
run_dir=""

# shellcheck disable=SC2317 # run by trap
teardown() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -z "$run_dir" ]]; then
        # A signal during up.sh: its run is ours (owner file) but was never reported.
        run_dir="$(grep -lx "$$" /tmp/wiresens-services.*/owner 2>/dev/null | head -n 1)"
        run_dir="${run_dir%/owner}"
    fi
    if [[ -n "$run_dir" ]]; then
        bash "$services_sh/down.sh" "$run_dir" || echo "[services] teardown of $run_dir reported errors" >&2
    fi
    exit "$rc"
}
child=""
# Pass the signal on to the command, then exit 128+N like a shell killed by it; the
# EXIT trap tears the services down either way.
# shellcheck disable=SC2317 # run by trap
on_signal() {
    if [[ -n "$child" ]]; then
        kill "-$1" "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    exit "$2"
}
trap teardown EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM

env_lines="$(bash "$services_sh/up.sh" --owner $$ "${services[@]}")"
while IFS='=' read -r key value; do
    [[ -n "$key" ]] || continue
    export "$key=$value"
    [[ "$key" == WIRESENS_SERVICES_DIR ]] && run_dir="$value"
done <<<"$env_lines"

# In the background (stdin kept) so that a signal reaches the trap at once instead of
# after the command ends: bash runs traps only between foreground commands.
"$@" <&0 &
child=$!
set +e
wait "$child"
rc=$?
set -e
child=""
exit "$rc"
