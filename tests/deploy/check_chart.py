#!/usr/bin/env python3
"""Lint, render and validate the mailroom Helm chart offline.

Run by tests/it/deploy.rs (`cargo test --test it deploy::`), or by hand:
    python3 tests/deploy/check_chart.py helm/mailroom

Uses PyPI `helm-python-sdk` (the Helm library itself, through ctypes: no helm binary,
no cluster) and `kubernetes-validate` (the Kubernetes OpenAPI schemas). For each set of
values it lints the chart, renders it, validates every manifest against the schemas of
KUBE_VERSION in strict mode (unknown fields are errors), then checks what the values
promise (PROXY variable set, Secrets mounted where the *_FILE variables point, ...).

Exit status: 0 all good, 1 a check failed, 77 a required Python package is missing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

try:
    import helm_python as helm
    import kubernetes_validate
    import yaml
except ImportError as e:  # the Rust test turns 77 into "skipped" (or a failure under CI=true)
    print(f"missing Python package: {e.name} (run .ci/deploy-deps.sh)")
    sys.exit(77)

# A version kubernetes-validate ships schemas for, and the oldest we want to support well.
KUBE_VERSION = "1.30.0"
RELEASE = "mail"
NAMESPACE = "mail"

# Metric names the dashboard must chart (metrics.rs is the source of truth).
DASHBOARD_METRICS = [
    "mailroom_build_info",
    "mailroom_connections_total",
    "mailroom_connections_active",
    "mailroom_tls_certificate_expiry_timestamp_seconds",
    "mailroom_smtp_messages_received_total",
    "mailroom_smtp_messages_refused_total",
    "mailroom_smtp_recipients_total",
    "mailroom_delivery_duration_seconds",
    "mailroom_queue_delivery_status_total",
    "mailroom_imap_command_duration_seconds",
    "mailroom_dns_lookups_total",
    "mailroom_scan_results_total",
    "mailroom_smtp_transactions_total",
    "mailroom_auth_attempts_total",
    "mailroom_sessions",
    "mailroom_bytes_sent_total",
    "mailroom_store_operation_duration_seconds",
    "process_resident_memory_bytes",
]

# Custom resources: kubernetes-validate has no schema for them, so check the fields
# their controllers reject an object without.
CRD_REQUIRED: dict[tuple[str, str], list[str]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ["spec.selector", "spec.endpoints"],
    ("monitoring.coreos.com/v1", "PrometheusRule"): ["spec.groups"],
    ("cert-manager.io/v1", "Certificate"): ["spec.secretName", "spec.issuerRef.name", "spec.dnsNames"],
}


class Failed(Exception):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Failed(what)


def dig(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def render(chart: Any, values: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Render and parse; returns {(kind, name): object}. NOTES.txt is kept under ("NOTES", "")."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            out[("NOTES", "")] = {"text": text}
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            key = (doc["kind"], doc["metadata"]["name"])
            check(key not in out, f"{path}: duplicate {key}")
            out[key] = doc
    return out


def validate(objects: dict[tuple[str, str], dict[str, Any]]) -> int:
    count = 0
    for (kind, name), obj in objects.items():
        if kind == "NOTES":
            continue
        crd = CRD_REQUIRED.get((obj["apiVersion"], kind))
        if crd is not None:
            for field in crd:
                check(dig(obj, field) not in (None, "", []), f"{kind}/{name}: {field} missing")
        else:
            try:
                kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                raise Failed(f"{kind}/{name}: {e.message} at {'.'.join(map(str, e.path))}") from e
        count += 1
    return count


def lint(chart_dir: Path, values: dict[str, Any]) -> None:
    report = helm.lint(str(chart_dir), values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    problems += report.get("errors") or []
    check(not problems, f"helm lint: {problems}")


def env_of(o: dict[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    return o[("ConfigMap", f"{RELEASE}-mailroom-env")]["data"]


def workload_of(o: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """The one workload: the StatefulSet (Maildir) or the Deployment (store.type=postgres)."""
    found = [o[(kind, f"{RELEASE}-mailroom")] for kind in ("StatefulSet", "Deployment") if (kind, f"{RELEASE}-mailroom") in o]
    check(len(found) == 1, f"exactly one StatefulSet or Deployment, got {len(found)}")
    return found[0]


def pod_of(o: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return workload_of(o)["spec"]["template"]["spec"]


def mounts_of(o: dict[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in pod_of(o)["containers"][0]["volumeMounts"]}


def service_of(o: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return o[("Service", f"{RELEASE}-mailroom")]["spec"]


# ---- what each set of values promises -------------------------------------------------

def expect_defaults(o: dict[tuple[str, str], dict[str, Any]]) -> None:
    sts = o[("StatefulSet", f"{RELEASE}-mailroom")]["spec"]
    pod = pod_of(o)
    ctr = pod["containers"][0]
    env = env_of(o)
    check(sts["replicas"] == 1, "one replica")
    check(pod["enableServiceLinks"] is False, "enableServiceLinks: false")
    psc, csc = pod["securityContext"], ctr["securityContext"]
    check(psc["runAsNonRoot"] and psc["runAsUser"] == 10001, "pod runs as 10001, non-root")
    check(psc["seccompProfile"]["type"] == "RuntimeDefault", "seccomp RuntimeDefault")
    check(psc["sysctls"] == [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}], "low-port sysctl")
    check(csc["readOnlyRootFilesystem"] and csc["capabilities"]["drop"] == ["ALL"], "read-only root, no capabilities")
    check(csc["allowPrivilegeEscalation"] is False, "no privilege escalation")
    probes = {p: ctr[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")}
    check(probes == {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}, f"probes {probes}")
    check(sts["volumeClaimTemplates"][0]["metadata"]["name"] == "data", "PVC template for /data")
    check(mounts_of(o)["data"] == "/data" and env["MAILROOM_DATA_DIR"] == "/data", "data dir on the PVC")
    svc = service_of(o)
    check(svc["type"] == "LoadBalancer" and svc["externalTrafficPolicy"] == "Local", "LB keeping client IPs")
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["ports"]}
    check(ports["smtp"] == (25, "smtp") and ports["imaps"] == (993, "imaps"), f"service ports {ports}")
    check(len(ports) == 10, "ten mail ports (ManageSieve included)")
    check(ports["managesieve"] == (4190, "managesieve"), f"ManageSieve port {ports}")
    check(env["MAILROOM_SMTP_LISTEN"] == ":25" and env["MAILROOM_METRICS_LISTEN"] == ":9090", "listen env")
    check("MAILROOM_PROXY_PROTOCOL_FROM" not in env, "no PROXY protocol by default")
    check(("ServiceMonitor", f"{RELEASE}-mailroom") not in o, "no ServiceMonitor by default")
    check(("PrometheusRule", f"{RELEASE}-mailroom") not in o, "no PrometheusRule by default")
    check(("Deployment", f"{RELEASE}-mailroom") not in o, "no Deployment with Maildir")
    check(not any(k[0] == "PodDisruptionBudget" for k in o), "no PDB for one replica")
    check(("Service", f"{RELEASE}-mailroom-headless") in o, "the StatefulSet's headless Service")
    check("MAILROOM_STORE_FILE" not in env and "MAILROOM_STORE" not in env, "Maildir: no store variable")
    check("affinity" not in pod, "no affinity by default")
    notes = o[("NOTES", "")]["text"]
    check("-- /mailroom dns" in notes and "grep password" in notes, "NOTES tell dns and password")


def expect_everything_on(o: dict[tuple[str, str], dict[str, Any]]) -> None:
    env, pod, mounts = env_of(o), pod_of(o), mounts_of(o)
    ctr = pod["containers"][0]
    check(env["MAILROOM_PROXY_PROTOCOL_FROM"] == "10.0.0.0/8,fd00::/8", "PROXY CIDRs")
    check(env["MAILROOM_ACCOUNTS_FILE"] == f"{mounts['accounts']}/users", "accounts file inside the Secret mount")
    check(env["MAILROOM_RELAY_PASSWORD_FILE"] == f"{mounts['relay']}/password", "relay password file")
    check(env["MAILROOM_TLS_CERT_FILE"] == f"{mounts['tls']}/tls.crt", "cert file inside the TLS mount")
    check(env["MAILROOM_TLS_KEY_FILE"] == f"{mounts['tls']}/tls.key", "key file inside the TLS mount")
    vols = {v["name"]: v for v in pod["volumes"]}
    check(vols["accounts"]["secret"]["secretName"] == "mail-accounts", "accounts Secret")
    cert = o[("Certificate", f"{RELEASE}-mailroom")]["spec"]
    check(vols["tls"]["secret"]["secretName"] == cert["secretName"], "pod mounts the Secret cert-manager fills")
    check(cert["dnsNames"] == ["mail.example.org"], "certificate for the hostname")
    check(env["MAILROOM_HOSTNAME"] == "mail.example.org" and env["MAILROOM_DOMAINS"] == "example.org,example.net", "typed values")
    check(env["MAILROOM_QUEUE_LIFETIME"] == "3d", "env map overrides typed value")
    check(env["MAILROOM_QUEUE_RETRY_MAX"] == "2h", "env map adds any variable")
    check(env["MAILROOM_POP3_LISTEN"] == "off", "disabled protocol is off")
    # remap mode: high container ports, real ports on the Service, no sysctl
    check("sysctls" not in pod["securityContext"], "no sysctl in remap mode")
    cports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    check(cports["smtp"] == 2525 and env["MAILROOM_SMTP_LISTEN"] == ":2525", "smtp on 2525 in the pod")
    check("pop3" not in cports, "disabled protocol has no port")
    svc = service_of(o)
    check(svc["type"] == "NodePort" and svc["externalTrafficPolicy"] == "Local", "NodePort keeping client IPs")
    sports = {p["name"]: p for p in svc["ports"]}
    check(sports["smtp"]["port"] == 25 and sports["smtp"]["targetPort"] == "smtp", "service maps 25 to the named port")
    check(sports["smtp"]["nodePort"] == 30025, "nodePort")
    check("pop3" not in sports, "disabled protocol not exposed")
    check({e["name"] for e in ctr["env"]} == {"MAILROOM_RELAY_HOST"}, "extraEnv passed through")
    check(pod["volumes"][1] == {"name": "data", "emptyDir": {}}, "emptyDir without persistence")
    sm = o[("ServiceMonitor", f"{RELEASE}-mailroom")]["spec"]
    metrics_svc = o[("Service", f"{RELEASE}-mailroom-metrics")]["metadata"]["labels"]
    check(all(metrics_svc.get(k) == v for k, v in sm["selector"]["matchLabels"].items()), "ServiceMonitor selects the metrics Service")
    dash = json.loads(o[("ConfigMap", f"{RELEASE}-mailroom-dashboard")]["data"]["mailroom.json"])
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
    missing = [m for m in DASHBOARD_METRICS if m not in exprs]
    check(not missing, f"dashboard lacks {missing}")
    check(o[("ConfigMap", f"{RELEASE}-mailroom-dashboard")]["metadata"]["labels"]["grafana_dashboard"] == "1", "sidecar label")
    rule = o[("PrometheusRule", f"{RELEASE}-mailroom")]
    shared = yaml.safe_load((Path(__file__).parents[2] / "helm/mailroom/monitoring/alerts.yaml").read_text())
    check(rule["spec"] == shared, "PrometheusRule carries monitoring/alerts.yaml verbatim")
    check(rule["metadata"]["labels"]["release"] == "monitoring", "PrometheusRule labels")
    check("PROXY protocol is required" in o[("NOTES", "")]["text"], "NOTES mention PROXY")


def expect_existing_tls(o: dict[tuple[str, str], dict[str, Any]]) -> None:
    pod, env = pod_of(o), env_of(o)
    vols = {v["name"]: v for v in pod["volumes"]}
    check(vols["tls"]["secret"]["secretName"] == "mail-tls", "existing TLS Secret mounted")
    check("MAILROOM_TLS_CERT_FILE" in env, "cert file set")
    check(not any(k[0] == "Certificate" for k in o), "no Certificate without cert-manager")
    svc = service_of(o)
    check(svc["type"] == "ClusterIP" and "externalTrafficPolicy" not in svc, "ClusterIP has no traffic policy")


def expect_postgres(o: dict[tuple[str, str], dict[str, Any]]) -> None:
    check(("StatefulSet", f"{RELEASE}-mailroom") not in o, "no StatefulSet on PostgreSQL")
    check(not any(k[0] == "PersistentVolumeClaim" for k in o), "no PersistentVolumeClaim")
    check(("Service", f"{RELEASE}-mailroom-headless") not in o, "no headless Service without a StatefulSet")
    deploy = o[("Deployment", f"{RELEASE}-mailroom")]["spec"]
    check(deploy["replicas"] == 3, "replicas: replicaCount")
    check("volumeClaimTemplates" not in deploy, "no PVC template")
    pod, env, mounts = pod_of(o), env_of(o), mounts_of(o)
    ctr = pod["containers"][0]
    vols = {v["name"]: v for v in pod["volumes"]}
    check(vols["data"] == {"name": "data", "emptyDir": {}}, "data dir on an emptyDir")
    check(mounts["data"] == "/data" and env["MAILROOM_DATA_DIR"] == "/data", "data dir mounted")
    check(not any("persistentVolumeClaim" in v for v in vols.values()), "no PVC volume")
    check(vols["store"]["secret"]["secretName"] == "mail-db", "store Secret")
    check(vols["store"]["secret"]["items"] == [{"key": "uri", "path": "uri"}], "only the URL key of the Secret")
    check(env["MAILROOM_STORE_FILE"] == f"{mounts['store']}/uri", "MAILROOM_STORE_FILE inside the Secret mount")
    check("MAILROOM_STORE" not in env, "the URL itself is never in the ConfigMap")
    check(vols["store-ca"]["secret"] == {"secretName": "mail-db-ca", "defaultMode": 0o440, "items": [{"key": "ca.crt", "path": "ca.crt"}]}, "only ca.crt of the CA Secret")
    check(mounts["store-ca"] == "/run/secrets/mailroom/store-ca", "CA where the README's sslrootcert points")
    probes = {p: ctr[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe", "readinessProbe")}
    check(probes == {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}, f"probes {probes}")
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    check(term["topologyKey"] == "kubernetes.io/hostname", "anti-affinity across nodes")
    check(term["labelSelector"]["matchLabels"] == deploy["selector"]["matchLabels"], "anti-affinity selects our pods")
    pdb = o[("PodDisruptionBudget", f"{RELEASE}-mailroom")]["spec"]
    check(pdb == {"maxUnavailable": 1, "selector": {"matchLabels": deploy["selector"]["matchLabels"]}}, f"PDB {pdb}")
    notes = o[("NOTES", "")]["text"]
    check("deploy/mail-mailroom -- /mailroom store check" in notes and "-mailroom-0" not in notes, "NOTES name the Deployment")
    check("DKIM keys" in notes and "Several replicas on PostgreSQL" in notes, "NOTES say what is per pod")


def expect_postgres_one(o: dict[tuple[str, str], dict[str, Any]]) -> None:
    deploy = o[("Deployment", f"{RELEASE}-mailroom")]["spec"]
    check(deploy["replicas"] == 1, "one replica")
    check(not any(k[0] == "PodDisruptionBudget" for k in o), "no PDB by default for one replica")
    check(not any(k[0] == "PersistentVolumeClaim" for k in o) and "volumeClaimTemplates" not in deploy, "no PVC even with persistence.enabled")
    pod, env = pod_of(o), env_of(o)
    check(env["MAILROOM_STORE_FILE"] == "/run/secrets/mailroom/store/url", "default secretKey url")
    check("store-ca" not in {v["name"] for v in pod["volumes"]}, "no CA mount unless asked")
    check(pod["affinity"] == OWN_AFFINITY, "user affinity replaces the default")


def expect_postgres_pdb(o: dict[tuple[str, str], dict[str, Any]]) -> None:
    pdb = o[("PodDisruptionBudget", f"{RELEASE}-mailroom")]["spec"]
    check(pdb.get("minAvailable") == "50%" and "maxUnavailable" not in pdb, f"PDB {pdb}")


def expect_postgres_s3(o: dict[tuple[str, str], dict[str, Any]]) -> None:
    pod, env, mounts = pod_of(o), env_of(o), mounts_of(o)
    vols = {v["name"]: v for v in pod["volumes"]}
    check(env["MAILROOM_BLOB_STORE"] == S3_URL, "MAILROOM_BLOB_STORE: store.s3.url")
    check(
        vols["s3"]["secret"] == {
            "secretName": "mail-s3",
            "defaultMode": 0o440,
            "items": [{"key": "access-key-id", "path": "access-key-id"}, {"key": "secret-access-key", "path": "secret-access-key"}],
        },
        f"only the two keys of the S3 Secret: {vols['s3']}",
    )
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "s3")
    check(mount.get("readOnly") is True and mounts["s3"] == "/run/secrets/mailroom/s3", "S3 Secret mounted read-only")
    check(env["MAILROOM_S3_ACCESS_KEY_ID_FILE"] == f"{mounts['s3']}/access-key-id", "access key id file inside the mount")
    check(env["MAILROOM_S3_SECRET_ACCESS_KEY_FILE"] == f"{mounts['s3']}/secret-access-key", "secret key file inside the mount")
    check("MAILROOM_S3_ACCESS_KEY_ID" not in env and "MAILROOM_S3_SECRET_ACCESS_KEY" not in env, "no S3 key in the ConfigMap")
    check(env["MAILROOM_STORE_FILE"] == f"{mounts['store']}/uri", "the database URL still from its Secret")
    check("mail-s3" in o[("NOTES", "")]["text"], "NOTES name the S3 Secret")


def expect_postgres_s3_keys(o: dict[tuple[str, str], dict[str, Any]]) -> None:
    pod, env, mounts = pod_of(o), env_of(o), mounts_of(o)
    vols = {v["name"]: v for v in pod["volumes"]}
    check(vols["s3"]["secret"]["items"] == [{"key": "AWS_ACCESS_KEY_ID", "path": "AWS_ACCESS_KEY_ID"}, {"key": "AWS_SECRET_ACCESS_KEY", "path": "AWS_SECRET_ACCESS_KEY"}], "own key names")
    check(env["MAILROOM_S3_ACCESS_KEY_ID_FILE"] == f"{mounts['s3']}/AWS_ACCESS_KEY_ID", "own access key id name")
    check(env["MAILROOM_S3_SECRET_ACCESS_KEY_FILE"] == f"{mounts['s3']}/AWS_SECRET_ACCESS_KEY", "own secret key name")


def expect_postgres_no_s3(o: dict[tuple[str, str], dict[str, Any]]) -> None:
    env, pod = env_of(o), pod_of(o)
    check(not any(k.startswith("MAILROOM_S3_") or k == "MAILROOM_BLOB_STORE" for k in env), "no S3 variable without store.s3.url")
    check("s3" not in {v["name"] for v in pod["volumes"]}, "no S3 mount without store.s3.url")


S3_URL = "s3://mail-bodies/mailroom?endpoint=https://s3.example.org&region=eu-central-1"

OWN_AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "mail", "operator": "Exists"}]}]}}}

POSTGRES: dict[str, Any] = {
    "store": {"type": "postgres", "postgres": {"existingSecret": "mail-db", "secretKey": "uri", "caSecret": "mail-db-ca"}},
    "replicaCount": 3,
    "accounts": {"existingSecret": "mail-accounts"},
    "tls": {"existingSecret": "mail-tls"},
}

POSTGRES_S3: dict[str, Any] = {
    **POSTGRES,
    "store": {**POSTGRES["store"], "s3": {"url": S3_URL, "existingSecret": "mail-s3"}},
}

EVERYTHING_ON: dict[str, Any] = {
    "mailroom": {"hostname": "mail.example.org", "domains": ["example.org", "example.net"], "queueLifetime": "5d"},
    "env": {"MAILROOM_QUEUE_LIFETIME": "3d", "MAILROOM_QUEUE_RETRY_MAX": "2h"},
    "extraEnv": [{"name": "MAILROOM_RELAY_HOST", "valueFrom": {"secretKeyRef": {"name": "relay", "key": "host"}}}],
    "accounts": {"existingSecret": "mail-accounts", "key": "users"},
    "relay": {"existingSecret": "mail-relay"},
    "tls": {"certManager": {"enabled": True, "renewBefore": "720h"}},
    "proxyProtocol": {"enabled": True, "from": ["10.0.0.0/8", "fd00::/8"]},
    "lowPorts": {"mode": "remap"},
    "protocols": {"smtp": {"nodePort": 30025}, "pop3": {"enabled": False}},
    "service": {"type": "NodePort"},
    "metrics": {"serviceMonitor": {"enabled": True}, "dashboard": {"enabled": True}},
    "prometheusRule": {"enabled": True, "labels": {"release": "monitoring"}},
    "persistence": {"enabled": False},
}

SCENARIOS: list[tuple[str, dict[str, Any], Callable[[dict[tuple[str, str], dict[str, Any]]], None]]] = [
    ("defaults", {}, expect_defaults),
    ("existing secret, cert-manager, PROXY, NodePort, remap, ServiceMonitor, dashboard", EVERYTHING_ON, expect_everything_on),
    ("existing TLS secret, ClusterIP", {"tls": {"existingSecret": "mail-tls"}, "service": {"type": "ClusterIP"}}, expect_existing_tls),
    ("PostgreSQL store, 3 replicas, operator CA", POSTGRES, expect_postgres),
    (
        "PostgreSQL store, 1 replica, own affinity",
        {
            "store": {"type": "postgres", "postgres": {"existingSecret": "mail-db"}},
            "accounts": {"existingSecret": "mail-accounts"},
            "affinity": OWN_AFFINITY,
        },
        expect_postgres_one,
    ),
    ("PostgreSQL store, PDB minAvailable", {**POSTGRES, "podDisruptionBudget": {"minAvailable": "50%"}}, expect_postgres_pdb),
    ("PostgreSQL store, bodies in S3", POSTGRES_S3, lambda o: (expect_postgres(o), expect_postgres_s3(o))),
    (
        "PostgreSQL store, bodies in S3, own key names",
        {**POSTGRES, "store": {**POSTGRES["store"], "s3": {"url": "s3://b", "existingSecret": "aws", "accessKeyIdKey": "AWS_ACCESS_KEY_ID", "secretAccessKeyKey": "AWS_SECRET_ACCESS_KEY"}}},
        expect_postgres_s3_keys,
    ),
    ("PostgreSQL store, no bucket", POSTGRES, expect_postgres_no_s3),
]

# Values the chart must refuse, and a word the error must contain.
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("PROXY without CIDRs", {"proxyProtocol": {"enabled": True}}, "proxyProtocol.from"),
    ("cert-manager without a name", {"tls": {"certManager": {"enabled": True}}}, "hostname"),
    ("two certificate sources", {"mailroom": {"hostname": "m.example.org"}, "tls": {"existingSecret": "x", "certManager": {"enabled": True}}}, "not both"),
    ("unknown low-port mode", {"lowPorts": {"mode": "root"}}, "mode"),
    ("env key outside MAILROOM_*", {"env": {"PATH": "/bin"}}, "PATH"),
    ("misspelt top-level key", {"persistance": {"enabled": False}}, "persistance"),
    ("two replicas on Maildir", {"replicaCount": 2}, "replicaCount 2 needs store.type=postgres"),
    ("PostgreSQL without the URL Secret", {"store": {"type": "postgres"}, "accounts": {"existingSecret": "a"}}, "store.postgres.existingSecret"),
    ("the store URL in a ConfigMap", {"env": {"MAILROOM_STORE": "postgres://u:pw@db/m"}}, "env.MAILROOM_STORE"),
    ("PDB with both bounds", {**POSTGRES, "podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}}, "not both"),
    ("unknown store type", {"store": {"type": "s3"}}, "store"),
    ("S3 bodies on Maildir", {"store": {"s3": {"url": S3_URL, "existingSecret": "mail-s3"}}}, "store.s3.url needs store.type=postgres"),
    ("S3 bodies without the key Secret", {**POSTGRES, "store": {**POSTGRES["store"], "s3": {"url": S3_URL}}}, "store.s3.existingSecret"),
    ("the S3 secret key in a ConfigMap", {**POSTGRES_S3, "env": {"MAILROOM_S3_SECRET_ACCESS_KEY": "x"}}, "env.MAILROOM_S3_SECRET_ACCESS_KEY"),
    ("the S3 key id in a ConfigMap", {**POSTGRES_S3, "env": {"MAILROOM_S3_ACCESS_KEY_ID": "x"}}, "env.MAILROOM_S3_ACCESS_KEY_ID"),
    ("an S3 URL that is not s3://", {**POSTGRES_S3, "store": {**POSTGRES_S3["store"], "s3": {"url": "https://s3.example.org/b", "existingSecret": "mail-s3"}}}, "url"),
    ("zero replicas", {"replicaCount": 0}, "replicaCount"),
]


def main() -> int:
    chart_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "helm/mailroom").resolve()
    failures = 0
    with helm.Chart.load(str(chart_dir)) as chart:
        for title, values, expect in SCENARIOS:
            try:
                chart.validate_schema(values)
                lint(chart_dir, values)
                objects = render(chart, values)
                n = validate(objects)
                expect(objects)
                print(f"ok    render [{title}]: {n} manifests valid for Kubernetes {KUBE_VERSION}")
            except (Failed, helm.HelmError) as e:
                failures += 1
                print(f"FAIL  render [{title}]: {e}")
        for title, values, word in REFUSED:
            try:
                chart.validate_schema(values)
                render(chart, values)
                failures += 1
                print(f"FAIL  refuse [{title}]: rendered without error")
            except helm.HelmError as e:
                if word in str(e):
                    print(f"ok    refuse [{title}]")
                else:
                    failures += 1
                    print(f"FAIL  refuse [{title}]: error does not mention {word!r}: {e}")
    total = len(SCENARIOS) + len(REFUSED)
    print(f"chart: {total - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
