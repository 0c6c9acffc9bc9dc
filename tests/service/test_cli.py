"""The ``projector`` command line as an operator meets it: options, exit codes, start-up.

Most tests run the real command (``python -m service``, as ``projector`` does)
in a subprocess; the quick exit-code checks call ``service.cli.main``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from projector.settings import Settings
from projector.store.writer import Store
from projector.tools.broker import free_port
from service.cli import COMMANDS, main
from tests.fixtures.golden import golden_events
from tests.fixtures.processes import projector_cmd

# Every command and the options its --help must show: the documented interface.
OPTIONS = {
    "broker": ["--host", "--port", "--partitions", "--no-topics"],
    "topics": ["--bootstrap", "--partitions"],
    "worker": [
        "--bootstrap", "--db", "--partitions", "--flush-max-events", "--flush-interval-ms",
        "--until-caught-up", "--group", "--advertise",
    ],
    "serve": [
        "--bootstrap", "--db", "--host", "--port", "--api-keys", "--partitions",
        "--flush-max-events", "--flush-interval-ms", "--group", "--advertise",
    ],
    "api": ["--db", "--host", "--port", "--api-keys"],
    "simulate": [
        "--bootstrap", "--campaigns", "--recipients", "--rate", "--seed", "--out", "--array-size",
    ],
    "produce": ["file", "--bootstrap", "--skip-invalid", "--array-size"],
    "demo": ["--host", "--port", "--api-keys", "--no-sim", "--rate", "--campaigns", "--recipients"],
    "replay": [
        "--bootstrap", "--db", "--since", "--from-archive", "--decode-workers", "--no-kafka",
    ],
    "archive": ["--bootstrap", "--dir", "--until-caught-up"],
    "verify": ["--db"],
    "swap": ["--url", "--db", "--admin-key"],
    "cluster": ["--url"],
    "export-schemas": ["--out", "--check"],
}  # fmt: skip

# What `projector broker` must start without (the reason handlers import lazily).
HEAVY = ("faust", "mode", "fastapi", "starlette", "uvicorn", "duckdb", "aiokafka", "pyarrow")


def _env(**extra: str) -> dict[str, str]:
    """The caller's environment without PROJECTOR_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTOR_")}
    return {**env, **extra}


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        projector_cmd(*args), env=env or _env(), capture_output=True, text=True, timeout=60
    )


def _shows(option: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def test_the_commands_are_the_documented_ones() -> None:
    assert [c.name for c in COMMANDS] == list(OPTIONS)


@pytest.mark.parametrize("name", list(OPTIONS))
def test_every_command_has_help_with_its_options(name: str) -> None:
    p = _run(name, "--help")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"usage: projector {name}")
    missing = [o for o in OPTIONS[name] if not _shows(o, p.stdout)]
    assert not missing, f"{name} --help lacks {missing}:\n{p.stdout}"


def test_the_console_script_lists_every_command() -> None:
    script = Path(sys.executable).with_name("projector")
    if not script.exists():
        pytest.skip(f"no console script at {script} (package not installed in this venv)")
    p = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    for name in OPTIONS:
        assert _shows(name, p.stdout), name


def test_broker_starts_without_faust_fastapi_or_duckdb() -> None:
    p = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "service", "broker", "--help"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in p.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "service.commands.broker" in imported
    assert not [m for m in HEAVY if m in imported]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    # Two databases are required (files, or data directories of shards).
    assert main(["verify"]) == 2
    assert "--db A --db B" in capsys.readouterr().out
    assert main(["replay"]) == 2  # --db FILE or --data-dir DIR
    assert "--data-dir" in capsys.readouterr().err
    # A partition count below 1 is a usage error, not a broker's refusal.
    for name in ("topics", "broker"):
        with pytest.raises(SystemExit) as e:
            main([name, "--partitions", "0"])
        assert e.value.code == 2
        assert "--partitions: must be at least 1, got 0" in capsys.readouterr().err


def test_an_invalid_setting_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "70000"]) == 2
    assert "projector: invalid setting" in capsys.readouterr().err


def _database(path: Path, events: int) -> Path:
    with Store(path) as store:
        store.flush(golden_events()[:events], {("campaign.runs", 0): events})
    return path


def test_verify_compares_two_databases_from_the_command_line(tmp_path: Path) -> None:
    n = len(golden_events())
    a = _database(tmp_path / "a.duckdb", n)
    b = _database(tmp_path / "b.duckdb", n)
    fewer = _database(tmp_path / "fewer.duckdb", n // 2)

    same = _run("verify", "--db", str(a), "--db", str(b))
    assert same.returncode == 0, same.stdout + same.stderr
    assert "IDENTICAL projections" in same.stdout
    differ = _run("verify", "--db", str(a), "--db", str(fewer))
    assert differ.returncode == 1, differ.stdout + differ.stderr
    assert "DIFFERENT projections" in differ.stdout
    missing = _run("verify", "--db", str(a), "--db", str(tmp_path / "nope.duckdb"))
    assert missing.returncode == 2
    assert "does not exist" in missing.stdout
    one = _run("verify", "--db", str(a))
    assert one.returncode == 2
    assert "give exactly two databases: --db A --db B" in one.stdout


def test_the_admin_key_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROJECTOR_ADMIN_KEY", "from-env")
    settings = Settings()
    assert settings.admin_key is not None
    assert settings.admin_key.get_secret_value() == "from-env"
    assert "from-env" not in repr(settings)


@pytest.mark.parametrize(
    ("env_key", "option", "code"),
    [
        (None, None, 2),  # no key at all
        ("k-env", None, 1),  # the variable alone: the request is made (and cannot connect)
        (None, "k-opt", 1),  # the option alone
        ("k-env", "", 1),  # an empty option falls back to the variable
    ],
)
def test_swap_takes_its_key_from_the_option_or_the_environment(
    env_key: str | None, option: str | None, code: int, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: "cannot reach" proves a key
    args = ["swap", "--url", url, "--db", str(tmp_path / "new.duckdb")]
    if option is not None:
        args += ["--admin-key", option]
    p = _run(*args, env=_env(**({"PROJECTOR_ADMIN_KEY": env_key} if env_key else {})))
    assert p.returncode == code, p.stdout + p.stderr
    if code == 2:
        assert "--admin-key (or PROJECTOR_ADMIN_KEY) with the admin scope is required" in p.stdout
    else:
        assert f"projector swap: cannot reach {url}" in p.stdout
