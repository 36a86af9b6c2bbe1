#!/usr/bin/env bash
# scripts/stack.sh - local creditstream stack without Docker.
#
# Runs, as plain background processes owned by the current user (root on CI):
#   kafka       Apache Kafka 4.3.1 in KRaft mode, jars from Maven Central: one controller process
#               (node id 1) and N broker processes, broker-1..broker-N (node ids 2..N+1; N=1 by
#               default, `up --brokers N` for up to 5). A broker killed uncleanly then finds its
#               controller up, as in production; in one combined process the restarted broker
#               briefly lists its partitions without a leader, and the transaction coordinator
#               then skips their commit/abort markers, which leaves "hanging" transactions behind.
#               Replication: 1 broker RF 1 / min ISR 1; 2 brokers RF 2 / min ISR 1; 3 or more
#               brokers RF 3 / min ISR 2 (topics by default, __consumer_offsets,
#               __transaction_state, the share-group state topic).
#   mariadb     Debian's MariaDB, a private instance with its own datadir, socket and port
#   prometheus  Debian's Prometheus (optional: `up --with-prometheus` or `start prometheus`)
# Missing Debian packages (JDK 17, Maven, MariaDB, Prometheus) are installed with apt-get.
# No systemd/init and no system-wide service is used.
#
# Usage:
#   scripts/stack.sh up [--brokers N] [--with-prometheus] [--kafka-only]
#                                             start kafka + mariadb (+ prometheus), wait until ready;
#                                             --kafka-only starts the Kafka cluster alone (a second
#                                             cluster beside a stack, e.g. the liveness tests').
#                                             N (1..5) is remembered in the state dir: later commands
#                                             (and `up` without --brokers) use the cluster that exists
#                                             (1 broker if none). A different N wipes the Kafka storage
#                                             (topics, offsets, transactions) and formats a new cluster.
#   scripts/stack.sh down                     stop everything (SIGTERM, then SIGKILL after a timeout)
#   scripts/stack.sh status                   show each service and broker; exit 0 if all brokers, the
#                                             controller and mariadb are up, else 3
#   scripts/stack.sh logs [NAME] [-f]         list log files, or tail (follow with -f) one service's log
#   scripts/stack.sh start NAME               start one service and wait until it is ready
#   scripts/stack.sh stop NAME                stop one service gracefully (SIGTERM; a broker shuts down
#                                             in a controlled way) and wait until it has exited
#   scripts/stack.sh kill NAME                SIGKILL one service (fault tests)
#   scripts/stack.sh freeze NAME              SIGSTOP one service: alive, sockets open, silent (fault tests)
#   scripts/stack.sh thaw NAME                SIGCONT a frozen service
#   NAME is one of kafka | broker-I | mariadb | prometheus, I in 1..N. `kafka` means every broker
#   for start and stop (the controller is started as needed, and stopped only by `down`), and
#   broker-1 for kill, freeze, thaw and logs. Every command is idempotent.
#
# Kafka cluster queries (fault tests):
#   scripts/stack.sh brokers                  one line per broker: NODE_ID HOST:PORT up|frozen|down
#   scripts/stack.sh bootstrap                the bootstrap servers of all brokers, comma-separated
#   scripts/stack.sh leader TOPIC PARTITION   node id of the partition's leader; nothing and exit 1
#                                             if it has none
#   scripts/stack.sh coordinator group GROUP  node id of the consumer group's coordinator
#   scripts/stack.sh coordinator transaction TRANSACTIONAL_ID
#                                             node id of the transaction coordinator (exit 1 if the
#                                             transactional id is unknown to the cluster)
#   scripts/stack.sh isr-full                 exit 0 if every partition of every topic has its full
#                                             ISR and a leader, else 1
#   scripts/stack.sh tool CLASS [ARGS...]     run a Kafka tool class on the broker's classpath, e.g.
#                                             tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
#   The queries go through every broker that is up, so a dead or frozen broker does not stop them.
#
# Environment overrides (defaults in brackets):
#   CREDITSTREAM_STATE_DIR  [<repo>/.state]  data, logs, pid files
#   KAFKA_PORT              [9092]  PLAINTEXT listener of broker-1 on 127.0.0.1; broker-I listens on
#                                   KAFKA_PORT + 10*(I-1) (9092, 9102, 9112, ...)
#   KAFKA_CONTROLLER_PORT   [9093]  KRaft controller listener on 127.0.0.1
#   MYSQL_PORT              [3306]  MariaDB TCP port on 127.0.0.1
#   PROMETHEUS_PORT         [9090]  Prometheus web port on 127.0.0.1
#   PROMETHEUS_CONFIG       [<repo>/config/prometheus.yml]
#   KAFKA_HEAP_OPTS         [-Xmx1g -Xms256m with one broker, -Xmx512m -Xms256m with more]  per broker
#   KAFKA_JIT               [auto]  the brokers' JIT: c1 (-XX:TieredStopAtLevel=1), c2 (the JVM's
#                                   default), or auto: c1 when the brokers and the controller
#                                   outnumber the cores, so a restarted broker warms up in seconds
#   KAFKA_START_TIMEOUT     [120]   seconds to wait for the Kafka brokers to become ready
#   KAFKA_BROKER_SESSION_MS [2000]  the controller fences a broker silent this long (Kafka's
#                                   default is 9000; see the controller's configuration below)
#   MYSQL_START_TIMEOUT     [60]    seconds to wait for MariaDB to answer
#   STOP_TIMEOUT            [60]    seconds to wait after SIGTERM before SIGKILL
#
# Files: <state>/kafka/brokers holds N; broker-1 keeps the single-broker layout (<state>/kafka/
# server.properties, broker-data, kafka.pid, server.log, kafka.out, gc.log: GC pauses and
# safepoints, to tell a broker paused by its JVM from one the OS starved), broker-I (I > 1) has the same
# files in <state>/kafka/broker-I/, the controller in <state>/kafka/controller/.
#
# Connection details once up:
#   Kafka    bootstrap.servers=127.0.0.1:9092 (`scripts/stack.sh bootstrap` lists every broker)
#   MariaDB  mysql://creditstream:creditstream@127.0.0.1:3306/demodb (user has ALL on *.*);
#            root without password over the socket <state>/mariadb/mysqld.sock
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR=${CREDITSTREAM_STATE_DIR:-$REPO_ROOT/.state}
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
MYSQL_PORT=${MYSQL_PORT:-3306}
PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090}
PROMETHEUS_CONFIG=${PROMETHEUS_CONFIG:-$REPO_ROOT/config/prometheus.yml}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:-}   # default per broker count: see broker_heap_opts
KAFKA_JIT=${KAFKA_JIT:-auto}           # see broker_jit_opts
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-120}
KAFKA_BROKER_SESSION_MS=${KAFKA_BROKER_SESSION_MS:-2000}
MYSQL_START_TIMEOUT=${MYSQL_START_TIMEOUT:-60}
STOP_TIMEOUT=${STOP_TIMEOUT:-60}

HOST=127.0.0.1
SERVICES=(kafka mariadb prometheus)
MAX_BROKERS=5
KAFKA_POM=$REPO_ROOT/scripts/kafka/pom.xml
KAFKA_LOG4J=$REPO_ROOT/scripts/kafka/log4j2.properties
KAFKA_TOOLS_LOG4J=$REPO_ROOT/scripts/kafka/tools-log4j2.properties
DB_NAME=demodb
DB_USER=creditstream
DB_PASSWORD=creditstream

# ---------------------------------------------------------------- paths

