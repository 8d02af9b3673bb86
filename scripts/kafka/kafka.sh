#!/usr/bin/env bash
# A real, single-node Apache Kafka broker (KRaft, no ZooKeeper, no Docker) for
# the end-to-end and fault tests, from the broker's jars on Maven Central.
#
#   scripts/kafka/kafka.sh fetch        resolve the pinned release's jars into
#                                       the cache (once; later runs download
#                                       nothing) and print the jars directory
#   scripts/kafka/kafka.sh start DIR    start a broker whose config, data and
#                                       logs live in DIR; print
#                                       KAFKA_BROKERS=127.0.0.1:<port> once it
#                                       answers metadata requests
#   scripts/kafka/kafka.sh stop DIR     SIGTERM, wait, then SIGKILL
#
# `start` on a DIR that already holds a broker (one that was stopped) starts
# it again on the same ports with the same data, which is what a "broker
# restarted" test needs. A fresh DIR gets two free ports (broker and
# controller) and freshly formatted storage with a random cluster id.
#
# Environment:
#   KAFKA_HOME          where the jars go (default
#                       ${XDG_CACHE_HOME:-$HOME/.cache}/auditlog/kafka-<version>)
#   KAFKA_HEAP_OPTS     JVM heap (default -Xms256m -Xmx512m: the machine has
#                       2 cores and the tests run beside the broker)
#   KAFKA_START_TIMEOUT how long start waits for readiness (default 120s)
#   KAFKA_STOP_TIMEOUT  seconds stop waits after SIGTERM (default 30)
#   KAFKA_WATCH_PID     when set, the broker is killed as soon as this process
#                       exits, so a test binary that dies leaves no broker
#                       behind (internal/testharness sets it)
#
# Needs: Java 17+ and Maven (fetch), Go (the readiness check,
# scripts/kafka/wait).
set -euo pipefail

KAFKA_VERSION=4.1.1 # also in pom.xml
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KAFKA_HOME=${KAFKA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/auditlog/kafka-$KAFKA_VERSION}
JARS=$KAFKA_HOME/jars

die() { echo "kafka.sh: $*" >&2; exit 1; }

fetch() {
	if [[ -f $JARS/.complete ]]; then
		echo "$JARS"
		return
	fi
	command -v mvn >/dev/null || die "mvn not found: apt-get install -y maven"
	rm -rf "$JARS"
	mkdir -p "$JARS"
	# copy-dependencies resolves kafka_2.13 and every runtime dependency
	# through ~/.m2, so a second fetch (or a new KAFKA_HOME) reuses it.
	mvn -q -B -Dstyle.color=never -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$JARS" >&2 ||
		die "mvn could not resolve the Kafka $KAFKA_VERSION jars (see above)"
	ls "$JARS"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null
	touch "$JARS/.complete"
	echo "$JARS"
}

need_jars() {
	[[ -f $JARS/.complete ]] ||
		die "no Kafka $KAFKA_VERSION jars in $JARS: run scripts/kafka/kafka.sh fetch"
	command -v java >/dev/null || die "java not found: apt-get install -y openjdk-17-jre-headless"
}

# wait_tool builds the Go helper once per DIR; go's build cache makes a
# rebuild after a restart cheap anyway.
wait_tool() {
	local dir=$1
	if [[ ! -x $dir/kafka-wait ]]; then
		(cd "$ROOT" && go build -o "$dir/kafka-wait" ./scripts/kafka/wait)
	fi
	echo "$dir/kafka-wait"
}

# alive: the process exists and is not a zombie. The broker's parent is gone
# (it was started by an earlier run of this script), so after it exits it
# stays a zombie until PID 1 reaps it, which in a container may be never.
alive() {
	local state
	state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $state && $state != Z && $state != X ]]
}

running_pid() {
	local dir=$1 pid
	[[ -f $dir/kafka.pid ]] || return 1
	pid=$(<"$dir/kafka.pid")
	alive "$pid" || return 1
	echo "$pid"
}

