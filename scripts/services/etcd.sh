#!/usr/bin/env bash
# A single-member etcd of the current run ($WIRESENS_SERVICES_DIR), from Debian's
# etcd-server, on two free loopback ports (client and peer).
# Usage: etcd.sh start|stop|status|env
#   start   first start picks the ports; a later start reuses them and the data dir
#   stop    SIGTERM, keeping the data dir
#   env     print WIRESENS_ETCD_ENDPOINT=host:port
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dir="$(run_dir)/etcd"
logfile="$dir/etcd.log"
pidfile="$dir/etcd.pid"

endpoint() { printf '127.0.0.1:%s' "$(cat "$dir/client_port")"; }

running() { [[ -f "$pidfile" ]] && pid_owns "$(cat "$pidfile")" "$dir"; }

healthy() {
    ETCDCTL_API=3 etcdctl --endpoints="$(endpoint)" --dial-timeout=1s --command-timeout=2s \
        endpoint health
}

start() {
    command -v etcd >/dev/null || die "etcd is not installed: run scripts/services/install.sh etcd"
    if [[ ! -f "$dir/client_port" ]]; then
        mkdir -p "$dir/data"
        chmod 0700 "$dir/data"
        alloc_port >"$dir/client_port"
        alloc_port >"$dir/peer_port"
    fi
    if running; then
        log "etcd already running on $(endpoint)"
        return 0
    fi
    local client peer pid
    client="http://127.0.0.1:$(cat "$dir/client_port")"
    peer="http://127.0.0.1:$(cat "$dir/peer_port")"
    # setsid: the server outlives this script and ignores the terminal's Ctrl-C, so
    # teardown (not a stray signal) decides when it stops.
    setsid etcd --name wiresens-test --data-dir "$dir/data" \
        --listen-client-urls "$client" --advertise-client-urls "$client" \
        --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
        --initial-cluster "wiresens-test=$peer" --initial-cluster-state new \
        --logger zap --log-outputs stderr \
        </dev/null >>"$logfile" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$pidfile"
    wait_ready etcd "$pid" 30 "$logfile" healthy
    printf 'WIRESENS_ETCD_ENDPOINT=%s\n' "$(endpoint)" >"$dir/env"
    log "etcd ready: $(endpoint) (log $logfile)"
}

case "${1:-}" in
start) start ;;
stop) stop_pidfile "$pidfile" "$dir" 20 etcd ;;
status) if running; then echo "etcd running on $(endpoint)"; else
    echo "etcd stopped"
    exit 3
fi ;;
env) cat "$dir/env" ;;
*) die "usage: $0 start|stop|status|env" ;;
esac
