# The HA layout's helpers for scripts/ha-test (sourced after
# scripts/lib/compose.sh): where the RabbitMQ queues lead, what the
# sentinels say, what HAProxy routes to, the probe that records every
# answer, the faults with their recovery times, and the checks of the
# probe and of HAProxy's log.

now() { date +%s.%N; }
# Seconds from $1 to $2 (or to now), one decimal.
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "${2:-$(now)}"; }

# Polls a command until it succeeds, like wait_for, but every 0.2 s (the
# recovery times are measured with it).
wait_fast() {
  local limit=$1 what=$2
  shift 2
  local until=$(($(date +%s) + limit))
  until "$@" >/dev/null 2>&1; do
    (($(date +%s) < until)) || fail "$what: not after ${limit}s"
    sleep 0.2
  done
}

# The container of a one-replica service (stopped ones too).
node_container() { containers "$1" -a | head -1; }

# --- RabbitMQ -------------------------------------------------------------------------
RABBIT_NODES=(rabbitmq rabbitmq-2 rabbitmq-3)
# The nodes a node sees running in its cluster, one a line.
running_nodes() {
  docker exec "$1" rabbitmqctl -q cluster_status --formatter json 2>/dev/null |
    python3 -c 'import json, sys; print("\n".join(sorted(json.load(sys.stdin).get("running_nodes", []))))'
}
# Whether the node in container $2 sees $1 running nodes (and no partition).
cluster_running() {
  local json
  json=$(docker exec "$2" rabbitmqctl -q cluster_status --formatter json 2>/dev/null) || return 1
  python3 -c '
import json, sys
s = json.loads(sys.argv[1])
sys.exit(0 if len(s.get("running_nodes", [])) == int(sys.argv[2]) and not s.get("partitions") else 1)' "$json" "$1"
}
# A running RabbitMQ node's container other than $1 (a service name).
other_rabbit() {
  local s c
  for s in "${RABBIT_NODES[@]}"; do
    [[ $s == "${1:-}" ]] && continue
    c=$(node_container "$s")
    if running "$c" && docker exec "$c" rabbitmq-diagnostics -q check_running >/dev/null 2>&1; then
      echo "$c"
      return 0
    fi
  done
  return 1
}
# The service whose node leads queue $1 of the vhost alias (asked of the
# node in container $2, or of any running node other than $3).
queue_leader() {
  local via=${2:-}
  [[ -n "$via" ]] || via=$(other_rabbit "${3:-}") || return 1
  docker exec "$via" rabbitmqctl -q list_queues -p alias name leader 2>/dev/null |
    awk -v q="$1" '$1 == q {sub(/^rabbit@/, "", $2); print $2}'
}
# Whether queue $1 is led by a node other than service $2 (asked of
# another node than $2).
leader_moved() {
  local l
  l=$(queue_leader "$1" "" "$2") || return 1
  [[ -n "$l" && "$l" != "$2" ]]
}

# --- Redis ------------------------------------------------------------------------------
SENTINELS=(sentinel-1 sentinel-2 sentinel-3)
# The primary as the sentinel $1 (default sentinel-1) names it.
redis_master() {
  docker exec "$(node_container "${1:-sentinel-1}")" redis-cli -p 26379 sentinel get-master-addr-by-name alias 2>/dev/null | head -1
}
# Whether every sentinel names $1 the primary and $2 is its replica, in
# sync (master_link_status up).
redis_pair_ok() {
  local s
  for s in "${SENTINELS[@]}"; do [[ "$(redis_master "$s")" == "$1" ]] || return 1; done
  docker exec "$(node_container "$1")" redis-cli info replication | grep -q '^role:master' || return 1
  docker exec "$(node_container "$2")" redis-cli info replication | grep -q '^master_link_status:up'
}

# --- HAProxy ------------------------------------------------------------------------------
# HAProxy's view of the gateways (its stats page, on the network only):
# "server address status" lines for the servers that have an address.
lb_servers() {
  docker exec "$(gateway_container)" curl -fsS --max-time 3 'http://lb:8404/stats;csv' 2>/dev/null |
    awk -F, '$1 == "gateways" && $2 != "BACKEND" && $2 != "FRONTEND" && $74 != "" {print $2, $74, $18}'
}
lb_servers_up() { (($(lb_servers | awk '$3 == "UP"' | wc -l) == $1)); }
lb_answering() {
  local i
  for i in 1 2 3 4; do
    docker exec "$(gateway_container)" curl -fsS -o /dev/null --max-time 3 http://lb:8080/readyz || return 1
  done
  lb_servers | awk '$3 == "UP" {print $1 "=" $2}'
}
# Every gateway, processor and pusher answers /readyz.
services_ready() {
  local c
  for c in $(containers gateway); do
    docker exec "$c" curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:8080/readyz || return 1
  done
  workers_ready
}

