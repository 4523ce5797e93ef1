"""The Kubernetes manifests, checked offline: `kubectl kustomize` renders each overlay, every object
validates against the Kubernetes 1.32 schemas (kubernetes-validate, strict: unknown fields are
errors), and the rendered objects agree with the code: ports, probes, env var names, shutdown
grace, security settings, replicas, policies (docs/deploy.md "How the manifests are checked").

CRDs: the CloudNativePG `Cluster` is not schema-checked (no schema of it ships with a package we
can install offline); it is only rendered. Nothing here runs a cluster.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import TypeAdapter

from libs.grpc_server import LIVENESS_SERVICE
from libs.settings import Settings
from libs.signing_keys import JWKS_FILE, ensure_signing_key, load_active_signing_key

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "production", "production-external-db")
PRODUCTION = ("production", "production-external-db")
KUBERNETES_VERSION = "1.32"
# Custom resources rendered but not schema-validated, and why (see the module docstring).
UNVALIDATED_CRDS = {
    ("postgresql.cnpg.io/v1", "Cluster"),
    # Prometheus operator objects: their content is checked by tests/test_observability_rules.py.
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

APPS = ("identity", "catalog", "learning", "notifier", "gateway")
GRPC_PORT_SETTING = {
    "identity": "identity_port",
    "catalog": "catalog_port",
    "learning": "learning_port",
}
HTTP_PROBES = {
    # service: (port setting, readiness path, liveness path)
    "gateway": ("gateway_port", "/readyz/", "/healthz/"),
    "notifier": ("notifier_health_port", "/health", "/livez"),
}
MIGRATED = ("identity", "catalog", "learning", "notifier")
VERIFIERS = ("gateway", "catalog", "learning")
HPA_SERVICES = ("gateway", "catalog", "learning")
# uvicorn's graceful shutdown in gateway/__main__.py (timeout_graceful_shutdown).
GATEWAY_SHUTDOWN_S = 10
# Objects the operator creates (docs/deploy.md "Secrets you create"); CloudNativePG creates the app
# Secret itself.
CREATED_OUTSIDE = {
    "dev": set(),
    "production": {"smtp", "identity-signing-keys", "jwks", "courseplatform-pg-app"},
    "production-external-db": {"smtp", "identity-signing-keys", "jwks", "database"},
}
SETTINGS_FIELDS = {name.upper() for name in Settings.model_fields}


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl is required in CI to render the manifests")
        pytest.skip("kubectl not installed: manifests not rendered")
    return found


_rendered: dict[str, list[dict[str, Any]]] = {}


def render(overlay: str) -> list[dict[str, Any]]:
    if overlay not in _rendered:
        result = subprocess.run(
            [kubectl(), "kustomize", str(DEPLOY / "overlays" / overlay)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        _rendered[overlay] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return _rendered[overlay]


def objects(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in render(overlay) if o["kind"] == kind}


def workloads(overlay: str) -> dict[str, dict[str, Any]]:
    return {**objects(overlay, "Deployment"), **objects(overlay, "StatefulSet")}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def all_containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def main_container(overlay: str, app: str) -> dict[str, Any]:
    (container,) = [c for c in pod_spec(workloads(overlay)[app])["containers"] if c["name"] == app]
    return container


def is_platform_image(image: str) -> bool:
    return image.rsplit(":", 1)[0].rsplit("/", 1)[-1] == "courseplatform"


def env_of(overlay: str, container: dict[str, Any]) -> dict[str, Any]:
    """Name -> value (a string, or the valueFrom dict) as the container will see it."""
    config_maps = objects(overlay, "ConfigMap")
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, f"envFrom must be a rendered ConfigMap: {source}"
        env.update(config_maps[source["configMapRef"]["name"]]["data"])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


def setting(env: dict[str, Any], field: str) -> Any:
    """The value Settings would take for `field` from this env (the default when unset)."""
    info = Settings.model_fields[field]
    if field.upper() in env:
        return TypeAdapter(info.annotation).validate_python(env[field.upper()])
    return info.default


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and In/NotIn/Exists) against a label set."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        present = expr["key"] in labels
        value = labels.get(expr["key"])
        operator = expr["operator"]
        if operator == "In" and value not in expr["values"]:
            return False
        if operator == "NotIn" and value in expr["values"]:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def prestop_sleep_s(container: dict[str, Any]) -> int:
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    if not command:
        return 0
    assert command[0] == "sleep", command
    return int(command[1])


# --- rendering and schemas -----------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_pinned_kubernetes_schemas(overlay: str) -> None:
    skipped = []
    for obj in render(overlay):
        if (obj["apiVersion"], obj["kind"]) in UNVALIDATED_CRDS:
            skipped.append(obj["kind"])
            continue
        # Raises on a schema violation; SchemaNotFoundError for any kind we did not expect.
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    monitoring = ["PodMonitor", "PodMonitor", "PrometheusRule"] if overlay != "dev" else []
    cluster = ["Cluster"] if overlay == "production" else []
    assert sorted(skipped) == sorted(cluster + monitoring)


def test_the_validator_really_rejects_a_misspelt_field() -> None:
    deployment = json.loads(json.dumps(workloads("dev")["catalog"]))
    pod_spec(deployment)["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_platform_image_per_overlay_and_every_image_pinned(overlay: str) -> None:
    platform = set()
    for workload in workloads(overlay).values():
        for container in all_containers(pod_spec(workload)):
            image = container["image"]
            assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), image
            if is_platform_image(image):
                platform.add(image)
    expected = "courseplatform:dev" if overlay == "dev" else "registry.example.com/courseplatform"
    assert len(platform) == 1 and next(iter(platform)).startswith(expected), platform


# --- agreement with the code -----------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_env_var_the_platform_containers_get_is_a_settings_field(overlay: str) -> None:
    for name, workload in workloads(overlay).items():
        for container in all_containers(pod_spec(workload)):
            if is_platform_image(container["image"]):
                env = env_of(overlay, container)
                unknown = set(env) - SETTINGS_FIELDS
                assert not unknown, f"{name}/{container['name']}: not Settings fields: {unknown}"
                # And every literal value parses as its field's type.
                literals = {k.lower(): v for k, v in env.items() if isinstance(v, str)}
                Settings(**literals)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_referenced_secrets_and_configmaps_exist_or_are_documented(overlay: str) -> None:
    rendered = {**objects(overlay, "Secret"), **objects(overlay, "ConfigMap")}
    for name, workload in workloads(overlay).items():
        spec = pod_spec(workload)
        refs: list[tuple[str, str | None, bool]] = []
        for container in all_containers(spec):
            for item in container.get("env", []):
                for kind in ("secretKeyRef", "configMapKeyRef"):
                    if ref := item.get("valueFrom", {}).get(kind):
                        refs.append((ref["name"], ref["key"], ref.get("optional", False)))
        for volume in spec.get("volumes", []):
            sources = volume.get("projected", {}).get("sources", [volume])
            for source in sources:
                for kind, key in (("secret", "secretName"), ("configMap", "name")):
                    if kind in source:
                        refs.append((source[kind].get(key) or source[kind]["name"], None, False))
        for ref_name, key, optional in refs:
            if ref_name in rendered:
                data = {
                    **rendered[ref_name].get("data", {}),
                    **rendered[ref_name].get("stringData", {}),
                }
                assert key is None or optional or key in data, f"{name}: {ref_name} lacks {key}"
            else:
                assert ref_name in CREATED_OUTSIDE[overlay], (
                    f"{name}: {ref_name} comes from nowhere"
                )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_and_probes_agree_with_the_settings(overlay: str) -> None:
    for app in APPS:
        container = main_container(overlay, app)
        env = env_of(overlay, container)
        if app in GRPC_PORT_SETTING:
            port = setting(env, GRPC_PORT_SETTING[app])
            # Probes reach the pod IP: a loopback bind would fail every one of them.
            assert setting(env, "grpc_bind_host") in ("0.0.0.0", "::", "[::]")
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["grpc"]["port"] == port, (app, probe)
            # Readiness follows the database (overall status); liveness and startup only ask
            # whether the process answers, so a database outage restarts no pod.
            assert container["readinessProbe"]["grpc"].get("service", "") == ""
            for probe in ("startupProbe", "livenessProbe"):
                assert container[probe]["grpc"]["service"] == LIVENESS_SERVICE, (app, probe)
        else:
            port_field, ready_path, live_path = HTTP_PROBES[app]
            port = setting(env, port_field)
            host_field = "gateway_host" if app == "gateway" else "notifier_health_host"
            assert setting(env, host_field) in ("0.0.0.0", "::", "[::]")
            assert container["readinessProbe"]["httpGet"] == {"path": ready_path, "port": port}
            assert container["livenessProbe"]["httpGet"] == {"path": live_path, "port": port}
            assert container["startupProbe"]["httpGet"] == {"path": live_path, "port": port}
        # The metrics port (METRICS_PORT) next to the serving port; the notifier serves
        # /metrics on its health port.
        metrics_port = setting(env, "metrics_port")
        extra = [metrics_port] if app != "notifier" else []
        assert [p["containerPort"] for p in container["ports"]] == [port, *extra], app


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_targets_and_urls_name_services_that_reach_the_right_pods(overlay: str) -> None:
    services = objects(overlay, "Service")
    deployments = workloads(overlay)
    env = env_of(overlay, main_container(overlay, "gateway"))
    for app, port_field in GRPC_PORT_SETTING.items():
        target = setting(env, f"{app}_target")
        match = re.fullmatch(r"dns:///([a-z0-9-]+):(\d+)", target)
        assert match, target
        service = services[match.group(1)]
        # Headless, so DNS lists every pod for round_robin.
        assert service["spec"]["clusterIP"] == "None"
        assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(deployments[app]))
        (port,) = service["spec"]["ports"]
        assert port["port"] == int(match.group(2)) == setting(env, port_field)
    redis_url = setting(env_of(overlay, main_container(overlay, "learning")), "redis_url")
    assert re.fullmatch(r"redis://redis:6379/\d+", redis_url) and "redis" in services


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_shutdown_grace_fits_in_the_termination_grace_period(overlay: str) -> None:
    for app in APPS:
        spec = pod_spec(workloads(overlay)[app])
        container = main_container(overlay, app)
        env = env_of(overlay, container)
        if app in GRPC_PORT_SETTING:
            drain = setting(env, "grpc_shutdown_grace_s")
        elif app == "notifier":
            drain = setting(env, "notifier_shutdown_grace_s")
        else:
            drain = GATEWAY_SHUTDOWN_S
        assert spec["terminationGracePeriodSeconds"] > prestop_sleep_s(container) + drain, app
        if app != "notifier":  # the ones that take traffic leave the endpoints first
            assert prestop_sleep_s(container) > 0, app


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_locked_down_and_sized(overlay: str) -> None:
    for name, workload in workloads(overlay).items():
        spec = pod_spec(workload)
        pod = spec.get("securityContext", {})
        assert spec["automountServiceAccountToken"] is False, name
        # Service links would set e.g. GATEWAY_PORT=tcp://10.0.0.7:8000 in every pod.
        assert spec["enableServiceLinks"] is False, name
        for container in all_containers(spec):
            where = f"{name}/{container['name']}"
            own = container["securityContext"]
            assert own["allowPrivilegeEscalation"] is False, where
            assert own["readOnlyRootFilesystem"] is True, where
            assert own["capabilities"]["drop"] == ["ALL"], where
            assert own.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, where
            seccomp = own.get("seccompProfile", pod.get("seccompProfile"))
            assert seccomp == {"type": "RuntimeDefault"}, where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), where
            if is_platform_image(container["image"]):
                mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
                volumes = {v["name"]: v for v in spec["volumes"]}
                assert "emptyDir" in volumes[mounts["/tmp"]], where


def test_the_pods_run_as_the_images_user() -> None:
    user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert user, "the Dockerfile's USER must be numeric uid:gid"
    for overlay in OVERLAYS:
        for app in APPS:
            pod = pod_spec(workloads(overlay)[app])["securityContext"]
            assert (str(pod["runAsUser"]), str(pod["runAsGroup"])) == user.groups()
            assert str(pod["fsGroup"]) == user.group(2)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migrations_run_in_an_init_container_of_each_service_with_a_schema(overlay: str) -> None:
    for app in APPS:
        spec = pod_spec(workloads(overlay)[app])
        inits = spec.get("initContainers", [])
        if app not in MIGRATED:
            assert inits == [], app
            continue
        (init,) = inits
        main = main_container(overlay, app)
        assert init["command"] == ["python", "-m", "libs.migrations", app]
        assert init["image"] == main["image"]
        assert env_of(overlay, init)["DATABASE_URL"] == env_of(overlay, main)["DATABASE_URL"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_private_keys_reach_identity_only_and_verifiers_mount_the_jwks_as_a_directory(
    overlay: str,
) -> None:
    for name, workload in workloads(overlay).items():
        spec = pod_spec(workload)
        text = json.dumps(spec)
        if name != "identity":
            assert "identity-signing-keys" not in text, name
        for container in all_containers(spec):
            for mount in container.get("volumeMounts", []):
                assert "subPath" not in mount, f"{name}: subPath mounts never update"
    identity = pod_spec(workloads(overlay)["identity"])
    keys_dir = setting(env_of(overlay, main_container(overlay, "identity")), "jwt_keys_dir")
    (mount,) = [
        m for m in main_container(overlay, "identity")["volumeMounts"] if m["name"] == "keys"
    ]
    assert Path(mount["mountPath"]) == keys_dir and mount["readOnly"] is True
    (volume,) = [v for v in identity["volumes"] if v["name"] == "keys"]
    sources = volume["projected"]["sources"]
    assert {"secret": {"name": "identity-signing-keys"}} in sources
    assert {"configMap": {"name": "jwks"}} in sources
    for app in VERIFIERS:
        spec = pod_spec(workloads(overlay)[app])
        keys_dir = setting(env_of(overlay, main_container(overlay, app)), "jwt_keys_dir")
        (mount,) = [m for m in main_container(overlay, app)["volumeMounts"] if m["name"] == "keys"]
        assert Path(mount["mountPath"]) == keys_dir, app
        (volume,) = [v for v in spec["volumes"] if v["name"] == "keys"]
        assert volume["configMap"]["name"] == "jwks", app


def test_the_dev_key_and_its_jwks_let_identity_start(tmp_path: Path) -> None:
    dev_keys = DEPLOY / "overlays" / "dev" / "dev-keys"
    for path in dev_keys.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    ensure_signing_key(tmp_path)  # raises if the JWKS does not publish the key
    assert load_active_signing_key(tmp_path)[0] == "0000-dev-only-insecure"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["0000-dev-only-insecure.private.pem", JWKS_FILE]
    )


# --- topology --------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", PRODUCTION)
def test_production_runs_every_service_at_least_twice_with_budgets_and_spread(
    overlay: str,
) -> None:
    deployments = objects(overlay, "Deployment")
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]: h
        for h in objects(overlay, "HorizontalPodAutoscaler").values()
    }
    assert set(hpas) == set(HPA_SERVICES)
    for app, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert hpa["spec"]["minReplicas"] >= 2
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        # The HPA owns the count; one in the manifest would reset it on every apply.
        assert "replicas" not in deployments[app]["spec"], app
    for app in APPS:
        if app not in hpas:
            assert deployments[app]["spec"]["replicas"] >= 2, app
        spread = pod_spec(deployments[app])["topologySpreadConstraints"]
        by_node = [c for c in spread if c["topologyKey"] == "kubernetes.io/hostname"]
        assert by_node and by_node[0]["whenUnsatisfiable"] == "DoNotSchedule", app
        assert selects(by_node[0]["labelSelector"], pod_labels(deployments[app]))
    budgets = objects(overlay, "PodDisruptionBudget").values()
    for app in APPS:
        covering = [
            b for b in budgets if selects(b["spec"]["selector"], pod_labels(deployments[app]))
        ]
        assert len(covering) == 1, app
    assert "mailpit" not in deployments and "postgres" not in workloads(overlay)
    (ingress,) = objects(overlay, "Ingress").values()
    (rule,) = ingress["spec"]["rules"]
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": "gateway",
        "port": {"name": "http"},
    }


def test_dev_runs_one_of_each_with_its_own_database_and_mail_catcher() -> None:
    deployments = objects("dev", "Deployment")
    for app in APPS:
        assert deployments[app]["spec"]["replicas"] == 1, app
    assert "mailpit" in deployments and "postgres" in objects("dev", "StatefulSet")
    assert env_of("dev", main_container("dev", "notifier"))["SMTP_HOST"]["secretKeyRef"]["name"]
    smtp = next(s for n, s in objects("dev", "Secret").items() if n.startswith("smtp"))
    assert smtp["data"]["SMTP_HOST"] and "HorizontalPodAutoscaler" not in {
        o["kind"] for o in render("dev")
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_redis_keeps_the_stream_on_its_volume(overlay: str) -> None:
    redis = objects(overlay, "StatefulSet")["redis"]
    (container,) = pod_spec(redis)["containers"]
    args = container["args"]
    option = {args[i]: args[i + 1] for i in range(1, len(args) - 1, 2)}
    assert option["--appendonly"] == "yes"
    assert option["--appendfsync"] in ("everysec", "always")
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == option["--dir"]


def test_the_cloudnative_pg_overlay_points_every_database_url_at_the_operators_secret() -> None:
    (cluster,) = [o for o in render("production") if o["kind"] == "Cluster"]
    app_secret = f"{cluster['metadata']['name']}-app"
    for app in MIGRATED:
        for container in all_containers(pod_spec(workloads("production")[app])):
            ref = env_of("production", container)["DATABASE_URL"]["secretKeyRef"]
            assert ref == {"name": app_secret, "key": "uri"}, app
        ref = env_of("production-external-db", main_container("production-external-db", app))
        assert ref["DATABASE_URL"]["secretKeyRef"] == {"name": "database", "key": "DATABASE_URL"}


# --- network policies ------------------------------------------------------------------------


def allowed_sources(overlay: str, target_labels: dict[str, str]) -> set[str] | None:
    """Which platform pods may connect to pods with `target_labels`: None when no policy but the
    default deny selects them."""
    pods = {name: pod_labels(w) for name, w in workloads(overlay).items()}
    selected = [
        p
        for p in objects(overlay, "NetworkPolicy").values()
        if selects(p["spec"]["podSelector"], target_labels)
    ]
    rules = [rule for p in selected for rule in p["spec"].get("ingress", [])]
    if not rules:
        return None
    sources: set[str] = set()
    for rule in rules:
        for peer in rule.get("from", []):
            if "podSelector" in peer and "namespaceSelector" not in peer:
                sources |= {n for n, labels in pods.items() if selects(peer["podSelector"], labels)}
            else:
                sources.add("namespace:" + json.dumps(peer["namespaceSelector"]["matchLabels"]))
    return sources


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default_and_admit_only_the_callers(overlay: str) -> None:
    policies = objects(overlay, "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    pods = {name: pod_labels(w) for name, w in workloads(overlay).items()}
    ingress_nginx = 'namespace:{"kubernetes.io/metadata.name": "ingress-nginx"}'
    expected = {
        "gateway": {ingress_nginx},
        "identity": {"gateway", "learning"},
        "catalog": {"gateway", "learning"},
        "learning": {"gateway"},
        # Token revocations: every verifier follows them, identity publishes them.
        "redis": {"gateway", "identity", "catalog", "learning", "notifier"},
        "notifier": None,
    }
    if overlay == "dev":
        expected |= {"postgres": set(MIGRATED), "mailpit": {"notifier"}}
    else:  # Prometheus scrapes the platform's pods (components/production/monitoring.yaml)
        monitoring = 'namespace:{"kubernetes.io/metadata.name": "monitoring"}'
        for app in APPS:
            expected[app] = (expected[app] or set()) | {monitoring}
    assert set(pods) == set(expected)
    for name, sources in expected.items():
        assert allowed_sources(overlay, pods[name]) == sources, name
    if overlay == "production":
        cnpg_pod = {"cnpg.io/cluster": "courseplatform-pg"}
        allowed = allowed_sources(overlay, cnpg_pod)
        assert allowed is not None and set(MIGRATED) <= allowed
