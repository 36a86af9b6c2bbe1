#!/usr/bin/env bash
# scripts/stack.sh - local creditstream stack without Docker.
#
# Runs, as plain background processes owned by the current user (root on CI):
#   kafka       Apache Kafka 4.3.1 in KRaft mode, jars from Maven Central: one controller process
#               and one broker process (a broker killed uncleanly then finds its controller up,
#               as in production; in one combined process the restarted broker briefly lists
#               its partitions without a leader, and the transaction coordinator then skips
#               their commit/abort markers, which leaves "hanging" transactions behind)
#   mariadb     Debian's MariaDB, a private instance with its own datadir, socket and port
#   prometheus  Debian's Prometheus (optional: `up --with-prometheus` or `start prometheus`)
# Missing Debian packages (JDK 17, Maven, MariaDB, Prometheus) are installed with apt-get.
# No systemd/init and no system-wide service is used.
#
# Usage:
#   scripts/stack.sh up [--with-prometheus]   start kafka + mariadb (+ prometheus), wait until ready
#   scripts/stack.sh down                     stop everything (SIGTERM, then SIGKILL after a timeout)
#   scripts/stack.sh status                   show each service; exit 0 if kafka and mariadb are up, else 3
#   scripts/stack.sh logs [NAME] [-f]         list log files, or tail (follow with -f) one service's log
#   scripts/stack.sh start NAME               start one service and wait until it is ready
#   scripts/stack.sh stop NAME                stop one service gracefully (SIGTERM)
#   scripts/stack.sh kill NAME                SIGKILL one service (fault tests; kafka: the broker)
#   scripts/stack.sh freeze NAME              SIGSTOP one service: alive, sockets open, silent (fault tests)
#   scripts/stack.sh thaw NAME                SIGCONT a frozen service
#   scripts/stack.sh tool CLASS [ARGS...]     run a Kafka tool class on the broker's classpath, e.g.
#                                             tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
#   NAME is one of kafka | mariadb | prometheus. Every command is idempotent.
#
# Environment overrides (defaults in brackets):
#   CREDITSTREAM_STATE_DIR  [<repo>/.state]  data, logs, pid files
#   KAFKA_PORT              [9092]  PLAINTEXT listener on 127.0.0.1
#   KAFKA_CONTROLLER_PORT   [9093]  KRaft controller listener on 127.0.0.1
#   MYSQL_PORT              [3306]  MariaDB TCP port on 127.0.0.1
#   PROMETHEUS_PORT         [9090]  Prometheus web port on 127.0.0.1
#   PROMETHEUS_CONFIG       [<repo>/config/prometheus.yml]
#   KAFKA_HEAP_OPTS         [-Xmx1g -Xms256m]
#   KAFKA_START_TIMEOUT     [120]   seconds to wait for Kafka to become ready
#   MYSQL_START_TIMEOUT     [60]    seconds to wait for MariaDB to answer
#   STOP_TIMEOUT            [60]    seconds to wait after SIGTERM before SIGKILL
#
# Connection details once up:
#   Kafka    bootstrap.servers=127.0.0.1:9092
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
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx1g -Xms256m}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-120}
MYSQL_START_TIMEOUT=${MYSQL_START_TIMEOUT:-60}
STOP_TIMEOUT=${STOP_TIMEOUT:-60}

HOST=127.0.0.1
SERVICES=(kafka mariadb prometheus)
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
  KAFKA_DATA=$KAFKA_DIR/broker-data
  KAFKA_CONFIG=$KAFKA_DIR/server.properties
  CONTROLLER_DIR=$KAFKA_DIR/controller
  CONTROLLER_DATA=$CONTROLLER_DIR/data
  CONTROLLER_CONFIG=$CONTROLLER_DIR/controller.properties
  CONTROLLER_PIDFILE=$CONTROLLER_DIR/controller.pid
  CONTROLLER_LOG=$CONTROLLER_DIR/server.log
  CONTROLLER_OUT=$CONTROLLER_DIR/controller.out
  KAFKA_ADMIN_CONFIG=$KAFKA_DIR/admin-client.properties
  KAFKA_PIDFILE=$KAFKA_DIR/kafka.pid
  KAFKA_LOG=$KAFKA_DIR/server.log   # written by log4j2 (see scripts/kafka/log4j2.properties)
  KAFKA_OUT=$KAFKA_DIR/kafka.out    # JVM stdout/stderr: crashes, bad options

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

