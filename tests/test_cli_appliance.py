"""Issue 14's command line: ``acs --version``, ``acs sim``, ``acs db status|backup``, the
appliance defaults (``--appliance``), ``acs install`` under a staging root, and the build
information behind ``--version`` and ``/healthz``."""

from __future__ import annotations

import io
import json
import re
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import pytest

import acs
import acs.config
import acs.version
from acs.cli import main
from acs.config import load_config
from acs.install import STARTING_CONFIG, InstallError, install
from acs.store import Store
from acs.store.migrations import MIGRATIONS

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "packaging" / "acs.service"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "acs.toml"
    path.write_text(
        f'[storage]\ndatabase = "{tmp_path / "acs.db"}"\nfiles = "{tmp_path / "files"}"\n',
        encoding="utf-8",
    )
    return path


# --- version -------------------------------------------------------------------------------


def test_version_names_the_version_and_the_checkouts_commit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out in (
        f"acs {acs.__version__} (commit {head})",
        f"acs {acs.__version__} (commit {head}-dirty)",
    )


def test_a_bundles_build_file_names_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = tmp_path / "build.json"
    monkeypatch.setattr(acs.version, "BUILD_INFO", build)
    for content, commit in (
        ('{"commit": "0123456789ab"}', "0123456789ab"),
        ('{"commit": 7}', None),  # not a string: unknown, not a crash
        ("[]", None),
    ):
        build.write_text(content)
        acs.version.build_info.cache_clear()
        try:
            assert acs.version.build_info() == {"version": acs.__version__, "commit": commit}
            assert acs.version.describe().endswith(f"(commit {commit or 'unknown'})")
        finally:
            acs.version.build_info.cache_clear()


# --- acs sim -------------------------------------------------------------------------------


def test_sim_is_the_simulators_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: acs sim ") and "--count" in out and "--acs" in out
    assert main(["sim", "--acs", "http://127.0.0.1:1/", "--count", "0"]) == 2
    assert "acs sim: error: argument --count" in capsys.readouterr().err


