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

teardown() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$run_dir" ]]; then
        bash "$services_sh/down.sh" "$run_dir" || echo "[services] teardown of $run_dir reported errors" >&2
    fi
    exit "$rc"
}
trap teardown EXIT
# 128+N, like a shell killed by the signal; the EXIT trap still tears down.
trap 'exit 130' INT
trap 'exit 143' TERM

env_lines="$(bash "$services_sh/up.sh" --owner $$ "${services[@]}")"
while IFS='=' read -r key value; do
    [[ -n "$key" ]] || continue
    export "$key=$value"
    [[ "$key" == WIRESENS_SERVICES_DIR ]] && run_dir="$value"
done <<<"$env_lines"

set +e
"$@"
rc=$?
set -e
exit "$rc"
