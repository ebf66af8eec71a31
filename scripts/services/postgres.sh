#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster of the current run ($WIRESENS_SERVICES_DIR).
# Usage: postgres.sh start|stop|status|env
#   start   initdb on first start (trust auth, 127.0.0.1 only, fsync off: test data
#           is disposable), then pg_ctl start; a later start reuses data dir and port
#   stop    fast shutdown, keeping the data dir
#   env     print WIRESENS_PG_DSN=...
# initdb refuses root, so as root the server runs as the `postgres` system user
# (created by Debian's package) or, failing that, `wiresens-test`.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dir="$(run_dir)/postgres"
data="$dir/data"
logfile="$dir/postgres.log"

pg_user() {
    if ((EUID != 0)); then
        id -un
    elif id postgres >/dev/null 2>&1; then
        printf postgres
    else
        id wiresens-test >/dev/null 2>&1 ||
            useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin wiresens-test
        printf wiresens-test
    fi
}

as_pg() {
    if ((EUID == 0)); then
        runuser -u "$(pg_user)" -- "$@"
    else
        "$@"
    fi
}

dsn() { printf 'postgresql://postgres@127.0.0.1:%s/postgres' "$(cat "$dir/port")"; }

start() {
    [[ -x "$PG_BIN/initdb" ]] || die "PostgreSQL 15 is not installed ($PG_BIN/initdb missing): run scripts/services/install.sh postgres"
    if [[ ! -f "$data/PG_VERSION" ]]; then
        mkdir -p "$dir"
        alloc_port >"$dir/port"
        chown "$(pg_user)" "$dir"
        chmod 0700 "$dir"
        # -N: no fsync of the fresh files; the cluster dies with the run anyway.
        if ! as_pg "$PG_BIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C -N \
            >"$dir/initdb.log" 2>&1; then
            tail -n 20 "$dir/initdb.log" >&2
            die "initdb failed: read $dir/initdb.log"
        fi
        cat >>"$data/postgresql.conf" <<EOF
# wiresens test cluster
listen_addresses = '127.0.0.1'
port = $(cat "$dir/port")
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 50
shared_buffers = 64MB
EOF
    fi
    if as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        log "postgres already running on $(dsn)"
        return 0
    fi
    if ! as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$logfile" -w -t 60 start >"$dir/pg_ctl.log" 2>&1; then
        tail -n 20 "$logfile" >&2 || true
        die "PostgreSQL did not start within 60s: read $logfile"
    fi
    printf 'WIRESENS_PG_DSN=%s\n' "$(dsn)" >"$dir/env"
    log "postgres ready: $(dsn) (log $logfile)"
}

stop() {
    [[ -f "$data/PG_VERSION" ]] || return 0
    as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1 || return 0
    if ! as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 30 stop >"$dir/pg_ctl.log" 2>&1; then
        log "fast shutdown failed; immediate shutdown (see $logfile)"
        as_pg "$PG_BIN/pg_ctl" -D "$data" -m immediate -w -t 30 stop >>"$dir/pg_ctl.log" 2>&1 || true
    fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) as_pg "$PG_BIN/pg_ctl" -D "$data" status ;;
env) cat "$dir/env" ;;
*) die "usage: $0 start|stop|status|env" ;;
esac