# --- acs db --------------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_db_status_reports_the_schema_read_only(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Store.open(tmp_path / "acs.db").close()
    before = (tmp_path / "acs.db").read_bytes()
    assert main(["db", "status", "--config", str(config)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["database"] == str(tmp_path / "acs.db")
    assert status["mode"] == "0600"
    assert status["schema_version"] == status["program_schema_version"] == len(MIGRATIONS)
    assert status["schema"] == "current"
    assert status["program"] == acs.version.describe()
    assert status["bytes"] >= len(before)
    assert (tmp_path / "acs.db").read_bytes() == before


@pytest.mark.sqlite_only
def test_db_status_lists_the_nodes_and_the_sessions_each_runs(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    with Store.open(tmp_path / "acs.db") as store:
        org = store.ensure_organization("Default")
        busy = store.register_node("box-1-aaaaaa", "http://127.0.0.1:9001", now=now - 60)
        store.register_node("box-2-bbbbbb", None, now=now - 30)
        for serial in ("SN1", "SN2"):
            device = store.create_device(
                serial_number=serial, name=serial, organization_id=org.id, now=now, actor="t"
            )
            store.take_device_session(device.id, busy, now=now, until=now + 600)
    assert main(["db", "status", "--config", str(config)]) == 0
    nodes = json.loads(capsys.readouterr().out)["nodes"]
    assert [(n["name"], n["peer"], n["sessions"]) for n in nodes] == [
        ("box-1-aaaaaa", "http://127.0.0.1:9001", 2),
        ("box-2-bbbbbb", None, 0),
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", n["started"]) for n in nodes)


@pytest.mark.sqlite_only
def test_db_status_of_a_newer_schema_says_what_to_do_and_exits_1(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Store.open(tmp_path / "acs.db").close()
    with sqlite3.connect(tmp_path / "acs.db") as conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 'from the future')", (999,))
    conn.close()
    assert main(["db", "status", "--config", str(config)]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["schema"] == "newer"
    assert "written by a newer acs (schema 999" in captured.err
    assert "restore a backup" in captured.err
    # And serve refuses it, the file untouched.
    before = (tmp_path / "acs.db").read_bytes()
    assert main(["serve", "--config", str(config)]) == 2
    assert "is newer than this program (which knows up to" in capsys.readouterr().err
    assert (tmp_path / "acs.db").read_bytes() == before


@pytest.mark.sqlite_only
def test_serve_refuses_a_database_others_can_read(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Store.open(tmp_path / "acs.db").close()
    (tmp_path / "acs.db").chmod(0o640)
    assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "is open to other users (mode 0640)" in err and "chmod 600" in err
    assert mode(tmp_path / "acs.db") == 0o640


def test_db_commands_refuse_what_is_no_acs_database(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "status", "--config", str(config)]) == 2
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "acs.db").exists()  # status never creates one
    sqlite3.connect(tmp_path / "acs.db").close()
    assert main(["db", "status", "--config", str(config)]) == 2
    assert "no ACS schema" in capsys.readouterr().err
    (tmp_path / "acs.db").write_bytes(b"not sqlite at all" * 64)
    assert main(["db", "status", "--config", str(config)]) == 2
    assert "acs:" in capsys.readouterr().err


@pytest.mark.sqlite_only
def test_db_backup_is_a_consistent_owner_only_copy_that_never_overwrites(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store.open(tmp_path / "acs.db")
    org = store.ensure_organization("Default").id
    store.create_device(serial_number="SN1", name="one", organization_id=org, now=1.0, actor="t")
    target = tmp_path / "copy.db"
    # The appliance keeps its connection open meanwhile: an online backup.
    assert main(["db", "backup", "--config", str(config), str(target)]) == 0
    assert f"backed up to {target}" in capsys.readouterr().out
    store.close()
    assert mode(target) == 0o600
    copy = Store.open(target)
    assert copy.get_device_by_serial_number("SN1") is not None
    copy.close()
    before = target.read_bytes()
    assert main(["db", "backup", "--config", str(config), str(target)]) == 2
    assert "cannot create" in capsys.readouterr().err
    assert target.read_bytes() == before


# --- appliance defaults --------------------------------------------------------------------


def test_appliance_mode_puts_storage_under_var_lib_acs_unless_configured(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(acs.config, "APPLIANCE_CONFIG", str(tmp_path / "missing.toml"))
    monkeypatch.delenv("ACS_CONFIG", raising=False)
    assert load_config().storage.database == "var/acs.db"
    appliance = load_config(appliance=True).storage
    assert (appliance.database, appliance.files) == ("/var/lib/acs/acs.db", "/var/lib/acs/files")
    # /etc/acs/acs.toml is read when it exists; what it sets wins, what it omits is defaulted.
    etc = tmp_path / "etc-acs.toml"
    etc.write_text('[storage]\nfiles = "/srv/acs/files"\n[cwmp]\nlisten = "tcp:7548"\n')
    monkeypatch.setattr(acs.config, "APPLIANCE_CONFIG", str(etc))
    loaded = load_config(appliance=True)
    assert (loaded.storage.database, loaded.storage.files) == (
        "/var/lib/acs/acs.db",
        "/srv/acs/files",
    )
    assert loaded.cwmp.listen == "tcp:7548"
    # An explicit --config wins over /etc/acs/acs.toml.
    assert load_config(config, appliance=True).storage.database == str(tmp_path / "acs.db")


@pytest.mark.sqlite_only
def test_commands_take_appliance_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    etc = tmp_path / "acs.toml"
    etc.write_text(f'[storage]\ndatabase = "{tmp_path / "state" / "acs.db"}"\n')
    monkeypatch.setattr(acs.config, "APPLIANCE_CONFIG", str(etc))
    monkeypatch.delenv("ACS_CONFIG", raising=False)
    assert main(["token", "create", "--name", "t", "--role", "admin", "--appliance"]) == 0
    assert (tmp_path / "state" / "acs.db").exists()
    capsys.readouterr()
    monkeypatch.setenv("ACS_APPLIANCE", "1")
    assert main(["token", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:3] == ["1", "t", "admin"]


# --- acs install ---------------------------------------------------------------------------


def test_install_lays_the_service_down_under_a_root(tmp_path: Path) -> None:
    binary = tmp_path / "acs-binary"
    binary.write_bytes(b"\x7fELF pretend")
    root = tmp_path / "root"
    out = tmp_path / "out.txt"
    with out.open("w") as fh:
        assert install(str(root), fh, executable=str(binary), unit=UNIT) == 0
    installed = root / "usr/local/bin/acs"
    assert installed.read_bytes() == binary.read_bytes() and mode(installed) == 0o755
    assert (root / "etc/systemd/system/acs.service").read_text() == UNIT.read_text()
    assert (root / "etc/acs/acs.toml").read_text() == STARTING_CONFIG
    assert mode(root / "etc/acs/acs.toml") == 0o640
    assert mode(root / "var/lib/acs") == 0o700
    assert "systemctl enable --now acs" in out.read_text()
    # The starting configuration is one the appliance loads.
    storage = load_config(root / "etc/acs/acs.toml").storage
    assert storage.database == "/var/lib/acs/acs.db"

    # Again, as an upgrade: the binary is replaced, the operator's config kept.
    (root / "etc/acs/acs.toml").write_text("# mine\n")
    binary.write_bytes(b"\x7fELF newer")
    with out.open("w") as fh:
        assert install(str(root), fh, executable=str(binary), unit=UNIT) == 0
    assert installed.read_bytes() == b"\x7fELF newer"
    assert (root / "etc/acs/acs.toml").read_text() == "# mine\n"
    assert f"kept {root / 'etc/acs/acs.toml'}" in out.read_text()
    assert sorted(p.name for p in installed.parent.iterdir()) == ["acs"]  # no staging left


def test_install_from_a_python_environment_points_at_the_binary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["install", "--root", str(tmp_path)]) == 1
    assert "install the single-file executable instead" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InstallError, match="no unit file"):
        install(str(tmp_path), io.StringIO(), executable=__file__, unit=tmp_path / "x")


def test_the_unit_runs_the_appliance_hardened() -> None:
    unit = UNIT.read_text()
    for line in (
        "User=acs",
        "ExecStart=/usr/local/bin/acs serve --appliance",
        "StateDirectory=acs",
        "StateDirectoryMode=0700",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "Environment=TMPDIR=%C/acs",
    ):
        assert f"\n{line}\n" in unit, line
