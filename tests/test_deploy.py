"""deploy/k8s/ of a rendered web service: every manifest passes kubernetes-validate
--strict, every pod meets the restricted Pod Security Standard, secrets come from a
Secret, and the probes the Deployment names behave as it needs: liveness answers while
the database is down, readiness does not."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import URL

from tests.rendering import render_service
from tests.serving import free_port, served

RESOURCES = ("migrate-job.yaml", "deployment.yaml", "service.yaml", "pod-disruption-budget.yaml")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_service(tmp_path_factory.mktemp("deploy") / "service", web_framework="fastapi")


def manifest(project: Path, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((project / "deploy" / "k8s" / name).read_text())
    return loaded


def test_every_manifest_is_valid_kubernetes(project: Path) -> None:
    folder = project / "deploy" / "k8s"
    kustomization = manifest(project, "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(RESOURCES)
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        [*RESOURCES, "kustomization.yaml"]
    )
    validated = subprocess.run(
        [
            str(Path(sys.executable).with_name("kubernetes-validate")),
            "--strict",
            *(str(folder / name) for name in RESOURCES),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert validated.stdout.count(" passed for resource ") == len(RESOURCES)


@pytest.mark.parametrize("name", ["migrate-job.yaml", "deployment.yaml"])
def test_pods_are_restricted_and_take_secrets_from_a_secret(project: Path, name: str) -> None:
    pod = manifest(project, name)["spec"]["template"]["spec"]
    image = manifest(project, "kustomization.yaml")["images"][0]["name"]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # The Dockerfile's USER.
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        assert container["image"] == image
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert container["resources"]["requests"] and container["resources"]["limits"]
        for variable in container["env"]:
            if "URL" in variable["name"] or "PASSWORD" in variable["name"]:
                assert "value" not in variable, variable
                assert variable["valueFrom"]["secretKeyRef"]["name"] == "my-service-database"
    dockerfile = (project / "Dockerfile").read_text()
    assert "\nUSER 10001:10001\n" in dockerfile


def test_the_job_migrates_directly_and_the_deployment_keeps_capacity(project: Path) -> None:
    job = manifest(project, "migrate-job.yaml")
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert {variable["name"] for variable in migrate["env"]} >= {
        "MIGRATION_DATABASE_URL",
        "MIGRATION_LOCK_TIMEOUT_MS",
        "MIGRATION_LOCK_RETRY_SECONDS",
    }
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"

    deployment = manifest(project, "deployment.yaml")
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == pod_labels
    assert manifest(project, "service.yaml")["spec"]["selector"] == pod_labels
    budget = manifest(project, "pod-disruption-budget.yaml")
    assert budget["spec"]["selector"]["matchLabels"] == pod_labels


def test_liveness_holds_while_the_database_is_down_and_readiness_does_not(
    project: Path,
) -> None:
    (app,) = manifest(project, "deployment.yaml")["spec"]["template"]["spec"]["containers"]
    probes = {name: app[name]["httpGet"]["path"] for name in ("startupProbe", "livenessProbe")}
    readiness = app["readinessProbe"]["httpGet"]["path"]
    closed = URL.create("postgresql", "postgres", "secret", "127.0.0.1", free_port(), "service")

    with served(project, "src", closed) as (base, _):
        for path in probes.values():
            assert httpx.get(f"{base}{path}", timeout=10).status_code == 200
        assert httpx.get(f"{base}{readiness}", timeout=10).status_code == 503