# (Re)write the controller's and the broker's configs on every start so edits to this
# script take effect.
write_kafka_config() {
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
# A broker that stops heartbeating is fenced after 2 s. A broker killed and restarted
# then finds itself fenced in the first metadata it loads, instead of publishing itself as
# the leader of everything until its new registration fences it: in that window its
# transaction coordinator can resend commit/abort markers, find the data partitions
# without a leader, and skip them for good (Kafka treats them as deleted), which leaves
# hanging transactions that stop every read_committed reader.
broker.session.timeout.ms=2000
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=true
EOF
  cat >"$KAFKA_CONFIG" <<EOF
# Generated by scripts/stack.sh on every start - edit the script, not this file.
# The broker; its controller runs in another process ($CONTROLLER_CONFIG).
process.roles=broker
node.id=2
controller.quorum.bootstrap.servers=$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DATA
# Heartbeats well inside the controller's 2 s broker session.
broker.heartbeat.interval.ms=300

# Topics are created explicitly by the application/tests.
auto.create.topics.enable=false
num.partitions=1

# One broker: every internal topic must accept replication factor / ISR of 1,
# otherwise transactions and consumer groups never become available.
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Do not wait 3 s for more members before the first consumer-group rebalance.
group.initial.rebalance.delay.ms=0
# Processor replicas use a 3 s session timeout so a failed replica's tasks move within
# seconds (the broker's default floor is 6 s). Timed-out transactions (a replica killed
# mid-transaction) are aborted within a second of their timeout, not ten.
group.min.session.timeout.ms=1000
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000

# ACLs are enforced, but with none defined everyone may do everything (every client here
# is User:ANONYMOUS). tests/authorization.rs adds a DENY on its own topic to see how the
# system takes an authorization error.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=true
EOF
  cat >"$KAFKA_ADMIN_CONFIG" <<EOF
# Admin-client settings for readiness checks by scripts/stack.sh: fail fast, retry in the script.
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

# Format the controller's and the broker's storage once, with one cluster id (the
# controller as a standalone, dynamic single-voter quorum).
format_kafka_storage() {
  [[ -f $KAFKA_DATA/meta.properties && -f $CONTROLLER_DATA/meta.properties ]] && return 0
  if [[ -d $KAFKA_DIR/data ]]; then
    warn "kafka: $KAFKA_DIR/data holds a single-process (combined) broker of an older stack; it is no longer used (remove it to free the space)"
  fi
  local cluster_id
  cluster_id=$(kafka_tool kafka.tools.StorageTool random-uuid 2>>"$KAFKA_DIR/format.log" | tail -n 1)
  [[ $cluster_id =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka: could not generate a cluster id (got '$cluster_id')"
  say "kafka: formatting storage in $CONTROLLER_DATA and $KAFKA_DATA (cluster id $cluster_id)"
  rm -rf "$CONTROLLER_DATA" "$KAFKA_DATA"
  mkdir -p "$CONTROLLER_DATA" "$KAFKA_DATA"
  if ! kafka_tool kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$CONTROLLER_CONFIG" \
    >>"$KAFKA_DIR/format.log" 2>&1 ||
    ! kafka_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_CONFIG" >>"$KAFKA_DIR/format.log" 2>&1; then
    show_tail "$KAFKA_DIR/format.log"
    die "kafka: storage format failed (log: $KAFKA_DIR/format.log)"
  fi
  echo "$cluster_id" >"$KAFKA_DIR/cluster.id"
}

controller_pid() { live_pid "$CONTROLLER_PIDFILE" "$CONTROLLER_CONFIG"; }

# The controller runs on while the broker is killed, frozen or restarted.
start_controller() {
  local pid deadline
  if pid=$(controller_pid); then
    return 0
  fi
  require_port_free kafka-controller "$KAFKA_CONTROLLER_PORT"
  say "kafka: starting the controller on $HOST:$KAFKA_CONTROLLER_PORT"
  spawn "$CONTROLLER_PIDFILE" "$CONTROLLER_OUT" java -Xmx256m -Xms64m -server -XX:+UseG1GC \
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

kafka_pid() { live_pid "$KAFKA_PIDFILE" "$KAFKA_CONFIG"; }

kafka_is_ready() {
  port_open "$KAFKA_PORT" || return 1
  kafka_tool_with_timeout 60 org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" \
    --command-config "$KAFKA_ADMIN_CONFIG" --list >/dev/null 2>>"$KAFKA_DIR/readiness.log"
}

# Poll until the broker answers an admin request (listing topics), not just a TCP connect.
wait_kafka_ready() {
  local pid=$1 deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  : >"$KAFKA_DIR/readiness.log"
  until kafka_is_ready; do
    if ! pid_alive "$pid"; then
      show_tail "$KAFKA_OUT" 20
      show_tail "$KAFKA_LOG" 60
      die "kafka: broker process $pid exited during startup (logs: $KAFKA_LOG, $KAFKA_OUT)"
    fi
    if ((SECONDS >= deadline)); then
      show_tail "$KAFKA_LOG" 60
      show_tail "$KAFKA_DIR/readiness.log" 10
      die "kafka: not ready after ${KAFKA_START_TIMEOUT}s (pid $pid still running; log: $KAFKA_LOG)"
    fi
    sleep 1
  done
}

start_kafka() {
  local pid
  if pid=$(kafka_pid); then
    say "kafka: already running (pid $pid)"
    wait_kafka_ready "$pid"
    return 0
  fi
  require_port_free kafka "$KAFKA_PORT"
  ensure_java
  mkdir -p "$KAFKA_DIR"
  ensure_kafka_libs
  write_kafka_config
  format_kafka_storage
  start_controller
  # The broker's copy of the cluster metadata is only a cache of the controller's: dropping
  # it makes the broker load the controller's current view (itself fenced, after a kill)
  # rather than replay a stale one in which it still leads every partition.
  rm -rf "$KAFKA_DATA/__cluster_metadata-0"
  say "kafka: starting broker on $HOST:$KAFKA_PORT (controller $HOST:$KAFKA_CONTROLLER_PORT)"
  # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS holds several JVM flags
  spawn "$KAFKA_PIDFILE" "$KAFKA_OUT" java $KAFKA_HEAP_OPTS -server \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dkafka.logs.dir="$KAFKA_DIR" -Dlog4j2.configurationFile="$KAFKA_LOG4J" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONFIG"
  pid=$(<"$KAFKA_PIDFILE")
  wait_kafka_ready "$pid"
  say "kafka: ready (pid $pid)"
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

service_pid() {
  case $1 in
    kafka) kafka_pid ;;
    mariadb) mariadb_pid ;;
    prometheus) prometheus_pid ;;
  esac
}

service_port() {
  case $1 in
    kafka) echo "$KAFKA_PORT" ;;
    mariadb) echo "$MYSQL_PORT" ;;
    prometheus) echo "$PROMETHEUS_PORT" ;;
  esac
}

