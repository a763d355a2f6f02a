"""`make helm-check`: the chart, its alerts and the Grafana dashboard, checked without a cluster.

1. Helm's own library (helm-python-sdk, which embeds Helm v4's Go SDK) lints the chart with each
   values file, strict, for the oldest and the newest Kubernetes the chart claims.
2. It renders the chart with the default values and with each file under helm/check/values/
   (values.schema.json applies, as at install time); every rendered object is validated against
   the Kubernetes JSON schemas of a current Kubernetes and of the chart's minimum
   (kubernetes-validate, strict: unknown fields are errors), and the Prometheus Operator objects
   against that operator's models (cloudcoil-models-prometheus-operator, unknown fields refused).
3. Assertions on each render: gRPC probes on the health service, no container as root, secrets
   only from secretKeyRef, configuration TOML with known keys only, selectors that meet.
4. Each file under helm/check/invalid/ must be refused by values.schema.json.
5. The PrometheusRule's groups are written out and given to `promtool check rules` and
   `promtool test rules` (helm/check/alerts.test.yaml).
6. The dashboard deploy/grafana/fiscus.json: structure, metric names, and every query parsed by
   promtool.

Prints one line per check that fails and ends with `helm-check: N passed, M failed`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "fiscus"
HERE = ROOT / "helm" / "check"
OUT = ROOT / "target" / "helm-check"
DASHBOARD = ROOT / "deploy" / "grafana" / "fiscus.json"

# A current Kubernetes (the newest kubernetes-validate knows) and the oldest the chart claims.
KUBE_VERSIONS = (kubernetes_validate.latest_version(), "1.27.0")

# (file, release name, namespace): the renders every check runs on.
SCENARIOS = [
    (None, "fiscus", "fiscus"),
    (HERE / "values" / "minimal.yaml", "fiscus", "default"),
    (HERE / "values" / "production.yaml", "fiscus", "fiscal"),
    (HERE / "values" / "merchant.yaml", "m37900846788", "merchant-37900846788"),
]

SERVICES = {
    "receipts": "fiscus.v1.ReceiptService",
    "payments": "fiscus.v1.PaymentService",
    "shifts": "fiscus.v1.ShiftService",
    "tokens": "fiscus.v1.TokenService",
}
NEEDS_MASTER_KEY = {"receipts", "tokens"}
SECRET_ENV = {"FISCUS_DATABASE__URL", "FISCUS_CACHE__URL", "FISCUS_KEYS__MASTER_KEY"}

# Every configuration key the binaries accept (README's table, plus admin.listen); a key outside
# it stops a process at start.
KNOWN_KEYS = {
    "server": {"listen", "request_timeout_ms", "concurrency_limit_per_connection", "drain_delay_ms",
               "shutdown_grace_ms"},
    "admin": {"enabled", "listen"},
    "database": {"url", "schema", "max_connections", "connect_timeout_ms", "statement_timeout_ms"},
    "cache": {"url", "key_prefix", "connect_timeout_ms", "response_timeout_ms"},
    "telemetry": {"log_format", "log_filter", "otlp_endpoint"},
    "peers": {"receipts", "payments", "shifts", "tokens", "connect_timeout_ms"},
    "receipts": {"item_limit", "max_request_bytes", "currency", "vat_rate", "city_tax_rate",
                 "business_day_utc_offset_minutes", "max_watchers", "require_open_shift",
                 "merchants", "outbox", "transaction_forms", "client_id", "client_secret"},
    "auth": {"enabled", "issuer", "audience", "token_ttl_seconds", "key_rotation_hours", "clients"},
    "tokens": {"refresh_margin_seconds", "lease_ms", "upstream_timeout_ms", "mia_url", "ebarimt",
               "fiskaltrust"},
    "payments": {"mia_url", "mia_timeout_ms", "client_id", "client_secret", "currency",
                 "poll_interval_ms", "poll_mia", "max_watchers", "device"},
    "shifts": {"client_id", "client_secret", "peer_timeout_ms", "with_payments"},
    "keys": {"master_key"},
}
MERCHANT_KEYS = {"tin", "name", "city_tax_payer", "currency", "require_open_shift", "provider",
                 "ebarimt"}
# Keys that hold secrets: never in the chart's ConfigMap.
SECRET_KEYS = {("database", "url"), ("cache", "url"), ("keys", "master_key"), ("auth", "clients"),
               ("tokens", "ebarimt"), ("tokens", "fiskaltrust"), ("payments", "client_secret"),
               ("shifts", "client_secret"), ("receipts", "client_secret")}

# The metrics the services export (the dashboard may use only these).
METRICS = {
    "grpc_server_started_total", "grpc_server_handled_total", "grpc_server_handling_seconds_bucket",
    "grpc_server_handling_seconds_sum", "grpc_server_handling_seconds_count",
    "fiscus_grpc_server_in_flight", "fiscus_receipts_signed_total",
    "fiscus_journal_group_size_bucket", "fiscus_journal_group_size_sum",
    "fiscus_journal_group_size_count", "fiscus_journal_writer_up", "fiscus_outbox_depth",
    "fiscus_outbox_oldest_age_seconds", "fiscus_outbox_dead_letters",
    "fiscus_outbox_deliveries_total",
    "fiscus_token_cache_requests_total", "fiscus_upstream_token_fetches_total",
    "fiscus_upstream_request_duration_seconds_bucket", "fiscus_idempotency_replays_total",
    "fiscus_watchers_open", "fiscus_db_pool_connections", "up",
}


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failed.append(what)
            print(f"FAIL {what}", flush=True)
        return ok


R = Report()


def say(line: str) -> None:
    print(f"helm-check: {line}", flush=True)


# --- the Prometheus Operator's models load slowly (several seconds): start now, use later -------

_operator: dict[str, object] = {}


def _load_operator_models() -> None:
    from cloudcoil.models.prometheus_operator import v1

    _operator["ServiceMonitor"] = v1.ServiceMonitor
    _operator["PrometheusRule"] = v1.PrometheusRule


_operator_loader = threading.Thread(target=_load_operator_models, daemon=True)


# --- rendering ---------------------------------------------------------------------------------


def load_values(path: Path | None) -> dict | None:
    if path is None:
        return None
    return helm.values_from_yaml(path.read_text())


def render(chart: helm.Chart, values: dict | None, name: str, namespace: str) -> list[dict]:
    """Every object the install would create (hooks included), in template order."""
    manifests = chart.render(values, name=name, namespace=namespace, is_install=True)
    objects = []
    for template, text in sorted(manifests.items()):
        if not template.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return objects


def ident(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


# --- validation --------------------------------------------------------------------------------


def unknown_fields(given: object, known: object, path: str = "") -> list[str]:
    """Keys present in `given` that a model dropped (pydantic ignores unknown fields)."""
    found = []
    if isinstance(given, dict) and isinstance(known, dict):
        for key, value in given.items():
            if key not in known:
                found.append(f"{path}.{key}".lstrip("."))
            else:
                found += unknown_fields(value, known[key], f"{path}.{key}")
    elif isinstance(given, list) and isinstance(known, list):
        for i, (g, k) in enumerate(zip(given, known)):
            found += unknown_fields(g, k, f"{path}[{i}]")
    return found


def validate_object(obj: dict, where: str) -> None:
    kind = obj.get("kind")
    if obj.get("apiVersion", "").startswith("monitoring.coreos.com/"):
        _operator_loader.join()
        model = _operator.get(kind)
        if not R.check(model is not None, f"{where}: {ident(obj)}: no Prometheus Operator model"):
            return
        try:
            parsed = model.model_validate(obj)  # type: ignore[attr-defined]
        except Exception as e:  # pydantic.ValidationError
            R.check(False, f"{where}: {ident(obj)} is not a valid {kind}: {one_line(e)}")
            return
        dumped = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
        extra = unknown_fields(obj, dumped)
        R.check(not extra, f"{where}: {ident(obj)} has fields {kind} does not know: {extra}")
        return
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
            R.check(True, "")
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            R.check(False, f"{where}: {ident(obj)} is invalid for Kubernetes {version}: {path}: {e.message}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
            R.check(False, f"{where}: {ident(obj)}: {e.message}")


def one_line(e: BaseException) -> str:
    return " | ".join(line.strip() for line in str(e).splitlines() if line.strip())


# --- assertions on one render ------------------------------------------------------------------


def matches(selector: dict, labels: dict) -> bool:
    """A LabelSelector (matchLabels, matchExpressions In/NotIn/Exists) against labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_templates(objects: list[dict]):
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            yield obj, obj["spec"]["template"]


