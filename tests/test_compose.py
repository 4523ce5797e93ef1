"""docker-compose.yml and the Dockerfile: every image at an exact version, and only the gateway
published beyond this machine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from libs.settings import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
# An exact release: x.y.z, or x.y for images whose releases are x.y (postgres), with an optional
# variant suffix (-alpine, -slim-bookworm) and an optional v prefix (mailpit).
EXACT_TAG = re.compile(r":v?\d+\.\d+(\.\d+)?(-[a-z0-9.-]+)?$")
BUILT_HERE = "courseplatform:dev"
# The optional `observability` profile (README "Observing it").
OBSERVABILITY = ("prometheus", "grafana", "jaeger")


def images() -> dict[str, str]:
    return {name: spec["image"] for name, spec in COMPOSE["services"].items() if "image" in spec}


def test_every_pulled_image_has_an_exact_version() -> None:
    pulled = {name: image for name, image in images().items() if image != BUILT_HERE}
    assert {"postgres", "redis", "mailpit"} <= set(pulled)
    for name, image in pulled.items():
        assert EXACT_TAG.search(image), f"{name}: {image}"
    # The same tag as in the Kubernetes dev overlay where that manifest runs the same image.
    assert pulled["mailpit"] == "axllent/mailpit:v1.22.3"


def test_the_dockerfile_base_images_are_exact() -> None:
    bases = re.findall(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert len(bases) == 2
    for base in bases:
        assert EXACT_TAG.search(base) and re.search(r":3\.11\.\d+-", base), base


def test_only_the_gateway_is_published_beyond_loopback() -> None:
    published = {
        name: spec.get("ports", [])
        for name, spec in COMPOSE["services"].items()
        if spec.get("ports")
    }
    assert published.pop("gateway") == ["8000:8000"]
    assert set(published) == {
        "mailpit",
        "identity",
        "catalog",
        "learning",
        "notifier",
        *OBSERVABILITY,
    }
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_the_observability_profile_is_provisioned_from_deploy() -> None:
    services = COMPOSE["services"]
    for name in OBSERVABILITY:
        assert services[name]["profiles"] == ["observability"], name
    mounts = [m.split(":")[0] for n in OBSERVABILITY for m in services[n].get("volumes", [])]
    for mount in mounts:
        assert (ROOT / mount).exists(), mount
    scraped = yaml.safe_load((ROOT / "deploy/observability/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scraped["scrape_configs"]}
    # Every platform process is scraped, each on the port it serves /metrics on.
    assert set(jobs) == {
        f"courseplatform-{n}" for n in ("gateway", "identity", "catalog", "learning", "notifier")
    }
    targets = {name: job["static_configs"][0]["targets"] for name, job in jobs.items()}
    defaults = Settings()
    for name in ("identity", "catalog", "learning"):
        port = getattr(defaults, f"{name}_metrics_port")
        assert targets[f"courseplatform-{name}"] == [f"{name}:{port}"]
    assert targets["courseplatform-gateway"] == [f"gateway:{defaults.gateway_port}"]
    assert targets["courseplatform-notifier"] == [f"notifier:{defaults.notifier_health_port}"]
