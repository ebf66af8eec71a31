#!/usr/bin/env bash
# Install what is missing, then start the given services (default: all) in parallel
# in a new run directory, and print the environment the tests read, one VAR=value a
# line on stdout (progress goes to stderr):
#   WIRESENS_SERVICES_DIR, WIRESENS_PG_DSN, WIRESENS_ETCD_ENDPOINT, WIRESENS_KAFKA_BOOTSTRAP
# Usage: up.sh [--owner PID] [postgres] [etcd] [kafka]
# The run belongs to PID (default: the caller); once PID is gone, any later up.sh
# stops its services and deletes it. Stop a run with down.sh.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

owner="$PPID"
if [[ "${1:-}" == --owner ]]; then
    owner="$2"
    shift 2
fi
services=("$@")
((${#services[@]})) || services=(postgres etcd kafka)

reap_dead_runs
bash "$SERVICES_DIR_SCRIPTS/install.sh" "${services[@]}"

WIRESENS_SERVICES_DIR="$(new_run_dir "$owner")"
export WIRESENS_SERVICES_DIR
t0=$SECONDS

declare -A pids
for svc in "${services[@]}"; do
    bash "$SERVICES_DIR_SCRIPTS/$svc.sh" start &
    pids[$svc]=$!
done
failed=()
for svc in "${services[@]}"; do
    wait "${pids[$svc]}" || failed+=("$svc")
done
if ((${#failed[@]})); then
    log "could not start: ${failed[*]}; logs stay in $WIRESENS_SERVICES_DIR until the next run"
    # Stop the ones that did start; keep the directory so the logs can be read.
    for svc in "${services[@]}"; do
        bash "$SERVICES_DIR_SCRIPTS/$svc.sh" stop || true
    done
    printf '%s\n' "$$" >"$WIRESENS_SERVICES_DIR/owner"
    exit 1
fi
log "started ${services[*]} in $((SECONDS - t0))s (run dir $WIRESENS_SERVICES_DIR)"
printf 'WIRESENS_SERVICES_DIR=%s\n' "$WIRESENS_SERVICES_DIR"
for svc in "${services[@]}"; do
    cat "$WIRESENS_SERVICES_DIR/$svc/env"
done
