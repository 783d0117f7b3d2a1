"""Static checks of the high-availability forms (registered by validate.py).

- deploy/compose-ha/compose.ha.yml on top of docker-compose.yml: loads in
  Docker Compose v2 (alone and with scripts/ha-test's overrides); the
  services' RabbitMQ URLs name the three cluster nodes, whose node names
  rabbitmq-cluster.conf lists, with pause_minority and one Erlang cookie;
  the sentinels the services ask watch the master name they are given;
  ALIAS_REDIS_URL is gone; HAProxy checks /readyz of the gateway service on
  its port; only HAProxy is published, on 127.0.0.1.
- deploy/k8s/ha (a kustomize overlay of deploy/k8s): its patches applied to
  the base the way kustomize merges them (maps merge, null deletes, lists
  are replaced), every resource against the Kubernetes schemas, and the
  same agreements between the services' URLs, the StatefulSets, their
  headless Services, RabbitMQ's node list and the sentinels' master.
"""

from __future__ import annotations

import copy
import json
import os
import re
import urllib.parse
from types import ModuleType
from typing import Any


def register(v: ModuleType) -> None:
    """Adds the HA checks to validate.py's list (v is that module)."""
    ha_dir = v.DEPLOY / "compose-ha"
    k8s_ha = v.K8S / "ha"
    alias_roles = ["gateway", "processor", "pusher", "demo"]

    def url_hosts(value: str, scheme: str) -> list[tuple[str, int, str]]:
        out = []
        for url in [u.strip() for u in str(value or "").split(",") if u.strip()]:
            u = urllib.parse.urlsplit(url)
            if u.scheme != scheme:
                raise v.Failure(f"{url!r} is not a {scheme}:// URL")
            out.append((u.hostname or "", u.port or 0, url))
        return out

    def conf_settings(text: str) -> dict[str, str]:
        return dict(
            (k.strip(), val.strip())
            for k, val in (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.lstrip().startswith("#"))
        )

    def classic_nodes(text: str) -> list[str]:
        s = conf_settings(text)
        return [s[k] for k in sorted(k for k in s if k.startswith("cluster_formation.classic_config.nodes."))]

    def compose_ha(extra: list[str]) -> dict[str, Any]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
               "ALIAS_STANDINS": str(v.DEPLOY / "compose-test/standins")}
        files = ["-f", str(v.COMPOSE), "-f", str(ha_dir / "compose.ha.yml")]
        for f in extra:
            files += ["-f", str(f)]
        out = v.run_tool([v.compose_binary(), "--project-directory", str(v.ROOT), *files, "--env-file", str(v.DEMO_ENV),
                          "--profile", "demo", "config", "--format", "json"], env=env)
        if out.returncode != 0:
            raise v.Failure(f"docker-compose config with {' '.join(files[3::2])}: {(out.stderr or out.stdout).strip()}")
        return json.loads(out.stdout)

    @v.check("deploy/compose-ha: the HA layout loads in Docker Compose v2 (alone and with scripts/ha-test's overrides); URLs, cluster nodes, cookie, sentinels, HAProxy agree")
    def _compose_ha() -> None:
        errors: list[str] = []
        c = compose_ha([])
        compose_ha([v.DEPLOY / "compose-test/compose.override.yml", ha_dir / "compose.ha-test.yml"])
        services = c["services"]
        known = v.config_variables()
        rabbits = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("rabbitmq:")}
        v.need(len(rabbits) == 3, f"expected 3 RabbitMQ nodes, found {sorted(rabbits)}", errors)
        cluster_conf = (ha_dir / "rabbitmq-cluster.conf").read_text(encoding="utf-8")
        nodes = classic_nodes(cluster_conf)
        v.need(sorted(nodes) == sorted(f"rabbit@{s.get('hostname')}" for s in rabbits.values()),
               f"rabbitmq-cluster.conf lists {nodes}, the nodes are {sorted('rabbit@' + str(s.get('hostname')) for s in rabbits.values())}", errors)
        v.need(conf_settings(cluster_conf).get("cluster_partition_handling") == "pause_minority",
               "rabbitmq-cluster.conf: cluster_partition_handling is not pause_minority", errors)
        cookies = {str((s.get("environment") or {}).get("RABBITMQ_ERLANG_COOKIE")) for s in rabbits.values()}
        v.need(len(cookies) == 1 and "None" not in cookies, "the RabbitMQ nodes do not share one RABBITMQ_ERLANG_COOKIE", errors)
        for name, s in rabbits.items():
            targets = {m.get("target"): m.get("source", "") for m in s.get("volumes", [])}
            v.need(str(targets.get("/etc/rabbitmq/conf.d/30-cluster.conf", "")).endswith("deploy/compose-ha/rabbitmq-cluster.conf"),
                   f"{name}: rabbitmq-cluster.conf is not mounted in conf.d", errors)
            v.need("-kernel net_ticktime" in str((s.get("environment") or {}).get("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "")),
                   f"{name}: no net_ticktime (a partition goes unnoticed for a minute)", errors)
        raw = v.load_yaml(ha_dir / "compose.ha.yml")
        v.need("${RABBITMQ_ERLANG_COOKIE:?" in (ha_dir / "compose.ha.yml").read_text(encoding="utf-8"),
               "compose.ha.yml: RABBITMQ_ERLANG_COOKIE is not a required variable (${NAME:?message})", errors)
        sentinels = {n: s for n, s in services.items() if "--sentinel" in " ".join(map(str, s.get("command") or []))}
        v.need(len(sentinels) >= 3 and len(sentinels) % 2 == 1, f"expected an odd number (3+) of sentinels, found {sorted(sentinels)}", errors)
        monitored = set()
        for name, s in sentinels.items():
            m = re.search(r"sentinel monitor (\S+) (\S+) (\d+) (\d+)", " ".join(map(str, s.get("command") or [])))
            if not m:
                errors.append(f"{name}: no `sentinel monitor` line")
                continue
            monitored.add((m.group(1), m.group(2), m.group(3)))
            v.need(int(m.group(4)) > len(sentinels) // 2, f"{name}: quorum {m.group(4)} is not a majority of {len(sentinels)}", errors)
        v.need(len(monitored) == 1, f"the sentinels watch different masters: {sorted(monitored)}", errors)
        # One Redis password: asked by the primary and the replica, given by
        # the sentinels (auth-pass) and by every service.
        datas = {n: s for n, s in services.items() if "redis-server /data/redis.conf" in " ".join(map(str, s.get("command") or []))}
        v.need(len(datas) == 2, f"expected a Redis primary and replica, found {sorted(datas)}", errors)
        passwords = {str((s.get("environment") or {}).get("REDISCLI_AUTH")) for s in datas.values()}
        v.need(len(passwords) == 1 and "None" not in passwords and "" not in passwords,
               "the Redis servers do not share one password (REDISCLI_AUTH)", errors)
        redis_password = next(iter(passwords))
        for name, s in datas.items():
            command = " ".join(map(str, s.get("command") or []))
            v.need("--requirepass" in command and "--masterauth" in command,
                   f"{name}: redis-server runs without --requirepass and --masterauth", errors)
        for name, s in sentinels.items():
            v.need(str((s.get("environment") or {}).get("REDIS_PASSWORD")) == redis_password
                   and "sentinel auth-pass alias" in " ".join(map(str, s.get("command") or [])),
                   f"{name}: does not log in to the Redis servers with their password", errors)
        v.need("${REDIS_PASSWORD:?" in (ha_dir / "compose.ha.yml").read_text(encoding="utf-8"),
               "compose.ha.yml: REDIS_PASSWORD is not a required variable (${NAME:?message})", errors)
        for role in alias_roles:
            env = services[role].get("environment") or {}
            v.need("ALIAS_REDIS_URL" not in env, f"{role}: ALIAS_REDIS_URL is still set (the services would use one Redis)", errors)
            v.need(str(env.get("ALIAS_REDIS_SENTINEL_PASSWORD")) == redis_password,
                   f"{role}: ALIAS_REDIS_SENTINEL_PASSWORD is not the Redis servers' password", errors)
            for key in env:
                v.need(key in known, f"compose.ha.yml: {role} sets {key}, which {v.CONFIG_VARIABLES} does not read (yet)", errors)
            try:
                amqp = url_hosts(env.get("ALIAS_AMQP_URL", ""), "amqp")
                sent = url_hosts(env.get("ALIAS_REDIS_SENTINEL_URLS", ""), "redis")
            except v.Failure as e:
                errors.append(f"{role}: {e}")
                continue
            v.need(sorted(h for h, _, _ in amqp) == sorted(rabbits), f"{role}: ALIAS_AMQP_URL names {[h for h, _, _ in amqp]}, not the nodes {sorted(rabbits)}", errors)
            for _, _, url in amqp:
                user, password, vhost = v.amqp_parts(url)
                for n, s in rabbits.items():
                    renv = s.get("environment") or {}
                    v.need((renv.get("RABBITMQ_DEFAULT_USER"), renv.get("RABBITMQ_DEFAULT_PASS"), renv.get("RABBITMQ_DEFAULT_VHOST")) == (user, password, vhost),
                           f"{role}: the user, password or vhost of {url.split('@')[-1]} differ from {n}'s RABBITMQ_DEFAULT_*", errors)
            v.need(sorted((h, p) for h, p, _ in sent) == sorted((n, 26379) for n in sentinels),
                   f"{role}: ALIAS_REDIS_SENTINEL_URLS names {[(h, p) for h, p, _ in sent]}, not the sentinels on 26379", errors)
            v.need({env.get("ALIAS_REDIS_SENTINEL_MASTER")} == {m[0] for m in monitored},
                   f"{role}: ALIAS_REDIS_SENTINEL_MASTER={env.get('ALIAS_REDIS_SENTINEL_MASTER')!r}, the sentinels watch {sorted(m[0] for m in monitored)}", errors)
        for master, host, port in monitored:
            v.need(host in services and port == "6379", f"the sentinels watch {host}:{port}, not a Redis service", errors)
        # HAProxy: the gateway service's replicas on their port, checked on /readyz.
        cfg = (ha_dir / "haproxy.cfg").read_text(encoding="utf-8")
        port = v.listen_port(services["gateway"]["environment"].get("ALIAS_LISTEN"), "gateway: ALIAS_LISTEN")
        v.need(re.search(rf"^\s*server-template\s+\S+\s+\d+\s+gateway:{port}\b", cfg, re.M) is not None,
               f"haproxy.cfg: no server-template on gateway:{port}", errors)
        v.need(re.search(r"^\s*option httpchk GET /readyz\s*$", cfg, re.M) is not None, "haproxy.cfg: the gateways are not checked on GET /readyz", errors)
        v.need("resolvers docker" in cfg and "127.0.0.11:53" in cfg, "haproxy.cfg: the gateways are not resolved through Docker's DNS", errors)
        lb = [n for n, s in services.items() if any(str(m.get("target", "")).endswith("haproxy.cfg") for m in s.get("volumes", []))]
        v.need(len(lb) == 1, f"expected one HAProxy service mounting haproxy.cfg, found {lb}", errors)
        for n, s in services.items():
            for p in s.get("ports", []):
                v.need(p.get("host_ip") == "127.0.0.1", f"{n}: publishes {p.get('published')} on {p.get('host_ip')}, not 127.0.0.1", errors)
        v.need(not services["gateway"].get("ports"), "gateway: publishes a port (its replicas are reached through HAProxy)", errors)
        v.need(lb and any(str(p.get("target")) == str(port) for p in services[lb[0]].get("ports", [])), f"HAProxy does not publish port {port}", errors)
        for role in ["gateway", "processor", "pusher"]:
            v.need((services[role].get("deploy") or {}).get("replicas", 1) >= 2, f"{role}: fewer than 2 replicas", errors)
        origin = services["gateway"]["environment"].get("ALIAS_PUBLIC_ORIGIN", "")
        v.need(lb and urllib.parse.urlsplit(origin).hostname == lb[0], f"ALIAS_PUBLIC_ORIGIN={origin} is not HAProxy's ({lb})", errors)
        del raw
        v.info(f"{len(rabbits)} RabbitMQ nodes, {len(sentinels)} sentinels, HAProxy {lb}")
        v.raise_if(errors)

    # --- Kubernetes --------------------------------------------------------------

    def smp(base: Any, patch: Any) -> Any:
        """Strategic-merge as kustomize does it for these files: maps merge,
        null deletes a key, lists are replaced."""
        if isinstance(base, dict) and isinstance(patch, dict):
            out = dict(base)
            for k, val in patch.items():
                if val is None:
                    out.pop(k, None)
                else:
                    out[k] = smp(base.get(k), val)
            return out
        return copy.deepcopy(patch)

    def k8s_ha_docs() -> list[dict[str, Any]]:
        kust = v.load_yaml(k8s_ha / "kustomization.yaml")
        if "../" not in kust.get("resources", []) and ".." not in kust.get("resources", []):
            raise v.Failure("deploy/k8s/ha/kustomization.yaml does not build on ../")
        docs = [copy.deepcopy(d) for _, d in v.k8s_docs()]
        for name in kust.get("resources", []):
            if name.rstrip("/") == "..":
                continue
            docs += v.load_yaml_all(k8s_ha / name)
        for p in kust.get("patches", []):
            for patch in v.load_yaml_all(k8s_ha / p["path"]):
                key = (patch.get("kind"), patch["metadata"]["name"])
                hits = [i for i, d in enumerate(docs) if (d.get("kind"), d["metadata"]["name"]) == key]
                if len(hits) != 1:
                    raise v.Failure(f"{p['path']}: patches {key}, which is {len(hits)} resources")
                docs[hits[0]] = smp(docs[hits[0]], patch)
        listed = {*kust.get("resources", []), *(p["path"] for p in kust.get("patches", []))}
        for f in sorted(k8s_ha.glob("*.y*ml")):
            if f.name != "kustomization.yaml" and f.name not in listed:
                raise v.Failure(f"deploy/k8s/ha/{f.name} is not in its kustomization.yaml")
        return docs

    @v.check("deploy/k8s/ha: the HA overlay (patches applied) against the Kubernetes schemas; StatefulSets, headless Services, RabbitMQ nodes, sentinels and the services' URLs agree")
    def _k8s_ha() -> None:
        import kubernetes_validate
        from kubernetes_validate import utils as kv

        errors: list[str] = []
        docs = k8s_ha_docs()
        versions = [kv.latest_version() if x == "latest" else x for x in v.K8S_VERSIONS]
        for d in docs:
            if d.get("apiVersion", "").startswith("keda.sh/"):
                continue
            for version in versions:
                try:
                    kubernetes_validate.validate(d, version, strict=True)
                except kv.ValidationError as e:
                    errors.append(f"{d.get('kind')}/{d['metadata'].get('name')} (k8s {e.version}): {'.'.join(map(str, e.path))}: {e.message}")
            v.need(d["metadata"].get("namespace", "alias-bank") == "alias-bank" or d.get("kind") == "Namespace",
                   f"{d.get('kind')}/{d['metadata'].get('name')} is not in namespace alias-bank", errors)

        def find(kind: str, name: str | None = None) -> list[dict[str, Any]]:
            return [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]

        secrets = {s["metadata"]["name"]: {**(s.get("stringData") or {}), **(s.get("data") or {})} for s in find("Secret")}
        config = {**(find("ConfigMap", "alias-bank")[0].get("data") or {})}
        app = {**config, **secrets.get("alias-bank", {})}
        sts = {s["metadata"]["name"]: s for s in find("StatefulSet")}
        services = {s["metadata"]["name"]: s for s in find("Service")}
        known = v.config_variables()
        for key in app:
            v.need(key in known, f"the services' ConfigMap/Secret set {key}, which {v.CONFIG_VARIABLES} does not read (yet)", errors)
        v.need("ALIAS_REDIS_URL" not in app, "ALIAS_REDIS_URL is still set (the services would use one Redis)", errors)
        # Placeholders for every credential (a value with a password in it,
        # or a key that names one); the sentinels' URLs carry none.
        for name, values in secrets.items():
            for key, x in values.items():
                if "@" in str(x) or re.search(r"KEY|PASS|SECRET|COOKIE", key.upper()):
                    v.need("REPLACE" in str(x), f"Secret {name}: {key} should hold a REPLACE-ME placeholder", errors)

        def pods(name: str) -> list[str]:
            s = sts.get(name)
            if s is None:
                errors.append(f"no StatefulSet {name}")
                return []
            svc = services.get(s["spec"]["serviceName"])
            labels = s["spec"]["template"]["metadata"]["labels"]
            v.need(svc is not None and svc["spec"].get("clusterIP") == "None" and svc["spec"].get("publishNotReadyAddresses") is True,
                   f"StatefulSet {name}: serviceName {s['spec']['serviceName']} is not a headless Service publishing unready addresses", errors)
            if svc:
                v.need(svc["spec"].get("selector", {}).items() <= labels.items(), f"Service {svc['metadata']['name']} does not select {name}'s pods", errors)
            v.need(any(p["spec"]["selector"]["matchLabels"].items() <= labels.items() for p in find("PodDisruptionBudget")),
                   f"StatefulSet {name}: no PodDisruptionBudget", errors)
            return [f"{name}-{i}.{s['spec']['serviceName']}.alias-bank.svc" for i in range(s["spec"].get("replicas", 1))]

        rabbit_pods = pods("rabbitmq")
        redis_pods = pods("redis")
        sentinel_pods = pods("redis-sentinel")
        v.need(len(rabbit_pods) == 3, f"RabbitMQ runs {len(rabbit_pods)} nodes, not 3", errors)
        v.need(len(sentinel_pods) >= 3 and len(sentinel_pods) % 2 == 1, f"{len(sentinel_pods)} sentinels: want an odd number, 3 or more", errors)
        v.need(len(redis_pods) >= 2, "Redis runs no replica", errors)
        try:
            amqp = url_hosts(app.get("ALIAS_AMQP_URL", ""), "amqp")
            sent = url_hosts(app.get("ALIAS_REDIS_SENTINEL_URLS", ""), "redis")
        except v.Failure as e:
            raise v.Failure(str(e)) from None
        v.need([h for h, _, _ in amqp] == rabbit_pods, f"ALIAS_AMQP_URL names {[h for h, _, _ in amqp]}, not the nodes {rabbit_pods}", errors)
        v.need([(h, p) for h, p, _ in sent] == [(p, 26379) for p in sentinel_pods], f"ALIAS_REDIS_SENTINEL_URLS names {[h for h, _, _ in sent]}, not {sentinel_pods}", errors)
        rconf = (find("ConfigMap", "rabbitmq") or [{}])[0].get("data", {}).get("rabbitmq.conf", "")
        v.need(classic_nodes(rconf) == [f"rabbit@{p}.cluster.local" for p in rabbit_pods],
               f"the rabbitmq ConfigMap lists {classic_nodes(rconf)}, not the StatefulSet's pods", errors)
        v.need(conf_settings(rconf).get("cluster_partition_handling") == "pause_minority", "rabbitmq.conf: no pause_minority", errors)
        if "rabbitmq" in sts:
            ctr = sts["rabbitmq"]["spec"]["template"]["spec"]["containers"][0]
            env = {e["name"]: e for e in ctr.get("env", [])}
            v.need(env.get("RABBITMQ_NODENAME", {}).get("value") == f"rabbit@$(MY_POD_NAME).{sts['rabbitmq']['spec']['serviceName']}.alias-bank.svc.cluster.local"
                   and env.get("RABBITMQ_USE_LONGNAME", {}).get("value") == "true", "rabbitmq: RABBITMQ_NODENAME is not the pod's long name", errors)
            for _, _, url in amqp:
                user, _, vhost = v.amqp_parts(url)
                v.need((env.get("RABBITMQ_DEFAULT_USER", {}).get("value"), env.get("RABBITMQ_DEFAULT_VHOST", {}).get("value")) == (user, vhost),
                       "rabbitmq: RABBITMQ_DEFAULT_USER/VHOST differ from ALIAS_AMQP_URL's", errors)
            for key in ["RABBITMQ_DEFAULT_PASS", "RABBITMQ_ERLANG_COOKIE"]:
                ref = (env.get(key, {}).get("valueFrom") or {}).get("secretKeyRef") or {}
                v.need(ref.get("key") in secrets.get(ref.get("name"), {}), f"rabbitmq: {key} is not read from a Secret key that exists", errors)
        scripts = (find("ConfigMap", "redis") or [{}])[0].get("data", {})
        m = re.search(r"sentinel monitor (\S+) (\S+) 6379 (\d+)", scripts.get("init-sentinel.sh", ""))
        v.need(m is not None and m.group(1) == app.get("ALIAS_REDIS_SENTINEL_MASTER"),
               f"the sentinels' master name is not ALIAS_REDIS_SENTINEL_MASTER={app.get('ALIAS_REDIS_SENTINEL_MASTER')!r}", errors)
        if m:
            v.need(redis_pods and m.group(2) == redis_pods[0] + ".cluster.local", f"the sentinels watch {m.group(2)}, not {redis_pods[:1]}", errors)
            v.need(int(m.group(3)) > len(sentinel_pods) // 2, f"sentinel quorum {m.group(3)} is not a majority", errors)
        # One Redis password: the servers ask for it, the sentinels and the
        # services log in with it.
        if "redis" in sts:
            ctr = sts["redis"]["spec"]["template"]["spec"]["containers"][0]
            env = {e["name"]: e for e in ctr.get("env", [])}
            ref = (env.get("REDISCLI_AUTH", {}).get("valueFrom") or {}).get("secretKeyRef") or {}
            v.need(ref.get("key") in secrets.get(ref.get("name"), {}), "redis: REDISCLI_AUTH is not read from a Secret key that exists", errors)
            v.need("--requirepass" in " ".join(ctr.get("command", [])) and "--masterauth" in " ".join(ctr.get("command", [])),
                   "redis: redis-server runs without --requirepass and --masterauth", errors)
            if "redis-sentinel" in sts:
                init = sts["redis-sentinel"]["spec"]["template"]["spec"]["initContainers"][0]
                senv = {e["name"]: e for e in init.get("env", [])}
                sref = (senv.get("REDIS_PASSWORD", {}).get("valueFrom") or {}).get("secretKeyRef") or {}
                v.need(sref == ref and "sentinel auth-pass alias $REDIS_PASSWORD" in scripts.get("init-sentinel.sh", ""),
                       "the sentinels do not log in to the Redis servers with their password", errors)
        v.need("ALIAS_REDIS_SENTINEL_PASSWORD" in app, "the services are not given ALIAS_REDIS_SENTINEL_PASSWORD", errors)
        for a in find("TriggerAuthentication"):
            for ref in a["spec"].get("secretTargetRef", []):
                value = secrets.get(ref.get("name"), {}).get(ref.get("key"))
                v.need(value is not None and "," not in str(value), f"TriggerAuthentication {a['metadata']['name']}: {ref.get('name')}/{ref.get('key')} is missing or not one URL", errors)
        gw = find("Deployment", "alias-gateway")[0]
        hpa = find("HorizontalPodAutoscaler", "alias-gateway")[0]
        v.need(gw["spec"].get("replicas", 1) >= 3 and hpa["spec"].get("minReplicas", 1) >= 3, "fewer than 3 gateways", errors)
        v.info(f"{len(docs)} resources; RabbitMQ {len(rabbit_pods)} nodes, Redis {len(redis_pods)}, sentinels {len(sentinel_pods)}")
        v.raise_if(errors)
