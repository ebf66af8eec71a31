#!/usr/bin/env bash
# Stop every service of a run and delete its directory.
# Usage: down.sh [RUN_DIR]      (default: $WIRESENS_SERVICES_DIR)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dir="${1:-${WIRESENS_SERVICES_DIR:-}}"
[[ -n "$dir" ]] || die "usage: $0 RUN_DIR (or set WIRESENS_SERVICES_DIR)"
[[ "$dir" == "$RUN_PREFIX"* ]] || die "refusing to remove '$dir': not a run directory (${RUN_PREFIX}*)"
[[ -d "$dir" ]] || exit 0
export WIRESENS_SERVICES_DIR="$dir"
declare -A pids
for svc in kafka etcd postgres; do
    [[ -d "$dir/$svc" ]] || continue
    bash "$SERVICES_DIR_SCRIPTS/$svc.sh" stop &
    pids[$svc]=$!
done
rc=0
for svc in "${!pids[@]}"; do
    wait "${pids[$svc]}" || rc=1
done
rm -rf "$dir"
exit "$rc"