def assert_render(where: str, objects: list[dict], merged: dict, namespace: str) -> int:
    """Asserts on one render; answers the most Postgres connections the release can open."""
    toml_by_service: dict[str, dict] = {}
    by_kind: dict[str, list[dict]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
        R.check(obj["metadata"].get("namespace") == namespace,
                f"{where}: {ident(obj)} is not in namespace {namespace}")

    # The chart never carries a secret value.
    R.check("Secret" not in by_kind, f"{where}: the chart renders a Secret")

    # Every pod: restricted security context, no root, no service links, no API token.
    for owner, template in pod_templates(objects):
        spec = template["spec"]
        psc = spec.get("securityContext") or {}
        w = f"{where}: {ident(owner)}"
        R.check(psc.get("runAsNonRoot") is True, f"{w}: pod runAsNonRoot is not true")
        R.check(psc.get("runAsUser", 1) != 0, f"{w}: pod runs as uid 0")
        R.check(spec.get("enableServiceLinks") is False,
                f"{w}: service links on (FISCUS_*_SERVICE_HOST would be read as configuration)")
        R.check(spec.get("automountServiceAccountToken") is False, f"{w}: mounts an API token")
        R.check(not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"),
                f"{w}: uses the host's namespaces")
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c.get("securityContext") or {}
            wc = f"{w} container {c['name']}"
            R.check(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{wc}: may run as root")
            R.check(sc.get("runAsUser", psc.get("runAsUser", 1)) != 0, f"{wc}: runs as uid 0")
            R.check(sc.get("allowPrivilegeEscalation") is False, f"{wc}: privilege escalation allowed")
            R.check(sc.get("privileged") is not True, f"{wc}: privileged")
            R.check(sc.get("readOnlyRootFilesystem") is True, f"{wc}: root filesystem writable")
            R.check("ALL" in ((sc.get("capabilities") or {}).get("drop") or []), f"{wc}: capabilities not all dropped")
            R.check(not (sc.get("capabilities") or {}).get("add"), f"{wc}: adds capabilities")
            seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            R.check(seccomp == "RuntimeDefault", f"{wc}: seccomp profile is {seccomp}, not RuntimeDefault")
            R.check(bool((c.get("resources") or {}).get("requests")), f"{wc}: no resource requests")
            # Secrets only from secretKeyRef.
            for env in c.get("env") or []:
                if env["name"] in SECRET_ENV or re.search(r"(SECRET|PASSWORD|TOKEN|MASTER_KEY|_URL)$", env["name"]):
                    ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                    R.check("value" not in env and bool(ref and ref.get("name") and ref.get("key")),
                            f"{wc}: {env['name']} is not taken from a Secret by secretKeyRef")

    # Each enabled service: Deployment, Service, HPA/PDB as asked, probes, env, command, config.
    deployments = {d["metadata"]["labels"].get("app.kubernetes.io/component"): d for d in by_kind.get("Deployment", [])}
    services = {s["metadata"]["labels"].get("app.kubernetes.io/component"): s for s in by_kind.get("Service", [])}
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind.get("HorizontalPodAutoscaler", [])}
    pdbs = by_kind.get("PodDisruptionBudget", [])
    configmaps = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
    enabled = [s for s in SERVICES if merged["services"][s]["enabled"]]
    R.check(sorted(deployments) == sorted(enabled), f"{where}: Deployments {sorted(deployments)} != enabled {enabled}")
    R.check(sorted(services) == sorted(enabled), f"{where}: Services {sorted(services)} != enabled {enabled}")
    service_ports = {}
    for name in enabled:
        values = merged["services"][name]
        dep, svc = deployments.get(name), services.get(name)
        if dep is None or svc is None:
            continue
        w = f"{where}: {ident(dep)}"
        pod = dep["spec"]["template"]
        labels = pod["metadata"]["labels"]
        R.check(matches(dep["spec"]["selector"], labels), f"{w}: selector does not match its pods")
        R.check(all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()),
                f"{where}: {ident(svc)} selects none of {ident(dep)}'s pods")
        service_ports[name] = (svc["metadata"]["name"], values["port"])
        c = pod["spec"]["containers"][0]
        R.check(c.get("command") == [f"/usr/local/bin/fiscus-{name}"], f"{w}: command is {c.get('command')}")
        # Native gRPC probes: liveness on "" (the process), readiness on the service's own name.
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            p = c.get(probe) or {}
            R.check(set(p) & {"grpc", "exec", "httpGet", "tcpSocket"} == {"grpc"}, f"{w}: {probe} is not a gRPC probe")
            R.check((p.get("grpc") or {}).get("port") == values["port"], f"{w}: {probe} not on the gRPC port")
        R.check((c.get("livenessProbe") or {}).get("grpc", {}).get("service") == "",
                f"{w}: liveness does not ask the process (service \"\")")
        R.check((c.get("readinessProbe") or {}).get("grpc", {}).get("service") == SERVICES[name],
                f"{w}: readiness does not ask {SERVICES[name]}")
        env = {e["name"]: e for e in c.get("env") or []}
        wanted = {"FISCUS_DATABASE__URL", "FISCUS_CACHE__URL"} | ({"FISCUS_KEYS__MASTER_KEY"} if name in NEEDS_MASTER_KEY else set())
        for key in wanted:
            R.check(key in env and "secretKeyRef" in env[key].get("valueFrom", {}), f"{w}: {key} not from a secretKeyRef")
        if name not in NEEDS_MASTER_KEY:
            R.check("FISCUS_KEYS__MASTER_KEY" not in env, f"{w}: gets the master key it does not need")
        # Replicas: fixed, or left to the HPA.
        if values["autoscaling"]["enabled"]:
            hpa = hpas.get(dep["metadata"]["name"])
            R.check(hpa is not None, f"{w}: autoscaling on but no HPA targets it")
            R.check("replicas" not in dep["spec"], f"{w}: sets replicas although an HPA scales it")
        else:
            R.check(dep["spec"].get("replicas") == values["replicas"], f"{w}: replicas != {values['replicas']}")
            R.check(dep["metadata"]["name"] not in hpas, f"{w}: an HPA scales it although autoscaling is off")
        has_pdb = any(matches(p["spec"]["selector"], labels) for p in pdbs)
        R.check(has_pdb == bool(values["podDisruptionBudget"]["enabled"]), f"{w}: PodDisruptionBudget {'missing' if not has_pdb else 'unexpected'}")
        spread = pod["spec"].get("topologySpreadConstraints") or []
        R.check(all(matches(t["labelSelector"], labels) for t in spread), f"{w}: a topology spread constraint selects other pods")
        if values.get("topologySpreadConstraints") or merged.get("topologySpreadConstraints"):
            R.check(bool(spread), f"{w}: no topology spread constraints")
        # Configuration: the service's TOML, known keys only, no secrets, drain fits the grace period.
        mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        args = c.get("args") or []
        config_files = [args[i + 1] for i, a in enumerate(args) if a == "--config"]
        R.check(bool(config_files) and config_files[0] == f"/etc/fiscus/config/{name}.toml",
                f"{w}: first --config is not the chart's {name}.toml: {config_files}")
        for path in config_files:
            R.check(any(path.startswith(m["mountPath"] + "/") for m in mounts.values()), f"{w}: {path} is on no volume")
        cm_name = volumes.get("config", {}).get("configMap", {}).get("name")
        cm = configmaps.get(cm_name)
        if R.check(cm is not None and f"{name}.toml" in cm.get("data", {}), f"{w}: ConfigMap {cm_name} lacks {name}.toml"):
            toml = check_toml(f"{where}: {cm_name}/{name}.toml", cm["data"][f"{name}.toml"])
            server = toml.get("server", {})
            R.check(server.get("listen") == f"0.0.0.0:{values['port']}", f"{w}: server.listen is {server.get('listen')}")
            R.check(toml.get("admin", {}).get("listen") == f"0.0.0.0:{values['metricsPort']}", f"{w}: admin.listen does not match the metrics port")
            need = (server.get("drain_delay_ms", 0) + server.get("shutdown_grace_ms", 20000)) / 1000
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
            R.check(grace > need, f"{w}: terminationGracePeriodSeconds {grace} <= drain + shutdown grace {need}")
            R.check(server.get("drain_delay_ms", 0) >= 1000, f"{w}: no drain delay: clients would still be sent calls after SIGTERM")
            toml_by_service[name] = toml
        for port in c.get("ports", []):
            R.check(port["name"] in ("grpc", "metrics"), f"{w}: unexpected port {port['name']}")
    # The most Postgres connections the release can open: pool size times the most pods.
    connections = 0
    for name, toml in toml_by_service.items():
        dep = deployments[name]
        hpa = hpas.get(dep["metadata"]["name"])
        pods = hpa["spec"]["maxReplicas"] if hpa else dep["spec"].get("replicas", 1)
        connections += pods * toml.get("database", {}).get("max_connections", 16)
    # peers.* in every service's configuration name the rendered Services and ports.
    for name, toml in toml_by_service.items():
        for peer, (svc_name, port) in service_ports.items():
            R.check(toml.get("peers", {}).get(peer) == f"http://{svc_name}:{port}",
                    f"{where}: {name}.toml peers.{peer} = {toml.get('peers', {}).get(peer)}, not http://{svc_name}:{port}")

    # HPAs and PDBs point at something that exists.
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        R.check(hpa["spec"]["scaleTargetRef"]["name"] in {d["metadata"]["name"] for d in deployments.values()},
                f"{where}: {ident(hpa)} targets no Deployment")
        R.check(hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"], f"{where}: {ident(hpa)} min > max")
        R.check(bool(hpa["spec"].get("metrics")), f"{where}: {ident(hpa)} has no metric")

    # The migrations Job: a pre-install/pre-upgrade hook running `fiscus migrate`, before the pods.
    jobs = by_kind.get("Job", [])
    if merged["migrations"]["enabled"]:
        if R.check(len(jobs) == 1, f"{where}: {len(jobs)} migration Jobs"):
            job = jobs[0]
            hooks = set(job["metadata"].get("annotations", {}).get("helm.sh/hook", "").split(","))
            R.check(hooks == {"pre-install", "pre-upgrade"}, f"{where}: {ident(job)} hooks are {hooks}")
            c = job["spec"]["template"]["spec"]["containers"][0]
            R.check(c.get("command") == ["/usr/local/bin/fiscus"] and (c.get("args") or [None])[0] == "migrate",
                    f"{where}: {ident(job)} does not run `fiscus migrate`")
            R.check(job["spec"]["template"]["spec"].get("restartPolicy") == "Never", f"{where}: {ident(job)} restarts in place")
            # What the Job uses must exist before it: hooks of a lower weight, not release objects.
            weight = int(job["metadata"]["annotations"].get("helm.sh/hook-weight", "0"))
            spec = job["spec"]["template"]["spec"]
            used = {("ServiceAccount", spec.get("serviceAccountName"))} | {
                ("ConfigMap", v["configMap"]["name"]) for v in spec.get("volumes", []) if "configMap" in v}
            for kind, used_name in used:
                if kind == "ServiceAccount" and used_name in (None, "default"):
                    continue
                dep = next((o for o in objects if o["kind"] == kind and o["metadata"]["name"] == used_name), None)
                ann = (dep or {}).get("metadata", {}).get("annotations", {})
                R.check(dep is not None and "pre-install" in ann.get("helm.sh/hook", "")
                        and int(ann.get("helm.sh/hook-weight", "0")) < weight,
                        f"{where}: {ident(job)} uses {kind}/{used_name}, which is not an earlier pre-install hook")
            toml = configmaps.get(next((v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v), ""), {})
            for text in (toml.get("data") or {}).values():
                check_toml(f"{where}: {ident(job)} config", text)
                connections += tomllib.loads(text).get("database", {}).get("max_connections", 16)
    else:
        R.check(not jobs, f"{where}: a migration Job although migrations are off")

    # Optional objects appear exactly when asked for.
    for key, kind in (("serviceMonitor", "ServiceMonitor"), ("prometheusRule", "PrometheusRule")):
        R.check(bool(by_kind.get(kind)) == bool(merged[key]["enabled"]), f"{where}: {kind} present != {key}.enabled")
    for sm in by_kind.get("ServiceMonitor", []):
        selected = [s for s in by_kind.get("Service", []) if matches(sm["spec"]["selector"], s["metadata"]["labels"])]
        R.check(len(selected) == len(enabled), f"{where}: {ident(sm)} selects {len(selected)} Services, not {len(enabled)}")
        ports = {p["name"] for s in selected for p in s["spec"]["ports"]}
        R.check(all(e.get("port") in ports for e in sm["spec"]["endpoints"]), f"{where}: {ident(sm)} scrapes a port no Service has")
    policies = by_kind.get("NetworkPolicy", [])
    if merged["networkPolicy"]["enabled"]:
        for name, dep in deployments.items():
            labels = dep["spec"]["template"]["metadata"]["labels"]
            mine = [p for p in policies if matches(p["spec"]["podSelector"], labels)]
            R.check(len(mine) == 1, f"{where}: {ident(dep)} is selected by {len(mine)} NetworkPolicies")
            for p in mine:
                R.check(set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}, f"{where}: {ident(p)} does not restrict both ways")
                allowed = {port.get("port") for rule in p["spec"].get("egress", []) for port in rule.get("ports", [])}
                R.check({53, 5432, 6379} <= allowed, f"{where}: {ident(p)} egress lacks DNS, Postgres or Redis: {allowed}")
                R.check(all(rule.get("ports") for rule in p["spec"].get("egress", []) + p["spec"].get("ingress", [])),
                        f"{where}: {ident(p)} has a rule open on every port")
        for job in jobs:
            labels = job["spec"]["template"]["metadata"]["labels"]
            R.check(any(matches(p["spec"]["podSelector"], labels) for p in policies), f"{where}: {ident(job)} has no NetworkPolicy")
    else:
        R.check(not policies, f"{where}: NetworkPolicies although networkPolicy.enabled is false")
    return connections


