#!/usr/bin/env bash
# A single-node Apache Kafka 3.9 in KRaft mode (broker and controller in one JVM) of
# the current run ($WIRESENS_SERVICES_DIR), run from the Maven Central jars that
# install.sh caches in ~/.cache/wiresens/kafka-<version>/.
# Usage: kafka.sh start|stop|status|env|classpath|tool
#   start      first start picks the PLAINTEXT and CONTROLLER ports and copies in the
#              formatted log dir install.sh keeps in the cache; a later start (after
#              stop) reuses both, so topics survive
#   stop       SIGTERM (controlled shutdown), SIGKILL after 30 s
#   env        print WIRESENS_KAFKA_BOOTSTRAP=host:port
#   classpath  print the class path of the cached jars (broker and kafka-tools)
#   tool CLASS [ARGS...]
#              run a Kafka tool's main class on that class path, e.g.
#              kafka.sh tool org.apache.kafka.tools.ProducerPerformance --topic t \
#                --num-records 100000 --record-size 64 --throughput -1 \
#                --producer-props bootstrap.servers=$WIRESENS_KAFKA_BOOTSTRAP
# WIRESENS_KAFKA_HEAP overrides the heap flags (default -Xms128m -Xmx512m).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

jars="$(kafka_jars_dir)"
classpath="$jars/*"

case "${1:-}" in
classpath)
    [[ -f "$jars/.complete" ]] || die "Kafka jars not in $jars: run scripts/services/install.sh kafka"
    printf '%s\n' "$classpath"
    exit 0
    ;;
tool)
    [[ -f "$jars/.complete" ]] || die "Kafka jars not in $jars: run scripts/services/install.sh kafka"
    shift
    (($#)) || die "usage: $0 tool MAIN_CLASS [ARGS...]"
    exec java -Xmx256m -Dlog4j.configuration="file:$SERVICES_DIR_SCRIPTS/kafka/tools-log4j.properties" \
        -cp "$classpath" "$@"
    ;;
esac

dir="$(run_dir)/kafka"
logfile="$dir/server.log"
pidfile="$dir/kafka.pid"

bootstrap() { printf '127.0.0.1:%s' "$(cat "$dir/broker_port")"; }

running() { [[ -f "$pidfile" ]] && pid_owns "$(cat "$pidfile")" "$dir"; }

configure() {
    local broker controller
    mkdir -p "$dir/data"
    broker="$(alloc_port)"
    controller="$(alloc_port)"
    printf '%s\n' "$broker" >"$dir/broker_port"
    printf '%s\n' "$controller" >"$dir/controller_port"
    # Partition counts of 1 for the internal topics: the defaults (50) make the
    # first consumer group join take seconds on a 2-core machine.
    cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$broker,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$broker
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
EOF
    cat >"$dir/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$logfile
log4j.appender.file.Append=true
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
EOF
    [[ -f "$jars/formatted/meta.properties" ]] ||
        die "no formatted KRaft template in $jars/formatted: run scripts/services/install.sh kafka"
    cp -R "$jars/formatted/." "$dir/data/"
}

started() {
    # Only lines written since this start count: the log is appended across restarts.
    tail -c +"$1" "$logfile" 2>/dev/null | grep -q "Kafka Server started" &&
        port_in_use "$(cat "$dir/broker_port")"
}

start() {
    [[ -f "$jars/.complete" ]] || die "Kafka jars not in $jars: run scripts/services/install.sh kafka"
    command -v java >/dev/null || die "java is not installed: run scripts/services/install.sh kafka"
    [[ -f "$dir/broker_port" ]] || configure
    if running; then
        log "kafka already running on $(bootstrap)"
        return 0
    fi
    local offset pid heap
    offset=$(($(stat -c %s "$logfile" 2>/dev/null || echo 0) + 1))
    heap="${WIRESENS_KAFKA_HEAP:--Xms128m -Xmx512m}"
    # The JVM flags of Kafka's own kafka-run-class.sh, with a small heap.
    # shellcheck disable=SC2086 # heap is a list of flags
    setsid java $heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$dir/log4j.properties" -Dkafka.logs.dir="$dir" \
        -cp "$classpath" kafka.Kafka "$dir/server.properties" \
        </dev/null >>"$dir/kafka.out" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$pidfile"
    wait_ready kafka "$pid" 90 "$logfile $dir/kafka.out" started "$offset"
    printf 'WIRESENS_KAFKA_BOOTSTRAP=%s\n' "$(bootstrap)" >"$dir/env"
    log "kafka ready: $(bootstrap) (log $logfile)"
}

case "${1:-}" in
start) start ;;
stop) stop_pidfile "$pidfile" "$dir" 30 kafka ;;
status) if running; then echo "kafka running on $(bootstrap)"; else
    echo "kafka stopped"
    exit 3
fi ;;
env) cat "$dir/env" ;;
*) die "usage: $0 start|stop|status|env|classpath|tool" ;;
esac