set_paths() {
  mkdir -p "$STATE_DIR"
  STATE_DIR=$(cd "$STATE_DIR" && pwd)   # absolute: it ends up in configs and command lines

  KAFKA_DIR=$STATE_DIR/kafka
  KAFKA_LIBS=$KAFKA_DIR/libs
  CONTROLLER_DIR=$KAFKA_DIR/controller
  CONTROLLER_DATA=$CONTROLLER_DIR/data
  CONTROLLER_CONFIG=$CONTROLLER_DIR/controller.properties
  CONTROLLER_PIDFILE=$CONTROLLER_DIR/controller.pid
  CONTROLLER_LOG=$CONTROLLER_DIR/server.log
  CONTROLLER_OUT=$CONTROLLER_DIR/controller.out
  KAFKA_ADMIN_CONFIG=$KAFKA_DIR/admin-client.properties
  KAFKA_BROKERS_FILE=$KAFKA_DIR/brokers   # the broker count the storage is formatted for
  # broker-I's paths: broker_dir, broker_data, broker_config, ... (kafka section)
  # The cluster that exists; `up --brokers N` changes it.
  BROKERS=$(formatted_broker_count) || BROKERS=1

  MARIADB_DIR=$STATE_DIR/mariadb
  MARIADB_DATA=$MARIADB_DIR/data
  MARIADB_SOCKET=$MARIADB_DIR/mysqld.sock
  MARIADB_PIDFILE=$MARIADB_DIR/mariadbd.pid
  MARIADB_LOG=$MARIADB_DIR/error.log
  MARIADB_OUT=$MARIADB_DIR/mariadbd.out

  PROM_DIR=$STATE_DIR/prometheus
  PROM_DATA=$PROM_DIR/data
  PROM_PIDFILE=$PROM_DIR/prometheus.pid
  PROM_LOG=$PROM_DIR/prometheus.log
}

# ---------------------------------------------------------------- small helpers

say() { printf '[stack] %s\n' "$*"; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# Print the last lines of a log file to stderr (used when something fails).
show_tail() {
  local file=$1 lines=${2:-40}
  [[ -s $file ]] || return 0
  printf -- '----- last %s lines of %s -----\n' "$lines" "$file" >&2
  tail -n "$lines" "$file" >&2 || true
  printf -- '-----\n' >&2
}

# Find an executable on PATH or in the sbin directories (PATH may lack /usr/sbin).
find_bin() {
  local name dir
  for name in "$@"; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
    for dir in /usr/sbin /usr/local/sbin /sbin /usr/bin; do
      [[ -x $dir/$name ]] && { echo "$dir/$name"; return 0; }
    done
  done
  return 1
}

APT_UPDATED=0
apt_install() {
  [[ $(id -u) -eq 0 ]] || die "need root to install Debian packages: $* (install them yourself, or run as root)"
  command -v apt-get >/dev/null || die "apt-get not found; install manually: $*"
  if ((APT_UPDATED == 0)); then
    say "apt-get update"
    apt-get -o DPkg::Lock::Timeout=600 update -qq || die "apt-get update failed"
    APT_UPDATED=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" || die "apt-get install $* failed"
}

# True if some socket listens on TCP PORT. Reads /proc/net/tcp{,6} instead of connecting, so
# status checks do not fill the MariaDB/Kafka logs with aborted connections.
port_open() {
  local port=$1 tables=()
  [[ -r /proc/net/tcp ]] && tables+=(/proc/net/tcp)
  [[ -r /proc/net/tcp6 ]] && tables+=(/proc/net/tcp6)
  if ((${#tables[@]} > 0)); then
    awk -v port="$(printf '%04X' "$port")" '
      FNR > 1 && $4 == "0A" { split($2, addr, ":"); if (addr[2] == port) found = 1 }
      END { exit !found }' "${tables[@]}"
  else
    timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$port" 2>/dev/null
  fi
}

# True if PID exists and is not a zombie (orphans may not be reaped in minimal containers).
pid_alive() {
  local pid=$1 state
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
  [[ $state != Z ]]
}

# True if PID is stopped (SIGSTOP: `freeze`).
process_frozen() {
  [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) == [Tt] ]]
}

# Pid from PIDFILE if that process is alive and its command line contains MARKER
# (guards against pid reuse and against another stack using a different state dir).
live_pid() {
  local pidfile=$1 marker=$2 pid
  [[ -s $pidfile ]] || return 1
  pid=$(tr -dc '0-9' <"$pidfile")
  pid_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker" || return 1
  echo "$pid"
}

# Start a command detached from this shell (own session, stdin from /dev/null, output
# appended to LOGFILE) and record its pid in PIDFILE. Fd 9 (the stack lock) is not inherited.
spawn() {
  local pidfile=$1 logfile=$2; shift 2
  rm -f "$pidfile"
  # shellcheck disable=SC2016 # $$ and $@ are expanded by the inner bash
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 9>&- &
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s $pidfile ]] && return 0
    sleep 0.1
  done
  die "could not start $1 (no pid file $pidfile)"
}