def check_toml(where: str, text: str) -> dict:
    try:
        toml = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        R.check(False, f"{where}: not TOML: {e}")
        return {}
    for section, body in toml.items():
        if not R.check(section in KNOWN_KEYS and isinstance(body, dict), f"{where}: unknown section [{section}]"):
            continue
        for key, value in body.items():
            R.check(key in KNOWN_KEYS[section], f"{where}: unknown key {section}.{key} (the binaries would refuse it)")
            R.check((section, key) not in SECRET_KEYS, f"{where}: secret {section}.{key} in a ConfigMap")
            if (section, key) == ("receipts", "merchants"):
                for m in value:
                    R.check(set(m) <= MERCHANT_KEYS and "tin" in m, f"{where}: merchant entry {sorted(m)}")
            elif isinstance(value, str):
                R.check(value != "", f"{where}: {section}.{key} is empty (leave it out for the default)")
    return toml


# --- alerts ------------------------------------------------------------------------------------


def promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        print("helm-check: promtool is not installed (deploy/local/ensure-promtool.sh installs it)", file=sys.stderr)
        sys.exit(2)
    return path


def run_promtool(args: list[str], what: str) -> None:
    result = subprocess.run([promtool(), *args], cwd=OUT, capture_output=True, text=True)
    ok = result.returncode == 0
    if not ok:
        sys.stdout.write(result.stdout + result.stderr)
    R.check(ok, f"promtool {' '.join(args)} ({what})")