# --- throughput -------------------------------------------------------------------------------
# $N transfers of $DUMP_MIB MiB started at once; RATE: transfers/min from
# the start of the first demo to the end of the last transfer.
throughput() {
  local t0 took
  t0=$(now)
  ALIAS_COMPOSE_TEST_DUMP_MIB=$DUMP_MIB start_transfers "$N"
  wait_transfers 900
  took=$(since "$t0")
  RATE=$(python3 -c "import sys; print(f'{int(sys.argv[1]) * 60 / float(sys.argv[2]):.1f}')" "$N" "$took")
  log "$1: $N transfers of $DUMP_MIB MiB in ${took}s: $RATE transfers/min"
}

# --- the probe --------------------------------------------------------------------------------
# A container of the image that stores a 2 KiB dump (probe-1.zip, …)
# through HAProxy every ~0.3 s until /tmp/stop exists, logging each answer
# ("probe N ok|fail START END"), then the user's listing ("list {json}").
PROBE="$PROJECT-probe"
start_probe() {
  docker rm -f "$PROBE" >/dev/null 2>&1 || true
  dc run -d -T --no-deps --name "$PROBE" --entrypoint sh demo -c '
aliasctl keygen --out /tmp/probe.key >/dev/null || exit 1
head -c 2048 /dev/urandom >/tmp/probe.bin
i=0
while [ ! -e /tmp/stop ]; do
  i=$((i + 1))
  t=$(date +%s.%N)
  if out=$(aliasctl dump upload --key /tmp/probe.key --gateway http://lb:8080 --provider google \
      --name "probe-$i.zip" --quiet /tmp/probe.bin 2>&1); then
    echo "probe $i ok $t $(date +%s.%N)"
  else
    echo "probe $i fail $t $(date +%s.%N) $(echo "$out" | tail -1 | cut -c1-160)"
  fi
  sleep 0.2
done
for n in $(seq 1 60); do
  if out=$(aliasctl dump list --key /tmp/probe.key --gateway http://lb:8080 2>&1); then
    echo "list $(echo "$out" | tr -d "\n")"
    exit 0
  fi
  sleep 1
done
echo "list-failed $out"
exit 1' >/dev/null
  wait_for 30 "the probe's first answer" sh -c "docker logs $PROBE 2>&1 | grep -q '^probe 1 '"
  log "probe started: $(docker logs "$PROBE" 2>&1 | head -1)"
}
stop_probe() {
  docker exec "$PROBE" touch /tmp/stop
  local rc
  rc=$(docker wait "$PROBE")
  docker logs "$PROBE" >"$CACHE/ha-probe.log" 2>&1
  docker rm "$PROBE" >/dev/null
  [[ "$rc" == 0 ]] || { tail -3 "$CACHE/ha-probe.log"; fail "the probe ended $rc"; }
}
# The first probe answered 2xx that was sent after $1 (seconds since the
# epoch): its end, or nothing yet.
probe_ok_after() {
  docker logs "$PROBE" 2>&1 | awk -v t="$1" '$1 == "probe" && $3 == "ok" && $4 > t {print $5; exit}'
}
probe_ok_since() { [[ -n "$(probe_ok_after "$1")" ]]; }
# Probe requests that failed, sent between $1 and $2.
probe_failed_between() {
  docker logs "$PROBE" 2>&1 | awk -v a="$1" -v b="$2" '$1 == "probe" && $3 == "fail" && $4 >= a && $4 <= b' | wc -l
}
# Every dump the probe was answered 2xx for is in the bank's listing.
check_probe() {
  python3 - "$CACHE/ha-probe.log" <<'PY' || fail "the probe's dumps do not check out"
import json, sys
ok, failed, listed = set(), [], None
for line in open(sys.argv[1]):
    parts = line.split(None, 5)
    if parts[:1] == ["probe"]:
        (ok.add(f"probe-{parts[1]}.zip") if parts[2] == "ok" else failed.append(line.strip()))
    elif parts[:1] == ["list"]:
        listed = {d["name"] for d in json.loads(line[5:])["dumps"]}
if listed is None:
    sys.exit("no listing")
lost = sorted(ok - listed, key=lambda n: int(n[len("probe-"):-len(".zip")]))
print(f"   probe: {len(ok)} dumps stored with a 2xx answer, {len(failed)} requests failed, {len(ok & listed)} of the {len(ok)} listed afterwards")
for f in failed[:12]:
    print(f"     failed: {f[:150]}")
if lost:
    print(f"   FAIL lost after a 2xx: {', '.join(lost[:20])}")
sys.exit(1 if lost else 0)
PY
}
# HAProxy's log holds every answer a gateway gave through it: every 2xx to a
# probe dump is listed by the bank (check_probe's listing), and there are as
# many 2xx answers to POST /alias/process as accepted transfers of the HA
# layout, every one of them checked done above.
check_lb_log() {
  docker logs "$(node_container lb)" >"$CACHE/ha-lb.log" 2>&1
  python3 - "$CACHE/ha-lb.log" "$CACHE/ha-probe.log" "${#IDS[@]}" <<'PY' || fail "HAProxy's log does not check out"
import collections, json, re, sys
line_re = re.compile(r'\] \S+ (\S+) \S+ (\d{3}) .*"(\S+) (\S+) HTTP/')
listed = set()
for line in open(sys.argv[2]):
    if line.startswith("list "):
        listed = {d["name"] for d in json.loads(line[5:])["dumps"]}
status = collections.Counter()
put_2xx, process_2xx, errors = set(), 0, []
for line in open(sys.argv[1]):
    m = line_re.search(line)
    if not m:
        continue
    server, code, method, path = m.groups()
    status[code[0] + "xx"] += 1
    if not code.startswith("2"):
        continue
    if method == "PUT" and path.startswith("/alias/dumps/google/probe-"):
        put_2xx.add(path.rsplit("/", 1)[1])
    elif method == "POST" and path == "/alias/process":
        process_2xx += 1
missing = sorted(put_2xx - listed)
if missing:
    errors.append(f"2xx in HAProxy's log, not in the bank: {', '.join(missing[:20])}")
accepted = int(sys.argv[3])
if process_2xx != accepted:
    errors.append(f"{process_2xx} POST /alias/process answered 2xx through HAProxy, {accepted} accepted transfers checked")
print(f"   HAProxy's log: {sum(status.values())} answers ({', '.join(f'{k} {v}' for k, v in sorted(status.items()))}); "
      f"{len(put_2xx)} probe dumps and {process_2xx} transfers answered 2xx, all found")
for e in errors:
    print(f"   FAIL {e}")
sys.exit(1 if errors else 0)
PY
}

# --- the faults ---------------------------------------------------------------------------------
# Each measures from the moment of the fault (t0) and adds a line to SUMMARY.

fault_rabbitmq_leader() {
  local svc push_leader victim t0 t_elect t_ready t_start t_back
  svc=$(queue_leader alias.process) || fail "no leader for alias.process"
  push_leader=$(queue_leader alias.push)
  victim=$(node_container "$svc")
  log "alias.process is led by $svc, alias.push by $push_leader: killing $victim"
  t0=$(now)
  docker kill "$victim" >/dev/null
  wait_fast 120 "alias.process led by another node" leader_moved alias.process "$svc"
  wait_fast 120 "alias.push led by a running node" leader_moved alias.push "$svc"
  t_elect=$(since "$t0")
  log "new leaders after ${t_elect}s: alias.process $(queue_leader alias.process "" "$svc"), alias.push $(queue_leader alias.push "" "$svc")"
  wait_fast 180 "every gateway and worker ready" services_ready
  t_ready=$(since "$t0")
  log "every gateway and worker ready after ${t_ready}s"
  t_start=$(now)
  docker start "$victim" >/dev/null
  wait_for 240 "$svc healthy again" healthy "$victim"
  wait_fast 120 "3 running nodes" cluster_running 3 "$victim"
  t_back=$(since "$t_start")
  fault_done
  SUMMARY+=("RabbitMQ node leading the queues ($svc) killed: new queue leaders ${t_elect}s, every service ready ${t_ready}s; restarted, back in the cluster ${t_back}s")
}

fault_redis_primary() {
  local master replica victim t0 t_promote t_write t_start t_back
  master=$(redis_master)
  [[ -n "$master" ]] || fail "the sentinels name no primary"
  if [[ $master == redis ]]; then replica=redis-replica; else replica=redis; fi
  victim=$(node_container "$master")
  log "the primary is $master: killing $victim"
  t0=$(now)
  docker kill "$victim" >/dev/null
  wait_fast 120 "the sentinels promote $replica" sh -c "[ \"\$(docker exec $(node_container sentinel-1) redis-cli -p 26379 sentinel get-master-addr-by-name alias | head -1)\" = $replica ]"
  t_promote=$(since "$t0")
  log "the sentinels named $replica the primary after ${t_promote}s"
  if [[ $INFRA_ONLY == 0 ]]; then
    wait_fast 180 "a probe answered 2xx after the kill" probe_ok_since "$t0"
    t_write=$(since "$t0" "$(probe_ok_after "$t0")")
    log "first dump stored through HAProxy after ${t_write}s"
  fi
  t_start=$(now)
  docker start "$victim" >/dev/null
  wait_for 120 "$master healthy again" healthy "$victim"
  wait_fast 120 "$master back as the replica of $replica" redis_pair_ok "$replica" "$master"
  t_back=$(since "$t_start")
  fault_done
  SUMMARY+=("Redis primary ($master) killed: replica promoted ${t_promote}s${t_write:+, writes through HAProxy again ${t_write}s}; restarted, in sync as the replica ${t_back}s")
}

fault_gateway() {
  local victim t0 t_out t_start t_back failed
  victim=$(containers gateway | head -1)
  log "killing $victim"
  t0=$(now)
  docker kill "$victim" >/dev/null
  GATEWAY=""
  wait_fast 60 "HAProxy takes $victim out" lb_servers_up 1
  t_out=$(since "$t0")
  log "HAProxy took it out of the rotation after ${t_out}s"
  t_start=$(now)
  docker start "$victim" >/dev/null
  wait_for 120 "$victim healthy again" healthy "$victim"
  wait_fast 60 "HAProxy routes to both gateways" lb_servers_up 2
  t_back=$(since "$t_start")
  failed=$(probe_failed_between "$t0" "$(now)")
  fault_done
  SUMMARY+=("gateway killed: out of HAProxy's rotation ${t_out}s, $failed probe request(s) failed meanwhile; restarted, routed to again ${t_back}s")
}

fault_partition() {
  local svc victim peer t0 t_seen t_elect t_heal t_ready t1
  svc=$(queue_leader alias.push 2>/dev/null) || true
  [[ -n "$svc" ]] || svc=rabbitmq-3
  victim=$(node_container "$svc")
  log "cutting $svc ($victim) off $NETWORK"
  t0=$(now)
  docker network disconnect "$NETWORK" "$victim"
  peer=$(other_rabbit "$svc")
  wait_fast 120 "the other nodes see $svc gone" cluster_running 2 "$peer"
  t_seen=$(since "$t0")
  log "the majority lost $svc after ${t_seen}s"
  if [[ $INFRA_ONLY == 0 ]]; then
    wait_fast 120 "alias.push led on the majority's side" leader_moved alias.push "$svc"
    wait_fast 120 "alias.process led on the majority's side" leader_moved alias.process "$svc"
    t_elect=$(since "$t0")
    wait_fast 180 "every gateway and worker ready" services_ready
    t_ready=$(since "$t0")
    log "leaders on the majority's side ${t_elect}s, every service ready ${t_ready}s"
  fi
  # The minority side stops serving: it accepts nothing the majority
  # would not know of.
  wait_fast 180 "$svc pauses (pause_minority)" sh -c "! docker exec $victim rabbitmq-diagnostics -q check_running"
  log "$svc paused itself ($(since "$t0")s after the cut)"
  t1=$(now)
  docker network connect --alias "$svc" "$NETWORK" "$victim"
  wait_fast 180 "$svc back in the cluster" cluster_running 3 "$peer"
  wait_fast 120 "$svc running again" docker exec "$victim" rabbitmq-diagnostics -q check_running
  t_heal=$(since "$t1")
  fault_done
  SUMMARY+=("RabbitMQ node $svc partitioned: lost by the majority ${t_seen}s${t_elect:+, queue leaders on the majority ${t_elect}s, every service ready ${t_ready}s}; reconnected, back in the cluster ${t_heal}s")
}

# --infra-only: the engines' side of the faults, without alias-bank.
infra_faults() {
  phase faults
  local victim t0 t_back
  fault "a RabbitMQ node is killed (and started again)"
  victim=$(node_container rabbitmq)
  t0=$(now)
  docker kill "$victim" >/dev/null
  wait_fast 120 "the others see 2 running nodes" cluster_running 2 "$(other_rabbit rabbitmq)"
  log "the other nodes lost it after $(since "$t0")s"
  t0=$(now)
  docker start "$victim" >/dev/null
  wait_fast 240 "3 running nodes" cluster_running 3 "$victim"
  t_back=$(since "$t0")
  fault_done
  SUMMARY+=("RabbitMQ node killed, restarted: back in the cluster ${t_back}s")
  fault "the Redis primary is killed (the sentinels promote its replica)"
  fault_redis_primary
  fault "a RabbitMQ node is cut off the network (a partition), then reconnected"
  fault_partition
}