# Send SIGNAL to PID and wait up to TIMEOUT seconds for it to exit; escalate to SIGKILL.
terminate() {
  local name=$1 pid=$2 signal=$3 timeout=$4 waited=0
  kill "-$signal" "$pid" 2>/dev/null || true
  # A frozen process acts on SIGTERM only once continued.
  [[ $signal == KILL ]] || kill -CONT "$pid" 2>/dev/null || true
  while pid_alive "$pid"; do
    if ((waited >= timeout * 10)); then
      if [[ $signal == KILL ]]; then
        die "$name (pid $pid) is still alive after SIGKILL"
      fi
      warn "$name (pid $pid) did not stop within ${timeout}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      signal=KILL timeout=10 waited=0
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

# Fail early with a clear message if a foreign process already owns PORT.
require_port_free() {
  local name=$1 port=$2
  if port_open "$port"; then
    die "$name: port $HOST:$port is already in use by a process that is not this stack's $name \
(state dir $STATE_DIR). Stop it (a system service, or a stack with another CREDITSTREAM_STATE_DIR) \
or choose another port via the environment (see the header of $0)."
  fi
}

# ---------------------------------------------------------------- kafka

ensure_java() {
  command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
}

kafka_libs_stamp() { sha256sum "$KAFKA_POM" | cut -d' ' -f1; }

# Resolve the broker classpath from Maven Central into $KAFKA_LIBS. Runs only when the libs
# dir is missing/empty or was resolved from a different pom (stamp file). Resolves into a
# temporary dir first so an interrupted download never leaves a half-filled libs dir.
ensure_kafka_libs() {
  local stamp
  stamp=$(kafka_libs_stamp)
  if compgen -G "$KAFKA_LIBS/*.jar" >/dev/null &&
    [[ -f $KAFKA_LIBS/.pom.sha256 && $(<"$KAFKA_LIBS/.pom.sha256") == "$stamp" ]]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || apt_install maven
  say "kafka: resolving broker jars from Maven Central (first run only, may take a few minutes)"
  local tmp=$KAFKA_DIR/libs.tmp
  rm -rf "$tmp"
  mkdir -p "$tmp"
  if ! mvn -q -B -f "$KAFKA_POM" dependency:copy-dependencies \
    -DoutputDirectory="$tmp" -DincludeScope=runtime >"$KAFKA_DIR/mvn.log" 2>&1; then
    show_tail "$KAFKA_DIR/mvn.log" 60
    die "kafka: maven could not resolve $KAFKA_POM (log: $KAFKA_DIR/mvn.log)"
  fi
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "kafka: maven finished but no kafka_2.13 jar in $tmp"
  echo "$stamp" >"$tmp/.pom.sha256"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  say "kafka: $(compgen -G "$KAFKA_LIBS/*.jar" | wc -l) jars in $KAFKA_LIBS"
}

# Run a Java main class on the Kafka classpath (command-line tools: quiet logging, small heap).
kafka_tool() {
  java -Xmx512m -Xms64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_TOOLS_LOG4J" -cp "$KAFKA_LIBS/*" "$@"
}

# Same, killed after SECONDS (readiness probes must never hang).
kafka_tool_with_timeout() {
  local seconds=$1; shift
  timeout "$seconds" java -Xmx512m -Xms64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$KAFKA_TOOLS_LOG4J" -cp "$KAFKA_LIBS/*" "$@"
}

# ---------------------------------------------------------------- kafka brokers: layout

# Broker I (1-based) is node I+1 (the controller is node 1) and listens on KAFKA_PORT + 10*(I-1).
# broker-1 keeps the paths of the single-broker stack, so its state dirs work unchanged.
valid_broker_count() { [[ $1 =~ ^[1-9][0-9]*$ ]] && (($1 <= MAX_BROKERS)); }
broker_dir() { if (($1 == 1)); then echo "$KAFKA_DIR"; else echo "$KAFKA_DIR/broker-$1"; fi; }
broker_data() { echo "$(broker_dir "$1")/broker-data"; }
broker_config() { echo "$(broker_dir "$1")/server.properties"; }
broker_pidfile() { echo "$(broker_dir "$1")/kafka.pid"; }
broker_log() { echo "$(broker_dir "$1")/server.log"; } # log4j2 (scripts/kafka/log4j2.properties)
broker_out() { echo "$(broker_dir "$1")/kafka.out"; }  # JVM stdout/stderr: crashes, bad options
broker_readiness_log() { echo "$(broker_dir "$1")/readiness.log"; }
broker_log_mark() { echo "$(broker_dir "$1")/server.log.mark"; } # server.log's size at spawn
broker_port() { echo $((KAFKA_PORT + 10 * ($1 - 1))); }
broker_node_id() { echo $(($1 + 1)); }
broker_pid() { live_pid "$(broker_pidfile "$1")" "$(broker_config "$1")"; }

# up | frozen (SIGSTOP) | down, from the broker's process.
broker_state() {
  local pid
  if ! pid=$(broker_pid "$1"); then
    echo down
  elif process_frozen "$pid"; then
    echo frozen
  else
    echo up
  fi
}

# The broker count the Kafka storage is formatted for (the cluster that exists). A state dir
# of the single-broker stack (no count file, broker-1's data formatted) is a 1-broker cluster.
# Fails if there is none.
formatted_broker_count() {
  local n
  if [[ -s $KAFKA_BROKERS_FILE ]]; then
    n=$(tr -dc '0-9' <"$KAFKA_BROKERS_FILE")
    if ! valid_broker_count "$n"; then
      warn "kafka: ignoring $KAFKA_BROKERS_FILE (holds '$n', not a broker count 1..$MAX_BROKERS)"
      return 1
    fi
    echo "$n"
  elif [[ -f $(broker_data 1)/meta.properties ]]; then
    echo 1
  else
    return 1
  fi
}

# Comma-separated HOST:PORT of every broker or, with "up", of the brokers whose process runs
# and is not frozen (fails if that leaves none).
bootstrap_servers() {
  local only_up=${1:-} i list=()
  for ((i = 1; i <= BROKERS; i++)); do
    [[ $only_up == up && $(broker_state "$i") != up ]] && continue
    list+=("$HOST:$(broker_port "$i")")
  done
  ((${#list[@]} > 0)) || return 1
  local IFS=,
  echo "${list[*]}"
}

# JVM heap of each broker: KAFKA_HEAP_OPTS if set, else 1 GB alone and 512 MB in a cluster.
broker_heap_opts() {
  if [[ -n $KAFKA_HEAP_OPTS ]]; then
    echo "$KAFKA_HEAP_OPTS"
  elif ((BROKERS > 1)); then
    echo "-Xmx512m -Xms256m"
  else
    echo "-Xmx1g -Xms256m"
  fi
}

# The brokers' JIT: with KAFKA_JIT=auto, C1 only when the Kafka JVMs (brokers and controller)
# outnumber the cores. A broker restarted on such a machine otherwise spends its first minute
# compiling with C2 beside the others' work, and the coordinators it takes over in a rolling
# restart load seconds late (docs/production.md, "Coordinator loads on a restarted broker").
broker_jit_opts() {
  case $KAFKA_JIT in
    c1) echo "-XX:TieredStopAtLevel=1" ;;
    c2) ;;
    auto) if ((BROKERS + 1 > $(nproc))); then echo "-XX:TieredStopAtLevel=1"; fi ;;
    *) die "KAFKA_JIT must be auto, c1 or c2 (not '$KAFKA_JIT')" ;;
  esac
}

# ---------------------------------------------------------------- kafka: configs and storage

# Replication for BROKERS brokers: sets REPLICATION_FACTOR, MIN_INSYNC, REPLICATION_COMMENT
# and INTER_BROKER_TIMEOUT (empty, or the brokers' request.timeout.ms line).
set_replication() {
  INTER_BROKER_TIMEOUT=""
  if ((BROKERS == 1)); then
    REPLICATION_FACTOR=1 MIN_INSYNC=1
    REPLICATION_COMMENT="# One broker: every internal topic must accept replication factor / ISR of 1,
# otherwise transactions and consumer groups never become available."
  elif ((BROKERS == 2)); then
    REPLICATION_FACTOR=2 MIN_INSYNC=1
    REPLICATION_COMMENT="# Two brokers: two replicas of everything; one in sync is enough, so either broker
# may be down."
  else
    # A transaction coordinator's commit/abort markers in flight to a broker that stopped
    # answering (frozen) go again to the partitions' new leaders only after the brokers'
    # request.timeout.ms (Kafka's default 30 s); until then that transaction cannot end,
    # and a producer replacing its predecessor waits in init_transactions (seen: 12.8 s of
    # a 20 s freeze). One broker has nobody to hand over to: the default stays there.
    INTER_BROKER_TIMEOUT="# Inter-broker requests (transaction markers among them) unanswered for 5 s are
# given up and sent to the partitions' current leaders.
request.timeout.ms=5000"
    REPLICATION_FACTOR=3 MIN_INSYNC=2
    REPLICATION_COMMENT="# $BROKERS brokers, as in production: three replicas of everything, two of them in sync
# for an acks=all write, so the cluster (transactions, consumer groups) survives one
# broker down without losing an acknowledged write."
  fi
}

# (Re)write the controller's and every broker's config on every start so edits to this
# script take effect.
write_kafka_config() {
  local i
  set_replication
  mkdir -p "$CONTROLLER_DIR"
  cat >"$CONTROLLER_CONFIG" <<EOF
# Generated by scripts/stack.sh on every start - edit the script, not this file.
# The KRaft controller (the only voter of the metadata quorum), a process of its own.
process.roles=controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$KAFKA_CONTROLLER_PORT
listeners=CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$CONTROLLER_DATA
# A broker that stops heartbeating is fenced after 2 s (KAFKA_BROKER_SESSION_MS). A broker
# killed and restarted then finds itself fenced in the first metadata it loads, instead of
# publishing itself as the leader of everything until its new registration fences it: in
# that window its transaction coordinator can resend commit/abort markers, find the data
# partitions without a leader, and skip them for good (Kafka treats them as deleted), which
# leaves hanging transactions that stop every read_committed reader. On a busy 2-core
# machine a healthy broker now and then misses 2 s too, and is fenced for a moment.
broker.session.timeout.ms=$KAFKA_BROKER_SESSION_MS
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=true

# Topic defaults, as on the brokers: in KRaft the controller fills in the partition count
# and replication factor of a new topic, and (eligible leader replicas are on) publishes
# its min.insync.replicas once, when the cluster starts, as the cluster-wide default that
# takes precedence over the brokers' own.
num.partitions=1
default.replication.factor=$REPLICATION_FACTOR
min.insync.replicas=$MIN_INSYNC
EOF
  for ((i = 1; i <= BROKERS; i++)); do
    write_broker_config "$i"
  done
  cat >"$KAFKA_ADMIN_CONFIG" <<EOF
# Admin-client settings for readiness checks by scripts/stack.sh: fail fast, retry in the script.
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

write_broker_config() {
  local i=$1 port
  port=$(broker_port "$i")
  mkdir -p "$(broker_dir "$i")"
  cat >"$(broker_config "$i")" <<EOF
# Generated by scripts/stack.sh on every start - edit the script, not this file.
# broker-$i of $BROKERS; the controller runs in another process ($CONTROLLER_CONFIG).
process.roles=broker
node.id=$(broker_node_id "$i")
controller.quorum.bootstrap.servers=$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$port
advertised.listeners=PLAINTEXT://$HOST:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$(broker_data "$i")
# Heartbeats well inside the controller's 2 s broker session.
broker.heartbeat.interval.ms=300

# Topics are created explicitly by the application/tests.
auto.create.topics.enable=false
num.partitions=1

$REPLICATION_COMMENT
default.replication.factor=$REPLICATION_FACTOR
min.insync.replicas=$MIN_INSYNC
offsets.topic.replication.factor=$REPLICATION_FACTOR
transaction.state.log.replication.factor=$REPLICATION_FACTOR
transaction.state.log.min.isr=$MIN_INSYNC
share.coordinator.state.topic.replication.factor=$REPLICATION_FACTOR
share.coordinator.state.topic.min.isr=$MIN_INSYNC

# Do not wait 3 s for more members before the first consumer-group rebalance.
group.initial.rebalance.delay.ms=0
# Processor replicas use a 3 s session timeout so a failed replica's tasks move within
# seconds (the broker's default floor is 6 s). Timed-out transactions (a replica killed
# mid-transaction) are aborted within a second of their timeout, not ten.
group.min.session.timeout.ms=1000
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
$INTER_BROKER_TIMEOUT

# ACLs are enforced, but with none defined everyone may do everything (every client here
# is User:ANONYMOUS). tests/authorization.rs adds a DENY on its own topic to see how the
# system takes an authorization error.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=true
EOF
}

# True if the controller and brokers 1..BROKERS are formatted, as a cluster of BROKERS brokers.
kafka_storage_ready() {
  local i n
  n=$(formatted_broker_count) || return 1
  ((n == BROKERS)) || return 1
  [[ -f $CONTROLLER_DATA/meta.properties ]] || return 1
  for ((i = 1; i <= BROKERS; i++)); do
    [[ -f $(broker_data "$i")/meta.properties ]] || return 1
  done
}

# Wipe all Kafka storage and format the controller's and every broker's anew with one cluster
# id (the controller as a standalone, dynamic single-voter quorum). The Kafka processes must
# be stopped. Broker dirs beyond BROKERS (of a former, larger cluster) are removed.
format_kafka_storage() {
  local i cluster_id
  if [[ -d $KAFKA_DIR/data ]]; then
    warn "kafka: $KAFKA_DIR/data holds a single-process (combined) broker of an older stack; it is no longer used (remove it to free the space)"
  fi
  cluster_id=$(kafka_tool kafka.tools.StorageTool random-uuid 2>>"$KAFKA_DIR/format.log" | tail -n 1)
  [[ $cluster_id =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka: could not generate a cluster id (got '$cluster_id')"
  say "kafka: formatting storage for $BROKERS broker(s) in $KAFKA_DIR (cluster id $cluster_id)"
  rm -rf "$CONTROLLER_DATA" "$KAFKA_BROKERS_FILE"
  for ((i = 1; i <= MAX_BROKERS; i++)); do
    if ((i <= BROKERS)); then rm -rf "$(broker_data "$i")"; else rm -rf "$(broker_dir "$i")"; fi
  done
  mkdir -p "$CONTROLLER_DATA"
  kafka_tool kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$CONTROLLER_CONFIG" \
    >>"$KAFKA_DIR/format.log" 2>&1 || format_failed
  for ((i = 1; i <= BROKERS; i++)); do
    mkdir -p "$(broker_data "$i")"
    kafka_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$(broker_config "$i")" \
      >>"$KAFKA_DIR/format.log" 2>&1 || format_failed
  done
  echo "$cluster_id" >"$KAFKA_DIR/cluster.id"
  echo "$BROKERS" >"$KAFKA_BROKERS_FILE"
}

format_failed() {
  show_tail "$KAFKA_DIR/format.log"
  die "kafka: storage format failed (log: $KAFKA_DIR/format.log)"
}

# Everything a broker start needs, for a cluster of N brokers: java, the jars, the configs,
# and storage formatted for N brokers. A storage formatted for another count is stopped, wiped
# and formatted anew if MAY_FORMAT is yes (`up --brokers N`), else an error.
prepare_kafka() {
  local n=$1 may_format=$2 formatted
  ensure_java
  mkdir -p "$KAFKA_DIR"
  ensure_kafka_libs
  formatted=$(formatted_broker_count) || formatted=
  BROKERS=$n
  write_kafka_config
  if kafka_storage_ready; then
    echo "$n" >"$KAFKA_BROKERS_FILE" # records the count of a single-broker stack's state dir
    return 0
  fi
  [[ $may_format == yes ]] || die "kafka: the storage of the $n-broker cluster is missing; run '$0 up' first"
  if [[ -n $formatted && $formatted != "$n" ]]; then
    say "kafka: the storage holds a $formatted-broker cluster and $n broker(s) were asked for: stopping Kafka, wiping its storage (every topic, offset and transaction is lost) and formatting a $n-broker cluster"
  elif [[ -n $formatted ]]; then
    say "kafka: the storage of the $n-broker cluster is incomplete (a data dir without meta.properties): wiping it and formatting it anew"
  fi
  stop_kafka_processes running
  format_kafka_storage
}

# ---------------------------------------------------------------- kafka: processes

controller_pid() { live_pid "$CONTROLLER_PIDFILE" "$CONTROLLER_CONFIG"; }

# The controller runs on while brokers are killed, frozen or restarted.
start_controller() {
  local pid deadline
  if pid=$(controller_pid); then
    return 0
  fi
  require_port_free kafka-controller "$KAFKA_CONTROLLER_PORT"
  say "kafka: starting the controller on $HOST:$KAFKA_CONTROLLER_PORT"
  spawn "$CONTROLLER_PIDFILE" "$CONTROLLER_OUT" java -Xmx256m -Xms64m -server -XX:+UseG1GC \
    "-Xlog:gc*,safepoint:file=$CONTROLLER_DIR/gc.log:time,uptime:filecount=2,filesize=20m" \
    -Djava.awt.headless=true -Dkafka.logs.dir="$CONTROLLER_DIR" -Dlog4j2.configurationFile="$KAFKA_LOG4J" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$CONTROLLER_CONFIG"
  pid=$(<"$CONTROLLER_PIDFILE")
  deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  until port_open "$KAFKA_CONTROLLER_PORT"; do
    if ! pid_alive "$pid"; then
      show_tail "$CONTROLLER_OUT" 20
      show_tail "$CONTROLLER_LOG" 60
      die "kafka: controller process $pid exited during startup (logs: $CONTROLLER_LOG)"
    fi
    ((SECONDS < deadline)) || die "kafka: controller not listening after ${KAFKA_START_TIMEOUT}s (log: $CONTROLLER_LOG)"
    sleep 0.5
  done
}

stop_controller() {
  local pid
  pid=$(controller_pid) || return 0
  say "kafka: stopping the controller (pid $pid)"
  terminate kafka-controller "$pid" TERM "$STOP_TIMEOUT"
  rm -f "$CONTROLLER_PIDFILE"
}

# stop_brokers SIGNAL [running]: stop brokers 1..BROKERS (saying so if one is not running,
# unless "running" is given) and any other broker process of this state dir.
stop_brokers() {
  local signal=$1 only_running=${2:-} i
  for ((i = 1; i <= MAX_BROKERS; i++)); do
    if { ((i <= BROKERS)) && [[ $only_running != running ]]; } || broker_pid "$i" >/dev/null; then
      stop_service "broker-$i" "$signal"
    fi
  done
}

# stop_kafka_processes [running]: the brokers (SIGTERM), then the controller.
stop_kafka_processes() {
  stop_brokers TERM "${1:-}"
  stop_controller
}

# Whether broker I logged that it started since it was last spawned (true when the spawn left
# no mark). Cheap enough to look every second, unlike the admin tool's JVM (about 2 s of CPU
# each, taken from a broker that is warming up).
broker_logged_start() {
  local i=$1 mark
  mark=$(cat "$(broker_log_mark "$i")" 2>/dev/null) || return 0
  # grep reads it all (not -q): under pipefail, tail cut off by SIGPIPE would fail the test.
  tail -c +"$((mark + 1))" "$(broker_log "$i")" 2>/dev/null | grep 'Kafka Server started' >/dev/null
}

# Ready: the broker logged its start and answers an admin request (listing topics) through
# its own port, not just a TCP connect.
broker_is_ready() {
  local i=$1 port
  port=$(broker_port "$i")
  port_open "$port" || return 1
  broker_logged_start "$i" || return 1
  kafka_tool_with_timeout 60 org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$port" \
    --command-config "$KAFKA_ADMIN_CONFIG" --list >/dev/null 2>>"$(broker_readiness_log "$i")"
}

# Of the brokers I..., print those the cluster does not list as registered and unfenced (asked
# through the brokers that are up; all of them if that fails).
unregistered_brokers() {
  local bs listed i
  if ! bs=$(bootstrap_servers up) ||
    ! listed=$(kafka_tool_with_timeout 60 org.apache.kafka.tools.ClusterTool list-endpoints \
      --bootstrap-server "$bs" --command-config "$KAFKA_ADMIN_CONFIG" 2>>"$(broker_readiness_log 1)"); then
    echo "$@"
    return 0
  fi
  for i; do
    awk -v id="$(broker_node_id "$i")" '$1 == id && /unfenced/ { found = 1 } END { exit !found }' \
      <<<"$listed" || printf '%s ' "$i"
  done
}

# Die with the broker's logs if broker I (being waited for) exited, is frozen, or DEADLINE passed.
check_starting_broker() {
  local i=$1 deadline=$2 pid
  if ! pid=$(broker_pid "$i"); then
    show_tail "$(broker_out "$i")" 20
    show_tail "$(broker_log "$i")" 60
    die "kafka: broker-$i exited during startup (logs: $(broker_log "$i"), $(broker_out "$i"))"
  fi
  if process_frozen "$pid"; then
    die "kafka: broker-$i (pid $pid) is frozen; '$0 thaw broker-$i' first"
  fi
  if ((SECONDS >= deadline)); then
    show_tail "$(broker_log "$i")" 60
    show_tail "$(broker_readiness_log "$i")" 10
    die "kafka: broker-$i not ready after ${KAFKA_START_TIMEOUT}s (pid $pid still running; log: $(broker_log "$i"))"
  fi
}

# Poll until each broker I... is ready and, in a cluster of several brokers, until the
# cluster lists each of them as registered and unfenced.
wait_brokers_ready() {
  local deadline=$((SECONDS + KAFKA_START_TIMEOUT)) i pending=("$@") waiting
  for i; do : >"$(broker_readiness_log "$i")"; done
  while ((${#pending[@]} > 0)); do
    waiting=()
    for i in "${pending[@]}"; do
      check_starting_broker "$i" "$deadline"
      broker_is_ready "$i" || waiting+=("$i")
    done
    pending=(${waiting[@]+"${waiting[@]}"})
    ((${#pending[@]} == 0)) || sleep 1
  done
  ((BROKERS > 1)) || return 0
  # shellcheck disable=SC2207 # node indices, no globbing
  while pending=($(unregistered_brokers "$@")) && ((${#pending[@]} > 0)); do
    for i in "${pending[@]}"; do
      check_starting_broker "$i" "$deadline"
    done
    sleep 1
  done
}

# Start broker I: its own copy of the cluster metadata is only a cache of the controller's;
# dropping it makes the broker load the controller's current view (itself fenced, after a
# kill) rather than replay a stale one in which it still leads its partitions.
spawn_broker() {
  local i=$1 jit
  jit=$(broker_jit_opts) || exit 1 # a bad KAFKA_JIT: the subshell said so
  rm -rf "$(broker_data "$i")/__cluster_metadata-0"
  stat -c %s "$(broker_log "$i")" 2>/dev/null >"$(broker_log_mark "$i")" || echo 0 >"$(broker_log_mark "$i")"
  say "kafka: starting broker-$i (node $(broker_node_id "$i")) on $HOST:$(broker_port "$i") (controller $HOST:$KAFKA_CONTROLLER_PORT)"
  # shellcheck disable=SC2046,SC2086 # several JVM flags from broker_heap_opts, $jit one or none
  spawn "$(broker_pidfile "$i")" "$(broker_out "$i")" java $(broker_heap_opts) $jit -server \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    "-Xlog:gc*,safepoint:file=$(broker_dir "$i")/gc.log:time,uptime:filecount=2,filesize=20m" \
    -Dkafka.logs.dir="$(broker_dir "$i")" -Dlog4j2.configurationFile="$KAFKA_LOG4J" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$(broker_config "$i")"
}

# Start those of brokers I... that are not running (and the controller if it is not), then
# wait until all of them are ready. prepare_kafka must have run.
start_brokers() {
  local i pid spawned=()
  for i; do
    if pid=$(broker_pid "$i"); then
      say "kafka: broker-$i already running (pid $pid)"
    else
      require_port_free "kafka broker-$i" "$(broker_port "$i")"
      spawned+=("$i")
    fi
  done
  start_controller
  for i in ${spawned[@]+"${spawned[@]}"}; do
    spawn_broker "$i"
  done
  wait_brokers_ready "$@"
  for i; do
    say "kafka: broker-$i ready (node $(broker_node_id "$i"), $HOST:$(broker_port "$i"), pid $(broker_pid "$i"))"
  done
}

# start_kafka [N]: the controller and all N brokers (default: the cluster that exists, or 1).
start_kafka() {
  local n=${1:-$BROKERS} i all=()
  if ((KAFKA_CONTROLLER_PORT >= KAFKA_PORT && KAFKA_CONTROLLER_PORT < KAFKA_PORT + 10 * n &&
    (KAFKA_CONTROLLER_PORT - KAFKA_PORT) % 10 == 0)); then
    die "kafka: KAFKA_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT is also a broker port (KAFKA_PORT + 10*(I-1))"
  fi
  prepare_kafka "$n" yes
  for ((i = 1; i <= BROKERS; i++)); do all+=("$i"); done
  start_brokers "${all[@]}"
}

start_broker() {
  local i=$1
  [[ -n $(formatted_broker_count) ]] || die "kafka: no cluster yet; run '$0 up' first"
  prepare_kafka "$BROKERS" no
  start_brokers "$i"
}

# ---------------------------------------------------------------- kafka: cluster queries

require_kafka_libs() {
  compgen -G "$KAFKA_LIBS/*.jar" >/dev/null || die "kafka jars not resolved yet; run '$0 up' first"
}

# Bootstrap servers of the brokers that are up, or die.
live_bootstrap() {
  bootstrap_servers up || die "kafka: no broker is up (see '$0 brokers')"
}

# Run a Kafka admin tool (CLASS ARGS...) with a time limit and print its output; its log
# (warnings about unreachable brokers etc.) is shown only if it fails.
run_admin_tool() {
  local err rc=0
  err=$(mktemp)
  kafka_tool_with_timeout 60 "$@" 2>"$err" || rc=$?
  ((rc == 0)) || cat "$err" >&2
  rm -f "$err"
  return "$rc"
}

# describe_partitions BOOTSTRAP [ARGS...]: the partition lines of `TopicCommand --describe ARGS`
# as "TOPIC PARTITION LEADER REPLICAS ISR" (leader "none" if there is none; replica lists
# comma-separated, "-" if empty).
describe_partitions() {
  local bs=$1
  shift
  run_admin_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bs" \
    --command-config "$KAFKA_ADMIN_CONFIG" --describe "$@" |
    awk -F'\t' '
      $0 ~ /\tPartition: / {
        delete v
        for (f = 1; f <= NF; f++) if (match($f, /^[A-Za-z]+: /)) v[substr($f, 1, RLENGTH - 2)] = substr($f, RLENGTH + 1)
        print v["Topic"], v["Partition"], (v["Leader"] == "" ? "none" : v["Leader"]),
          (v["Replicas"] == "" ? "-" : v["Replicas"]), (v["Isr"] == "" ? "-" : v["Isr"])
      }'
}

cmd_brokers() {
  local i
  for ((i = 1; i <= BROKERS; i++)); do
    printf '%s %s:%s %s\n' "$(broker_node_id "$i")" "$HOST" "$(broker_port "$i")" "$(broker_state "$i")"
  done
}

cmd_leader() {
  local topic=${1:-} partition=${2:-} bs partitions leader
  [[ $# -eq 2 && -n $topic && $partition =~ ^[0-9]+$ ]] || die "usage: $0 leader TOPIC PARTITION"
  require_kafka_libs
  bs=$(live_bootstrap) || exit 1
  partitions=$(describe_partitions "$bs" --topic "$topic") || die "kafka: cannot describe topic $topic"
  leader=$(awk -v t="$topic" -v p="$partition" '$1 == t && $2 == p { print $3; found = 1 }
    END { exit !found }' <<<"$partitions") || die "kafka: topic $topic has no partition $partition"
  [[ $leader =~ ^[0-9]+$ ]] || exit 1 # "none" (or -1): no leader
  echo "$leader"
}

cmd_coordinator() {
  local kind=${1:-} key=${2:-} bs out node
  [[ $# -eq 2 && -n $key && ($kind == group || $kind == transaction) ]] ||
    die "usage: $0 coordinator group GROUP | $0 coordinator transaction TRANSACTIONAL_ID"
  require_kafka_libs
  bs=$(live_bootstrap) || exit 1
  if [[ $kind == group ]]; then
    # GROUP  COORDINATOR (ID)  ASSIGNMENT-STRATEGY  STATE  #MEMBERS; the coordinator as "host:port (id)".
    out=$(run_admin_tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
      --bootstrap-server "$bs" --command-config "$KAFKA_ADMIN_CONFIG" \
      --describe --group "$key" --state) || die "kafka: cannot describe consumer group $key"
    [[ $out != *GroupIdNotFound* && $out != *"not found"* ]] ||
      die "kafka: consumer group $key is unknown to the cluster (never used, or its offsets expired)"
    node=$(awk -v g="$key" '$1 == g && match($0, /:[0-9]+ +\([0-9]+\)/) {
      s = substr($0, RSTART, RLENGTH); sub(/.*\(/, "", s); sub(/\)/, "", s); print s; exit }' <<<"$out")
    [[ $node =~ ^[0-9]+$ ]] || die "kafka: no coordinator found for consumer group $key: $out"
  else
    # CoordinatorId  TransactionalId  ProducerId  ProducerEpoch  TransactionState ...
    out=$(run_admin_tool org.apache.kafka.tools.TransactionsCommand \
      --bootstrap-server "$bs" --command-config "$KAFKA_ADMIN_CONFIG" \
      describe --transactional-id "$key" 2>&1) || {
      if [[ $out == *TransactionalIdNotFound* || $out == *"could not be found"* ]]; then
        die "kafka: transactional id $key is unknown to the cluster (never used, or expired)"
      fi
      die "kafka: cannot describe transactional id $key: $out"
    }
    node=$(awk 'NR == 1 { for (f = 1; f <= NF; f++) if ($f == "CoordinatorId") col = f; next }
      col && $col ~ /^[0-9]+$/ { print $col; exit }' <<<"$out")
    [[ $node =~ ^[0-9]+$ ]] || die "kafka: no coordinator found for transactional id $key: $out"
  fi
  echo "$node"
}

# Exit 0 if every partition has a leader and all its replicas in the ISR, else (also if the
# cluster does not answer) 1. A replica on a broker whose process is down or frozen counts as
# out of sync right away: the controller notices only after the broker session (2 s), and a
# test that kills a broker and then waits for "isr-full" must not pass before that.
cmd_isr_full() {
  local bs partitions i gone=
  require_kafka_libs
  bs=$(bootstrap_servers up) || exit 1
  for ((i = 1; i <= BROKERS; i++)); do
    [[ $(broker_state "$i") == up ]] || gone+=" $(broker_node_id "$i")"
  done
  # Not answering (a broker just lost, no broker up) counts as "not full", without the noise.
  partitions=$(describe_partitions "$bs" 2>/dev/null) || exit 1
  awk -v gone="$gone" '
    BEGIN { split(gone, g, " "); for (k in g) down[g[k]] = 1 }
    { n = split($4, replicas, ","); m = split($5, isr, ",")
      if ($3 == "none" || $3 == "-1" || $4 == "-" || $5 == "-" || m < n) short++
      for (r = 1; r <= n; r++) if (replicas[r] in down) short++ }
    END { exit short > 0 }' <<<"$partitions"
}

# ---------------------------------------------------------------- mariadb

MARIADBD=
ensure_mariadb() {
  if ! MARIADBD=$(find_bin mariadbd mysqld) || ! find_bin mariadb-install-db >/dev/null ||
    ! find_bin mariadb >/dev/null; then
    apt_install mariadb-server mariadb-client
    MARIADBD=$(find_bin mariadbd mysqld) || die "mariadb: mariadbd not found after installing mariadb-server"
  fi
}

# shellcheck disable=SC2120 # optional extra client arguments
mysql_root() { "$(find_bin mariadb mysql)" --no-defaults --socket="$MARIADB_SOCKET" -uroot "$@"; }

# Create the system tables once. Done in a temporary dir so a failed run leaves no half datadir.
init_mariadb_datadir() {
  [[ -d $MARIADB_DATA/mysql ]] && return 0
  local tmp=$MARIADB_DIR/data.tmp
  say "mariadb: initialising datadir $MARIADB_DATA"
  rm -rf "$tmp"
  if ! "$(find_bin mariadb-install-db mysql_install_db)" --no-defaults --user=root --datadir="$tmp" \
    --auth-root-authentication-method=normal --skip-test-db >"$MARIADB_DIR/install.log" 2>&1; then
    show_tail "$MARIADB_DIR/install.log"
    die "mariadb: mariadb-install-db failed (log: $MARIADB_DIR/install.log)"
  fi
  rm -rf "$MARIADB_DATA"
  mv "$tmp" "$MARIADB_DATA"
}

mariadb_pid() { live_pid "$MARIADB_PIDFILE" "$MARIADB_DATA"; }

wait_mariadb_ready() {
  local pid=$1 deadline=$((SECONDS + MYSQL_START_TIMEOUT))
  local admin
  admin=$(find_bin mariadb-admin mysqladmin)
  until "$admin" --no-defaults --socket="$MARIADB_SOCKET" -uroot --connect-timeout=2 ping >/dev/null 2>&1 &&
    port_open "$MYSQL_PORT"; do
    if ! pid_alive "$pid"; then
      show_tail "$MARIADB_OUT" 20
      show_tail "$MARIADB_LOG" 40
      die "mariadb: mariadbd $pid exited during startup (log: $MARIADB_LOG)"
    fi
    if ((SECONDS >= deadline)); then
      show_tail "$MARIADB_LOG" 40
      die "mariadb: not answering after ${MYSQL_START_TIMEOUT}s (log: $MARIADB_LOG)"
    fi
    sleep 0.5
  done
}

# Idempotently create the application database and user (ALL on *.*: tests create
# their own creditstream_test_* databases).
provision_mariadb() {
  local host
  {
    echo "CREATE DATABASE IF NOT EXISTS \`$DB_NAME\`;"
    for host in 127.0.0.1 localhost; do
      echo "CREATE USER IF NOT EXISTS '$DB_USER'@'$host' IDENTIFIED BY '$DB_PASSWORD';"
      echo "ALTER USER '$DB_USER'@'$host' IDENTIFIED BY '$DB_PASSWORD';"
      echo "GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'$host';"
    done
  } | mysql_root || die "mariadb: could not create database/user (log: $MARIADB_LOG)"
  "$(find_bin mariadb mysql)" --no-defaults -h"$HOST" -P"$MYSQL_PORT" -u"$DB_USER" -p"$DB_PASSWORD" \
    "$DB_NAME" -e 'SELECT 1' >/dev/null || die "mariadb: cannot log in as $DB_USER over TCP"
}

start_mariadb() {
  local pid
  if pid=$(mariadb_pid); then
    say "mariadb: already running (pid $pid)"
    wait_mariadb_ready "$pid"
    provision_mariadb
    return 0
  fi
  ensure_mariadb
  # The socket path must fit in sun_path (108 bytes).
  ((${#MARIADB_SOCKET} < 100)) || die "mariadb: socket path too long (${#MARIADB_SOCKET} chars): $MARIADB_SOCKET; use a shorter CREDITSTREAM_STATE_DIR"
  require_port_free mariadb "$MYSQL_PORT"
  mkdir -p "$MARIADB_DIR"
  init_mariadb_datadir
  say "mariadb: starting on $HOST:$MYSQL_PORT (socket $MARIADB_SOCKET)"
  # --no-defaults: ignore /etc/mysql; hence the explicit utf8mb4 (Debian's config default).
  spawn "$MARIADB_PIDFILE" "$MARIADB_OUT" "$MARIADBD" --no-defaults --user=root \
    --datadir="$MARIADB_DATA" --socket="$MARIADB_SOCKET" --port="$MYSQL_PORT" \
    --bind-address="$HOST" --pid-file="$MARIADB_PIDFILE" --log-error="$MARIADB_LOG" \
    --innodb-buffer-pool-size=256M --max-connections=500 --skip-name-resolve \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci
  pid=$(<"$MARIADB_PIDFILE")
  wait_mariadb_ready "$pid"
  provision_mariadb
  say "mariadb: ready (pid $pid)"
}

# ---------------------------------------------------------------- prometheus

prometheus_pid() { live_pid "$PROM_PIDFILE" "$PROM_DATA"; }

prometheus_is_ready() {
  local url=http://$HOST:$PROMETHEUS_PORT/-/ready
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null
  else
    timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$PROMETHEUS_PORT &&
      printf 'GET /-/ready HTTP/1.0\r\nHost: $HOST\r\n\r\n' >&3 && head -n 1 <&3 | grep -q ' 200 '" 2>/dev/null
  fi
}

wait_prometheus_ready() {
  local pid=$1 deadline=$((SECONDS + 60))
  until prometheus_is_ready; do
    pid_alive "$pid" || { show_tail "$PROM_LOG"; die "prometheus: process $pid exited (log: $PROM_LOG)"; }
    ((SECONDS < deadline)) || { show_tail "$PROM_LOG"; die "prometheus: not ready after 60s (log: $PROM_LOG)"; }
    sleep 0.5
  done
}

# start_prometheus REQUIRED: with REQUIRED=no a missing config is only reported (up --with-prometheus).
start_prometheus() {
  local required=${1:-yes} pid bin
  if pid=$(prometheus_pid); then
    say "prometheus: already running (pid $pid)"
    wait_prometheus_ready "$pid"
    return 0
  fi
  if [[ ! -f $PROMETHEUS_CONFIG ]]; then
    [[ $required == yes ]] && die "prometheus: config $PROMETHEUS_CONFIG not found"
    say "prometheus: skipped, config $PROMETHEUS_CONFIG not found"
    return 0
  fi
  require_port_free prometheus "$PROMETHEUS_PORT"
  if ! bin=$(find_bin prometheus); then
    apt_install prometheus
    bin=$(find_bin prometheus) || die "prometheus: binary not found after installing the package"
  fi
  mkdir -p "$PROM_DATA"
  say "prometheus: starting on $HOST:$PROMETHEUS_PORT (config $PROMETHEUS_CONFIG)"
  spawn "$PROM_PIDFILE" "$PROM_LOG" "$bin" --config.file="$PROMETHEUS_CONFIG" \
    --storage.tsdb.path="$PROM_DATA" --web.listen-address="$HOST:$PROMETHEUS_PORT"
  pid=$(<"$PROM_PIDFILE")
  wait_prometheus_ready "$pid"
  say "prometheus: ready (pid $pid)"
}

# ---------------------------------------------------------------- per-service dispatch

# NAME: broker-I | controller | mariadb | prometheus (`kafka` is resolved by the commands).
service_pid() {
  case $1 in
    broker-*) broker_pid "${1#broker-}" ;;
    controller) controller_pid ;;
    mariadb) mariadb_pid ;;
    prometheus) prometheus_pid ;;
  esac
}

service_port() {
  case $1 in
    broker-*) broker_port "${1#broker-}" ;;
    controller) echo "$KAFKA_CONTROLLER_PORT" ;;
    mariadb) echo "$MYSQL_PORT" ;;
    prometheus) echo "$PROMETHEUS_PORT" ;;
  esac
}

service_pidfile() {
  case $1 in
    broker-*) broker_pidfile "${1#broker-}" ;;
    controller) echo "$CONTROLLER_PIDFILE" ;;
    mariadb) echo "$MARIADB_PIDFILE" ;;
    prometheus) echo "$PROM_PIDFILE" ;;
  esac
}

service_log() {
  case $1 in
    broker-*) broker_log "${1#broker-}" ;;
    controller) echo "$CONTROLLER_LOG" ;;
    mariadb) echo "$MARIADB_LOG" ;;
    prometheus) echo "$PROM_LOG" ;;
  esac
}

# A NAME of the command line: kafka | broker-I (I in 1..BROKERS) | mariadb | prometheus.
check_name() {
  local name=${1:-}
  if [[ $name =~ ^broker-([1-9][0-9]*)$ ]]; then
    ((BASH_REMATCH[1] <= BROKERS)) ||
      die "no $name: the kafka cluster has $BROKERS broker(s), broker-1..broker-$BROKERS (see '$0 up --brokers N')"
    return 0
  fi
  [[ " ${SERVICES[*]} " == *" $name "* ]] ||
    die "unknown service '$name' (expected one of: ${SERVICES[*]} broker-1..broker-$BROKERS)"
}

# The one process that kill, freeze, thaw and logs act on: `kafka` is broker-1.
one_process() {
  if [[ $1 == kafka ]]; then echo broker-1; else echo "$1"; fi
}

start_service() {
  case $1 in
    kafka) start_kafka ;;
    broker-*) start_broker "${1#broker-}" ;;
    mariadb) start_mariadb ;;
    prometheus) start_prometheus yes ;;
  esac
}

# stop_service NAME SIGNAL: TERM waits up to STOP_TIMEOUT then escalates; KILL is immediate.
# Either way it returns once the process has exited.
stop_service() {
  local name=$1 signal=$2 pid
  if [[ $name == kafka ]]; then
    stop_brokers "$signal"
    return 0
  fi
  if ! pid=$(service_pid "$name"); then
    say "$name: not running"
    rm -f "$(service_pidfile "$name")"
    return 0
  fi
  say "$name: sending SIG$signal to pid $pid"
  terminate "$name" "$pid" "$signal" "$STOP_TIMEOUT"
  rm -f "$(service_pidfile "$name")"
  say "$name: stopped"
}

# Send SIGNAL to a running service without waiting for anything (freeze and thaw).
signal_service() {
  local name=$1 signal=$2 pid
  pid=$(service_pid "$name") || die "$name: not running"
  kill "-$signal" "$pid"
  say "$name: sent SIG$signal to pid $pid"
}

# ---------------------------------------------------------------- commands

# Serialise commands that change state (parallel test jobs may call start/stop).
take_lock() {
  exec 9>"$STATE_DIR/.stack.lock"
  flock -w 600 9 || die "another stack.sh is still running (lock $STATE_DIR/.stack.lock)"
}

print_logs_hint() {
  say "logs: kafka      $(broker_log 1) (controller: $CONTROLLER_LOG)"
  if ((BROKERS > 1)); then
    say "      broker-I   $KAFKA_DIR/broker-I/server.log (I in 2..$BROKERS)"
  fi
  say "      mariadb    $MARIADB_LOG"
  say "      prometheus $PROM_LOG"
  say "      (or: scripts/stack.sh logs NAME [-f])"
}

cmd_up() {
  local with_prometheus=no brokers=$BROKERS kafka_only=no
  while (($# > 0)); do
    case $1 in
      --with-prometheus) with_prometheus=yes ;;
      --kafka-only) kafka_only=yes ;;
      --brokers)
        if [[ $# -lt 2 ]] || ! valid_broker_count "$2"; then
          die "up: --brokers takes a broker count, 1..$MAX_BROKERS"
        fi
        brokers=$2
        shift
        ;;
      *) die "usage: $0 up [--brokers N] [--with-prometheus] [--kafka-only]" ;;
    esac
    shift
  done
  local started=$SECONDS pid
  if [[ $kafka_only == yes ]]; then
    start_kafka "$brokers"
    say "kafka is up in $((SECONDS - started))s: $(bootstrap_servers) ($BROKERS broker(s)); state: $STATE_DIR"
    return 0
  fi
  start_mariadb
  start_kafka "$brokers"
  if [[ $with_prometheus == yes ]]; then
    start_prometheus no
  elif pid=$(prometheus_pid); then
    say "prometheus: running (pid $pid)"
  fi
  say "stack is up in $((SECONDS - started))s: kafka $(bootstrap_servers) ($BROKERS broker(s)), mariadb $HOST:$MYSQL_PORT (db $DB_NAME, user $DB_USER/$DB_PASSWORD)"
  say "state: $STATE_DIR"
  print_logs_hint
}

cmd_down() {
  stop_service prometheus TERM
  stop_kafka_processes
  stop_service mariadb TERM
  say "stack is down (data kept in $STATE_DIR)"
}

cmd_status() {
  local name names=() pid port state all_up=yes i
  for ((i = 1; i <= BROKERS; i++)); do names+=("broker-$i"); done
  names+=(controller mariadb prometheus)
  for name in "${names[@]}"; do
    port=$(service_port "$name")
    if pid=$(service_pid "$name"); then
      # Process alive but port still closed: booting (or wedged).
      if process_frozen "$pid"; then
        state=frozen
      elif port_open "$port"; then
        state=up
      else
        state=starting
      fi
      printf '%-11s %-9s pid %-8s %s:%s\n' "$name" "$state" "$pid" "$HOST" "$port"
    else
      state=down
      printf '%-11s %-9s\n' "$name" down
    fi
    if [[ $name != prometheus && $state != up ]]; then all_up=no; fi
  done
  printf 'state dir   %s\n' "$STATE_DIR"
  [[ $all_up == yes ]] || exit 3
}

cmd_logs() {
  local name=${1:-}
  if [[ -z $name ]]; then
    print_logs_hint
    return 0
  fi
  check_name "$name"
  local file
  file=$(service_log "$(one_process "$name")")
  [[ -f $file ]] || die "$name: no log yet ($file)"
  if [[ ${2:-} == -f ]]; then
    exec tail -n 50 -F "$file"
  fi
  tail -n "${STACK_LOG_LINES:-100}" "$file"
}

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  set_paths
  case $cmd in
    up) take_lock; cmd_up "$@" ;;
    down) take_lock; cmd_down ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    start) check_name "${1:-}"; take_lock; start_service "$1" ;;
    stop) check_name "${1:-}"; take_lock; stop_service "$1" TERM ;;
    kill) check_name "${1:-}"; take_lock; stop_service "$(one_process "$1")" KILL ;;
    freeze) check_name "${1:-}"; signal_service "$(one_process "$1")" STOP ;;
    thaw) check_name "${1:-}"; signal_service "$(one_process "$1")" CONT ;;
    brokers) cmd_brokers ;;
    bootstrap) bootstrap_servers ;;
    leader) cmd_leader "$@" ;;
    coordinator) cmd_coordinator "$@" ;;
    isr-full) cmd_isr_full ;;
    tool)
      [[ $# -gt 0 ]] || die "usage: $0 tool CLASS [ARGS...]"
      require_kafka_libs
      kafka_tool "$@"
      ;;
    -h | --help | help) usage ;;
    '') usage; exit 2 ;;
    *) usage >&2; die "unknown command '$cmd'" ;;
  esac
}

main "$@"
