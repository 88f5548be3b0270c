"""The `acs` command line: tokens, config errors, and `acs serve` as a real process."""

from __future__ import annotations

import io
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from acs.accounts import Passwords
from acs.cli import banner, command_hint, main, udp_address
from acs.store import Store


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "acs.toml"
    path.write_text(
        f"""
[storage]
database = "{tmp_path / "var" / "acs.db"}"
files = "{tmp_path / "var" / "files"}"

[cwmp]
listen = "tcp:0:interface=127.0.0.1"

[api]
listen = "tcp:0:interface=127.0.0.1"

[files]
listen = "tcp:0:interface=127.0.0.1"

[stun]
listen = "udp:0:interface=127.0.0.1"
""",
        encoding="utf-8",
    )
    return path


def _db(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "var" / "acs.db")


def test_token_create_prints_only_a_working_token(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        ["token", "create", "--config", str(config), "--name", "admin", "--role", "admin"]
    )
    out, err = capsys.readouterr()
    assert status == 0
    assert err == ""
    token = out.strip()
    assert out == token + "\n"
    with _db(tmp_path) as store:
        found = store.verify_token(token)
        assert found is not None
        assert (found.name, found.role, found.organization_ids) == ("admin", "admin", ())


def test_token_create_with_organization_scope(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _db(tmp_path) as store:
        a = store.ensure_organization("A").id
        b = store.ensure_organization("B").id
    argv = ["token", "create", "--config", str(config), "--name", "ops", "--role", "operator"]
    assert main([*argv, "--org", str(a), "--org", str(b)]) == 0
    assert main([*argv, "--org", str(a), str(b)]) == 0
    tokens = capsys.readouterr().out.split()
    assert len(tokens) == 2
    with _db(tmp_path) as store:
        for token in tokens:
            found = store.verify_token(token)
            assert found is not None
            assert set(found.organization_ids) == {a, b}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--name", "x", "--role", "root"], "role"),
        (["--name", "x", "--role", "viewer", "--org", "999"], "999"),
        (["--name", "x", "--role", "viewer", "--org", "one"], "--org"),
        (["--name", " ", "--role", "viewer"], "--name"),
        (["--role", "viewer"], "--name"),
    ],
)
def test_token_create_rejects_bad_input_with_exit_2(
    config: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    status = main(["token", "create", "--config", str(config), *extra])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert message in err
    assert "Traceback" not in err


def test_token_list_shows_metadata_but_never_secrets(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["token", "create", "--config", str(config), "--name", "alice", "--role", "viewer"])
    token = capsys.readouterr().out.strip()
    assert main(["token", "list", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "ROLE", "ORGS", "CREATED", "REVOKED"]
    assert lines[1].split()[:4] == ["1", "alice", "viewer", "all"]
    assert lines[1].split()[-1] == "no"
    assert token not in out
    with _db(tmp_path) as store:
        (row,) = store.db.execute("SELECT token_hash FROM api_tokens").fetchall()
    assert row[0] not in out


def test_token_revoke_disables_the_token(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["token", "create", "--config", str(config), "--name", "bob", "--role", "viewer"])
    token = capsys.readouterr().out.strip()
    assert main(["token", "revoke", "1", "--config", str(config)]) == 0
    assert "revoked" in capsys.readouterr().out
    with _db(tmp_path) as store:
        assert store.verify_token(token) is None
    main(["token", "list", "--config", str(config)])
    assert capsys.readouterr().out.splitlines()[1].split()[-1] == "yes"


@pytest.mark.parametrize("token_id", ["42", "abc"])
def test_token_revoke_of_unknown_or_malformed_id_is_exit_2(
    config: Path, capsys: pytest.CaptureFixture[str], token_id: str
) -> None:
    assert main(["token", "revoke", token_id, "--config", str(config)]) == 2
    assert token_id in capsys.readouterr().err


@pytest.mark.sqlite_only
def test_acs_config_environment_variable_is_used(
    config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ACS_CONFIG", str(config))
    assert main(["token", "create", "--name", "env", "--role", "viewer"]) == 0
    assert (tmp_path / "var" / "acs.db").exists()


@pytest.mark.parametrize("command", [["serve"], ["token", "list"]])
def test_config_errors_exit_2_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[cwmp]\nsession_timeout = 0\n", encoding="utf-8")
    assert main([*command, "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err
    assert "session_timeout" in err
    assert "Traceback" not in err


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_bad_listen_address_exits_2_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'[storage]\ndatabase = "{tmp_path / "acs.db"}"\nfiles = "{tmp_path / "files"}"\n'
        '[cwmp]\nlisten = "carrier-pigeon:7547"\n',
        encoding="utf-8",
    )
    assert main(["serve", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "[cwmp] listen" in err
    assert not (tmp_path / "acs.db").exists()


@pytest.mark.parametrize("argv", [[], ["token"], ["frobnicate"], ["serve", "--bogus"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "acs" in capsys.readouterr().err


def test_command_hints_can_be_pasted_as_printed() -> None:
    args = "token create --name admin --role admin"
    assert command_hint(".venv/bin/acs", None, args) == f".venv/bin/acs {args}"
    assert command_hint("acs", "my conf.toml", args) == f"acs {args} --config 'my conf.toml'"
    # Found on $PATH (argv[0] without a directory): the hint says `acs`, as one would type it.
    assert command_hint("acs-wrapper", None, "user list") == "acs user list"


def test_banner_names_each_listener_the_ui_and_how_to_log_in() -> None:
    lines = banner(
        {
            "cwmp": "http://127.0.0.1:7547/",
            "api": "http://127.0.0.1:7557/",
            "files": "http://127.0.0.1:7567/",
            "stun": udp_address("::", 3478),
        },
        ".venv/bin/acs",
        "acs.toml",
    )
    assert lines == [
        "CWMP  http://127.0.0.1:7547/",
        "UI    http://127.0.0.1:7557/",
        "API   http://127.0.0.1:7557/api/v1/ (healthz: http://127.0.0.1:7557/healthz)",
        "files http://127.0.0.1:7567/",
        "STUN  udp [::]:3478",
        "UI login: .venv/bin/acs user create admin --role admin --config acs.toml",
        "API token: .venv/bin/acs token create --name admin --role admin --config acs.toml",
    ]


def _read_until(proc: subprocess.Popen[bytes], marker: bytes) -> str:
    """Output of ``proc`` up to the line starting with ``marker`` (bounded wait, no sleeps)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    data = b""
    try:
        while not any(line.startswith(marker) for line in data.split(b"\n")[:-1]):
            if not selector.select(timeout=30):
                raise AssertionError(f"acs serve printed no {marker!r} line: {data!r}")
            chunk = os.read(fd, 65536)
            if not chunk:
                err = proc.stderr.read() if proc.stderr else b""
                raise AssertionError(f"acs serve exited early: {data!r} {err!r}")
            data += chunk
    finally:
        selector.close()
    return data.decode()


def test_serve_runs_until_sigterm_and_answers_healthz(config: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "acs.cli", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    try:
        output = _read_until(proc, b"API token:")
        cwmp = re.search(r"^CWMP +(\S+)$", output, re.MULTILINE)
        healthz = re.search(r"\(healthz: (\S+)\)", output)
        assert cwmp is not None
        assert healthz is not None
        with urllib.request.urlopen(healthz.group(1), timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "ok"
        assert all(state["listening"] for state in body["listeners"].values())
        assert cwmp.group(1).startswith("http://127.0.0.1:")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _user_cmd(config: Path, monkeypatch: pytest.MonkeyPatch, stdin: str, *argv: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["user", *argv, "--config", str(config)])


def test_user_create_list_passwd_disable(
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with _db(tmp_path) as store:
        east = store.ensure_organization("East").id
    argv = ("create", "alice", "--role", "operator", "--org", str(east), "--password-stdin")
    assert _user_cmd(config, monkeypatch, "first password\n", *argv) == 0
    assert capsys.readouterr().out == "user alice created (operator)\n"
    assert main(["user", "list", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "ROLE", "ORGS", "CREATED", "DISABLED"]
    assert lines[1].split()[:4] == ["1", "alice", "operator", str(east)]
    assert lines[1].split()[-1] == "no"
    passwords = Passwords()
    with _db(tmp_path) as store:
        assert passwords.verify(store.password_hash("alice"), "first password")
        assert "first password" not in str(store.db.execute("SELECT * FROM users").fetchall())
    passwd = ("passwd", "alice", "--password-stdin")
    assert _user_cmd(config, monkeypatch, "second password\n", *passwd) == 0
    with _db(tmp_path) as store:
        assert passwords.verify(store.password_hash("alice"), "second password")
    assert main(["user", "disable", "alice", "--config", str(config)]) == 0
    with _db(tmp_path) as store:
        assert store.password_hash("alice") is None  # no login for a disabled account
        user = store.get_user("alice")
        assert user is not None and user.disabled


def test_user_create_prompts_twice_and_refuses_a_mismatch(
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = iter(["typed password", "typed passw0rd"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["user", "create", "bob", "--role", "viewer", "--config", str(config)]) == 2
    assert "the passwords differ" in capsys.readouterr().err
    with _db(tmp_path) as store:
        assert store.list_users() == []


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (("create", "a b", "--role", "admin", "--password-stdin"), "long enough\n", "user name"),
        (("create", "carol", "--role", "admin", "--password-stdin"), "short\n", "8 to 1024"),
        (("create", "carol", "--role", "root", "--password-stdin"), "long enough\n", "role"),
        (("create", "carol", "--role", "admin", "--org", "99", "--password-stdin"), "long enough\n",
         "unknown organization"),
        (("passwd", "nobody", "--password-stdin"), "long enough\n", "no user named 'nobody'"),
        (("disable", "nobody"), "", "no user named 'nobody'"),
    ],
)  # fmt: skip
def test_user_commands_refuse_bad_input_with_exit_2(
    config: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: tuple[str, ...],
    stdin: str,
    message: str,
) -> None:
    assert _user_cmd(config, monkeypatch, stdin, *argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_user_create_refuses_a_taken_name(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ("create", "dave", "--role", "viewer", "--password-stdin")
    assert _user_cmd(config, monkeypatch, "long enough\n", *argv) == 0
    assert _user_cmd(config, monkeypatch, "long enough\n", *argv) == 2
    assert "exists already" in capsys.readouterr().err
