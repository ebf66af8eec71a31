#!/usr/bin/env bash
# Install what the test services need, only what is missing:
#   postgres  Debian's postgresql-15 (+ client)
#   etcd      Debian's etcd-server and etcd-client
#   kafka     a Java runtime, Maven and kcat from Debian; the Kafka 3.9 broker and
#             kafka-tools jars from Maven Central into ~/.cache/wiresens/kafka-<ver>/
# Usage: install.sh [postgres] [etcd] [kafka]     (no argument: all three)
# Quick (a few dpkg look-ups) when everything is already there.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

services=("$@")
((${#services[@]})) || services=(postgres etcd kafka)

missing=()
# want PACKAGE [COMMAND]: queue PACKAGE unless COMMAND is on PATH or dpkg has it.
want() {
    local pkg="$1" cmd="${2:-}"
    if [[ -n "$cmd" ]] && command -v "$cmd" >/dev/null 2>&1; then
        return 0
    fi
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" == installed ]] && return 0
    missing+=("$pkg")
}

for svc in "${services[@]}"; do
    case "$svc" in
    postgres)
        [[ -x "$PG_BIN/initdb" ]] || want postgresql-15
        want postgresql-client-15 psql
        ;;
    etcd)
        want etcd-server etcd
        want etcd-client etcdctl
        ;;
    kafka)
        want openjdk-17-jre-headless java
        want maven mvn
        want kcat kcat
        ;;
    *) die "unknown service '$svc' (expected postgres, etcd or kafka)" ;;
    esac
done

if ((${#missing[@]})); then
    if ((EUID != 0)); then
        die "missing Debian packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}"
    fi
    log "installing Debian packages: ${missing[*]}"
    exec {apt_fd}>"/tmp/wiresens-services.apt.lock"
    flock "$apt_fd"
    apt_log="$(mktemp /tmp/wiresens-apt.XXXXXX.log)"
    apt_opts=(-o DPkg::Lock::Timeout=600 -y -q --no-install-recommends)
    # A fresh machine has no package lists; an old list may name versions long gone.
    if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q update >"$apt_log" 2>&1 ||
        ! DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install "${missing[@]}" >>"$apt_log" 2>&1; then
        tail -n 20 "$apt_log" >&2
        die "apt-get could not install ${missing[*]}: read $apt_log"
    fi
    flock -u "$apt_fd"
    rm -f "$apt_log"
fi

install_kafka_jars() {
    local dest tmp pom stamp mvn_log
    dest="$(kafka_jars_dir)"
    pom="$SERVICES_DIR_SCRIPTS/kafka/pom.xml"
    stamp="$(sha256sum "$pom" | cut -c1-16)"
    [[ -f "$dest/.complete" && "$(cat "$dest/.complete")" == "$stamp" ]] && return 0
    mkdir -p "$(cache_root)"
    exec {jar_fd}>"$(cache_root)/kafka.lock"
    flock "$jar_fd"
    # Another run may have finished the download while this one waited for the lock.
    if [[ -f "$dest/.complete" && "$(cat "$dest/.complete")" == "$stamp" ]]; then
        flock -u "$jar_fd"
        return 0
    fi
    log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $dest"
    tmp="$dest.tmp.$$"
    mvn_log="$(cache_root)/kafka-install.log"
    rm -rf "$tmp"
    if ! mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
        tail -n 20 "$mvn_log" >&2
        rm -rf "$tmp"
        die "Maven could not fetch the Kafka jars: read $mvn_log"
    fi
    [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" && -f "$tmp/kafka-tools-$KAFKA_VERSION.jar" ]] ||
        die "Maven ran but $tmp lacks kafka_2.13/kafka-tools $KAFKA_VERSION: check $pom"
    printf '%s\n' "$stamp" >"$tmp/.complete"
    rm -rf "$dest"
    mv "$tmp" "$dest"
    flock -u "$jar_fd"
}

# A formatted, never-started KRaft log dir (meta.properties, bootstrap.checkpoint). It
# holds no port and no path, so each run copies it instead of paying a JVM start for
# `kafka-storage format`; every run then shares one cluster id, which is harmless.
make_kafka_template() {
    local dest tmp
    dest="$(kafka_jars_dir)"
    [[ -f "$dest/formatted/meta.properties" ]] && return 0
    exec {tpl_fd}>"$(cache_root)/kafka.lock"
    flock "$tpl_fd"
    if [[ ! -f "$dest/formatted/meta.properties" ]]; then
        tmp="$(mktemp -d "$dest/formatted.tmp.XXXXXX")"
        cat >"$tmp/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9
listeners=PLAINTEXT://127.0.0.1:8,CONTROLLER://127.0.0.1:9
controller.listener.names=CONTROLLER
log.dirs=$tmp/data
EOF
        # A random KRaft cluster id: 16 bytes, URL-safe base64 without padding.
        if ! java -Xmx256m -XX:TieredStopAtLevel=1 \
            -Dlog4j.configuration="file:$SERVICES_DIR_SCRIPTS/kafka/tools-log4j.properties" \
            -cp "$dest/*" kafka.tools.StorageTool format \
            -t "$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')" \
            -c "$tmp/server.properties" >"$tmp/format.log" 2>&1; then
            cat "$tmp/format.log" >&2
            die "kafka-storage format failed (log above, also in $tmp/format.log)"
        fi
        rm -rf "$dest/formatted"
        mv "$tmp/data" "$dest/formatted"
        rm -rf "$tmp"
    fi
    flock -u "$tpl_fd"
}

for svc in "${services[@]}"; do
    if [[ "$svc" == kafka ]]; then
        install_kafka_jars
        make_kafka_template
    fi
done
exit 0