def check_alerts(chart: helm.Chart) -> None:
    """The rules as the chart renders them for release `fiscus` in namespace `fiscus`, tested."""
    try:
        objects = render(chart, {"prometheusRule": {"enabled": True}}, "fiscus", "fiscus")
    except helm.HelmError as e:
        R.check(False, f"render (alerts): {one_line(e)}")
        return
    rules = [o for o in objects if o["kind"] == "PrometheusRule"]
    if not R.check(len(rules) == 1, "one PrometheusRule"):
        return
    groups = rules[0]["spec"]["groups"]
    (OUT / "fiscus-alerts.rules.yaml").write_text(
        "# Rendered by make helm-check from helm/fiscus/templates/prometheusrule.yaml.\n"
        + yaml.safe_dump({"groups": groups}, sort_keys=False, width=200))
    shutil.copy(HERE / "alerts.test.yaml", OUT / "alerts.test.yaml")
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    tested = set(re.findall(r"alertname:\s*(\w+)", (HERE / "alerts.test.yaml").read_text()))
    R.check(alerts <= tested, f"alerts without a unit test: {sorted(alerts - tested)}")
    R.check(tested <= alerts, f"tests of alerts that do not exist: {sorted(tested - alerts)}")
    run_promtool(["check", "rules", "fiscus-alerts.rules.yaml"], "the chart's alerts parse")
    run_promtool(["test", "rules", "alerts.test.yaml"], "the alerts fire and resolve")