write_config() {
	local dir=$1 broker_port=$2 controller_port=$3
	cat >"$dir/server.properties" <<EOF
# Written by scripts/kafka/kafka.sh: one node that is both broker and
# controller, reachable only on 127.0.0.1.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$broker_port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$broker_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
# The service and the tests create their topics; a typo must not create one.
auto.create.topics.enable=false
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
# 50 partitions (the default) cost seconds of start time on 2 cores.
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Tests start consumers and expect them to get partitions at once.
group.initial.rebalance.delay.ms=0
log.segment.bytes=16777216
num.network.threads=2
num.io.threads=4
EOF
	cat >"$dir/log4j2.properties" <<EOF
# Written by scripts/kafka/kafka.sh: everything at INFO into DIR/server.log.
appender.file.type=File
appender.file.name=file
appender.file.fileName=$dir/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
logger.kafka.name=kafka
logger.kafka.level=INFO
logger.state.name=state.change.logger
logger.state.level=WARN
EOF
}

start() {
	local dir=${1:?usage: kafka.sh start DIR}
	need_jars
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	local pid
	if pid=$(running_pid "$dir"); then
		die "a broker (pid $pid) already runs in $dir: kafka.sh stop $dir"
	fi
	local wait_bin
	wait_bin=$(wait_tool "$dir")

	local started_ns=$(date +%s%N)
	if [[ ! -f $dir/server.properties ]]; then
		local ports
		read -r -a ports <<<"$("$wait_bin" -free-ports 2)"
		write_config "$dir" "${ports[0]}" "${ports[1]}"
	fi
	if [[ ! -f $dir/data/meta.properties ]]; then
		# A cluster id is 16 random bytes in unpadded base64url; it may start
		# with "-", hence --cluster-id=.
		local cluster_id
		cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
		java -Xmx256m -cp "$JARS/*" -Dlog4j2.configurationFile="$dir/log4j2.properties" \
			kafka.tools.StorageTool format --config "$dir/server.properties" \
			--cluster-id="$cluster_id" --ignore-formatted >"$dir/format.log" 2>&1 ||
			die "formatting storage failed: $(cat "$dir/format.log")"
	fi
	local broker_port
	broker_port=$(sed -n 's|^advertised.listeners=PLAINTEXT://127.0.0.1:\([0-9]*\)$|\1|p' "$dir/server.properties")

	# setsid + redirected stdio: the broker must not hold the caller's
	# pipes open (a test's exec.Command would wait for it) nor get its
	# Ctrl-C.
	setsid java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} \
		-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
		-Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$dir/log4j2.properties" \
		-Dkafka.logs.dir="$dir" \
		-cp "$JARS/*" kafka.Kafka "$dir/server.properties" \
		</dev/null >"$dir/kafka.out" 2>&1 &
	pid=$!
	echo "$pid" >"$dir/kafka.pid"

	if [[ -n ${KAFKA_WATCH_PID:-} ]]; then
		# Dies with the broker, or kills it when the watched process is gone.
		setsid bash -c 'while kill -0 "$1" 2>/dev/null; do
			kill -0 "$2" 2>/dev/null || exit 0; sleep 1; done
			kill -9 "$2" 2>/dev/null' watch "$KAFKA_WATCH_PID" "$pid" \
			</dev/null >/dev/null 2>&1 &
	fi

	if ! "$wait_bin" -brokers "127.0.0.1:$broker_port" -pid "$pid" -timeout "${KAFKA_START_TIMEOUT:-120s}"; then
		echo "kafka.sh: last lines of $dir/kafka.out and server.log:" >&2
		tail -n 20 "$dir/kafka.out" "$dir/server.log" >&2 2>/dev/null || true
		kill -9 "$pid" 2>/dev/null || true
		exit 1
	fi
	local ms=$((($(date +%s%N) - started_ns) / 1000000))
	echo "kafka.sh: broker pid $pid ready on 127.0.0.1:$broker_port in ${ms} ms (dir $dir)" >&2
	echo "KAFKA_BROKERS=127.0.0.1:$broker_port"
}

stop() {
	local dir=${1:?usage: kafka.sh stop DIR}
	local pid
	if ! pid=$(running_pid "$dir"); then
		rm -f "$dir/kafka.pid"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + ${KAFKA_STOP_TIMEOUT:-30}))
	while alive "$pid"; do
		if ((SECONDS >= deadline)); then
			echo "kafka.sh: broker pid $pid still runs ${KAFKA_STOP_TIMEOUT:-30}s after SIGTERM: SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.1
	done
	while alive "$pid"; do sleep 0.1; done
	rm -f "$dir/kafka.pid"
}

case ${1:-} in
fetch) fetch ;;
start) start "${2:-}" ;;
stop) stop "${2:-}" ;;
*)
	echo "usage: $0 fetch | start DIR | stop DIR" >&2
	exit 2
	;;
esac
