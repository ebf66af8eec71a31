# shellcheck shell=bash
# Shared helpers for the test-service scripts. Sourced, never run.
#
# A "run" is one state directory, /tmp/wiresens-services.XXXXXX, exported as
# WIRESENS_SERVICES_DIR. Everything a run starts lives under it:
#
#   owner                 pid of the process that owns the run (reaped once it is gone)
#   ports                 every port handed out to this run, one a line
#   <service>/            data dir, config, pid file, log, env file of one service
#
# Fresh directories and fresh ports each run mean that a service left behind by a
# crashed run never collides with the next one; `reap_dead_runs` cleans such leftovers.

set -euo pipefail

SERVICES_DIR_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SERVICES_DIR_SCRIPTS
readonly KAFKA_VERSION="3.9.2"
# shellcheck disable=SC2034 # used by the scripts that source this file
readonly PG_BIN="/usr/lib/postgresql/15/bin"
readonly RUN_PREFIX="/tmp/wiresens-services."
# Below Linux's ephemeral range (32768-60999), so an outgoing connection cannot take
# a port between the moment we pick it and the moment the server binds it.
readonly PORT_MIN=20000
readonly PORT_SPAN=12000

log() { printf '[services %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

cache_root() { printf '%s/wiresens' "${XDG_CACHE_HOME:-$HOME/.cache}"; }
kafka_jars_dir() { printf '%s/kafka-%s' "$(cache_root)" "$KAFKA_VERSION"; }

# The run directory of the current shell; a clear error when there is none.
run_dir() {
    local dir="${WIRESENS_SERVICES_DIR:-}"
    [[ -n "$dir" && -d "$dir" ]] || die "WIRESENS_SERVICES_DIR is not set or does not exist ('$dir'); start services with scripts/services/up.sh or run 'make test'"
    printf '%s' "$dir"
}

new_run_dir() {
    local owner="$1" dir
    dir="$(mktemp -d "${RUN_PREFIX}XXXXXX")"
    # The PostgreSQL server runs as an unprivileged user and must traverse this dir.
    chmod 0711 "$dir"
    printf '%s\n' "$owner" >"$dir/owner"
    : >"$dir/ports"
    printf '%s' "$dir"
}

port_in_use() {
    # bash's /dev/tcp needs no extra package (ss and netstat are not on a bare Debian).
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Print a free loopback port and record it in the run's ports file. A global lock
# and the ports files of every live run keep parallel starts (this run's and other
# runs') from picking the same port before either server has bound it.
alloc_port() {
    local dir port tries=0
    dir="$(run_dir)"
    exec {lock_fd}>"/tmp/wiresens-services.ports.lock"
    flock "$lock_fd"
    while ((tries < 200)); do
        tries=$((tries + 1))
        port=$((PORT_MIN + (RANDOM * 32768 + RANDOM) % PORT_SPAN))
        grep -qsx "$port" "${RUN_PREFIX}"*/ports && continue
        port_in_use "$port" && continue
        printf '%s\n' "$port" >>"$dir/ports"
        flock -u "$lock_fd"
        exec {lock_fd}>&-
        printf '%s' "$port"
        return 0
    done
    flock -u "$lock_fd"
    die "no free port found in ${PORT_MIN}-$((PORT_MIN + PORT_SPAN)) after 200 tries"
}

# True when pid is alive and its command line mentions the given path, so a pid
# recycled by an unrelated process is never signalled.
pid_owns() {
    local pid="$1" path="$2"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$path"
}

# Wait until pid has exited, up to timeout seconds; 0 when it has.
wait_pid_gone() {
    local pid="$1" timeout="$2" deadline
    deadline=$((SECONDS + timeout))
    while kill -0 "$pid" 2>/dev/null; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# Stop the process in pidfile (TERM, then KILL after timeout seconds).
stop_pidfile() {
    local pidfile="$1" path="$2" timeout="$3" name="$4" pid
    [[ -f "$pidfile" ]] || return 0
    pid="$(cat "$pidfile")"
    if pid_owns "$pid" "$path"; then
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_pid_gone "$pid" "$timeout"; then
            log "$name (pid $pid) ignored SIGTERM for ${timeout}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait_pid_gone "$pid" 5 || true
        fi
    fi
    rm -f "$pidfile"
}

# Print the last lines of each log given (space-separated paths) that has any.
show_logs() {
    local f
    for f in $1; do
        [[ -s "$f" ]] || continue
        log "last lines of $f:"
        tail -n 15 "$f" >&2
    done
}

# Poll `check` (a command) until it succeeds, the pid dies, or timeout passes.
# logs: space-separated log files, shown and named in the error.
wait_ready() {
    local name="$1" pid="$2" timeout="$3" logs="$4"
    shift 4
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_logs "$logs"
            die "$name exited during start-up: read ${logs// / and }"
        fi
        if ((SECONDS >= deadline)); then
            show_logs "$logs"
            die "$name did not become ready within ${timeout}s: read ${logs// / and }"
        fi
        sleep 0.2
    done
}

# Stop every service of a run whose owner process is gone, then delete the run.
reap_dead_runs() {
    local dir owner svc
    for dir in "${RUN_PREFIX}"*/; do
        dir="${dir%/}"
        [[ -f "$dir/owner" ]] || continue
        owner="$(cat "$dir/owner")"
        kill -0 "$owner" 2>/dev/null && continue
        log "reaping services left by dead run $dir (owner pid $owner)"
        for svc in kafka etcd postgres; do
            [[ -d "$dir/$svc" ]] || continue
            WIRESENS_SERVICES_DIR="$dir" bash "$SERVICES_DIR_SCRIPTS/$svc.sh" stop || true
        done
        rm -rf "$dir"
    done
}