service_pidfile() {
  case $1 in
    kafka) echo "$KAFKA_PIDFILE" ;;
    mariadb) echo "$MARIADB_PIDFILE" ;;
    prometheus) echo "$PROM_PIDFILE" ;;
  esac
}

service_log() {
  case $1 in
    kafka) echo "$KAFKA_LOG" ;;
    mariadb) echo "$MARIADB_LOG" ;;
    prometheus) echo "$PROM_LOG" ;;
  esac
}

check_name() {
  [[ " ${SERVICES[*]} " == *" ${1:-} "* ]] || die "unknown service '${1:-}' (expected one of: ${SERVICES[*]})"
}

start_service() {
  case $1 in
    kafka) start_kafka ;;
    mariadb) start_mariadb ;;
    prometheus) start_prometheus yes ;;
  esac
}

# stop_service NAME SIGNAL: TERM waits up to STOP_TIMEOUT then escalates; KILL is immediate.
stop_service() {
  local name=$1 signal=$2 pid
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
  say "logs: kafka      $KAFKA_LOG (controller: $CONTROLLER_LOG)"
  say "      mariadb    $MARIADB_LOG"
  say "      prometheus $PROM_LOG"
  say "      (or: scripts/stack.sh logs NAME [-f])"
}

cmd_up() {
  local with_prometheus=no
  case ${1:-} in
    '') ;;
    --with-prometheus) with_prometheus=yes ;;
    *) die "usage: $0 up [--with-prometheus]" ;;
  esac
  local started=$SECONDS pid
  start_mariadb
  start_kafka
  if [[ $with_prometheus == yes ]]; then
    start_prometheus no
  elif pid=$(prometheus_pid); then
    say "prometheus: running (pid $pid)"
  fi
  say "stack is up in $((SECONDS - started))s: kafka $HOST:$KAFKA_PORT, mariadb $HOST:$MYSQL_PORT (db $DB_NAME, user $DB_USER/$DB_PASSWORD)"
  say "state: $STATE_DIR"
  print_logs_hint
}

cmd_down() {
  local name
  for name in prometheus kafka mariadb; do
    stop_service "$name" TERM
  done
  stop_controller
  say "stack is down (data kept in $STATE_DIR)"
}

cmd_status() {
  local name pid port state all_up=yes
  for name in "${SERVICES[@]}"; do
    port=$(service_port "$name")
    if pid=$(service_pid "$name"); then
      # Process alive but port still closed: booting (or wedged).
      if port_open "$port"; then state=up; else state=starting; fi
      printf '%-11s %-9s pid %-8s %s:%s\n' "$name" "$state" "$pid" "$HOST" "$port"
    else
      state=down
      printf '%-11s %-9s\n' "$name" down
    fi
    if [[ $name != prometheus && $state != up ]]; then all_up=no; fi
  done
  if pid=$(controller_pid); then
    printf '%-11s %-9s pid %-8s %s:%s\n' controller up "$pid" "$HOST" "$KAFKA_CONTROLLER_PORT"
  else
    printf '%-11s %-9s\n' controller down
    all_up=no
  fi
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
  file=$(service_log "$name")
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
    kill) check_name "${1:-}"; take_lock; stop_service "$1" KILL ;;
    freeze) check_name "${1:-}"; signal_service "$1" STOP ;;
    thaw) check_name "${1:-}"; signal_service "$1" CONT ;;
    tool)
      [[ $# -gt 0 ]] || die "usage: $0 tool CLASS [ARGS...]"
      compgen -G "$KAFKA_LIBS/*.jar" >/dev/null || die "kafka jars not resolved yet; run '$0 up' first"
      kafka_tool "$@"
      ;;
    -h | --help | help) usage ;;
    '') usage; exit 2 ;;
    *) usage >&2; die "unknown command '$cmd'" ;;
  esac
}

main "$@"