# --- dashboard ---------------------------------------------------------------------------------


def check_dashboard() -> int:
    try:
        dash = json.loads(DASHBOARD.read_text())
    except (OSError, json.JSONDecodeError) as e:
        R.check(False, f"{DASHBOARD}: {e}")
        return 0
    R.check(bool(dash.get("uid")) and bool(dash.get("title")), "dashboard has a uid and a title")
    panels = []
    for p in dash.get("panels", []):
        panels.append(p)
        panels.extend(p.get("panels", []))
    ids = [p.get("id") for p in panels]
    R.check(len(ids) == len(set(ids)) and None not in ids, "dashboard panel ids are unique")
    variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    R.check({"datasource", "namespace", "job"} <= variables, f"dashboard variables {sorted(variables)}")
    cells: dict[tuple[int, int], str] = {}
    overlaps = set()
    for p in panels:
        g = p.get("gridPos", {})
        for x in range(g.get("x", 0), g.get("x", 0) + g.get("w", 0)):
            for y in range(g.get("y", 0), g.get("y", 0) + g.get("h", 0)):
                if (x, y) in cells:
                    overlaps.add((cells[(x, y)], p.get("title")))
                cells[(x, y)] = p.get("title")
        R.check(g.get("x", 0) + g.get("w", 0) <= 24, f"dashboard panel {p.get('title')!r} is wider than the grid")
    R.check(not overlaps, f"dashboard panels overlap: {sorted(overlaps)}")
    exprs = []
    for p in panels:
        if p.get("type") == "row":
            continue
        R.check(all(k in p.get("gridPos", {}) for k in "xywh"), f"dashboard panel {p.get('title')} has no gridPos")
        targets = p.get("targets") or []
        R.check(bool(targets), f"dashboard panel {p.get('title')} has no query")
        for t in targets:
            exprs.append((p.get("title"), t.get("expr", "")))
    for title, expr in exprs:
        used = set(re.findall(r"\b((?:grpc|fiscus)_[a-z_]+|up)\s*[{\[(]", expr))
        R.check(bool(used) and used <= METRICS, f"dashboard panel {title}: unknown metrics {sorted(used - METRICS)}")
    # promtool parses every query: each becomes a recording rule, with Grafana's variables filled in.
    def fill(expr: str) -> str:
        expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
        return re.sub(r"\$\{?(\w+)(?::\w+)?\}?", "x", expr)
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": fill(e)} for i, (_, e) in enumerate(exprs)]}]}
    (OUT / "dashboard-queries.rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False, width=400))
    run_promtool(["check", "rules", "dashboard-queries.rules.yaml"], "every dashboard query parses")
    return len(panels)


# --- the chart's README lists every value ------------------------------------------------------

# Values documented as a whole rather than key by key.
OPAQUE = {"resources", "podSecurityContext", "securityContext", "services.<name>.config"}


def value_paths(values: dict, prefix: str = "") -> list[str]:
    paths = []
    for key, value in values.items():
        path = re.sub(r"^services\.(receipts|payments|shifts|tokens)\.", "services.<name>.", f"{prefix}{key}")
        leaf = path.rsplit(".", 1)[-1]
        if isinstance(value, dict) and value and path not in OPAQUE and leaf not in OPAQUE:
            paths += value_paths(value, f"{prefix}{key}.")
        elif path not in paths:
            paths.append(path)
    return paths


def check_readme(chart: helm.Chart) -> int:
    lines = (CHART / "README.md").read_text().splitlines()
    paths = sorted(set(value_paths(chart.values)))
    missing = []
    for path in paths:
        parent, _, leaf = path.rpartition(".")
        if not any(f"`{path}`" in line or (parent and f"`{parent}." in line and (f"`{leaf}`" in line or f".{leaf}`" in line))
                   for line in lines):
            missing.append(path)
    R.check(not missing, f"helm/fiscus/README.md does not list these values: {missing}")
    return len(paths)


# --- main --------------------------------------------------------------------------------------


def main() -> int:
    started = time.monotonic()
    OUT.mkdir(parents=True, exist_ok=True)
    _operator_loader.start()
    helm.disable_logging()
    say(f"Helm {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}); Kubernetes schemas {', '.join(KUBE_VERSIONS)}")

    # 1. Lint, strict, with every values file, for both Kubernetes versions.
    for path, _, namespace in SCENARIOS:
        label = path.stem if path else "default"
        for version in KUBE_VERSIONS:
            report = helm.lint(CHART, load_values(path), strict=True, namespace=namespace,
                               kube_version=f"v{version}")
            problems = [m for m in report["messages"] if m["severity"] >= 2] + [
                {"path": "", "error": e} for e in report["errors"]]
            R.check(not problems, f"lint ({label}, Kubernetes {version}): "
                    + "; ".join(f"{m['path']}: {one_line(Exception(m['error']))}" for m in problems))

    # 2 and 3. Render each scenario, validate every object, assert on the whole.
    chart = helm.Chart.load(CHART)
    counts, pools = [], []
    for path, release, namespace in SCENARIOS:
        label = path.stem if path else "default"
        values = load_values(path)
        try:
            objects = render(chart, values, release, namespace)
        except helm.HelmError as e:
            R.check(False, f"render ({label}): {one_line(e)}")
            continue
        (OUT / f"{label}.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
        for obj in objects:
            validate_object(obj, label)
        connections = assert_render(label, objects, chart.merge_values(values or {}), namespace)
        counts.append(f"{label} {len(objects)}")
        pools.append(f"{label} {connections}")
    say(f"rendered and validated: {', '.join(counts)} objects (written to {OUT.relative_to(ROOT)}/)")
    say(f"Postgres connections at most (pools x most pods + migrations): {', '.join(pools)}")

    # 4. Wrong values are refused at install time.
    invalid = sorted((HERE / "invalid").glob("*.yaml"))
    for path in invalid:
        try:
            chart.render(load_values(path), name="fiscus", namespace="fiscus", is_install=True)
            R.check(False, f"invalid/{path.name} was accepted: values.schema.json should refuse it")
        except helm.HelmValuesError:
            R.check(True, "")
    say(f"refused by values.schema.json: {len(invalid)} wrong values files")

    documented = check_readme(chart)
    say(f"README lists all {documented} values")

    # 5 and 6. Alerts and dashboard.
    check_alerts(chart)
    panels = check_dashboard()
    say(f"alerts unit-tested by promtool; dashboard: {panels} panels")

    chart.close()
    failed = len(R.failed)
    say(f"{time.monotonic() - started:.1f} s")
    print(f"helm-check: {R.passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
