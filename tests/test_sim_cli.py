"""``cpe-sim`` argument handling and its live summary line."""

from __future__ import annotations

import io
import socket
import subprocess
import sys

import pytest
from twisted.internet import task

from cpe_sim.cli import Reporter, make_fleet, parse_args


def test_arguments_build_the_requested_fleet() -> None:
    args = parse_args(
        [
            "--acs",
            "http://127.0.0.1:7547/",
            "--count",
            "3",
            "--model",
            "mixed",
            "--serial-prefix",
            "LAB",
            "--interval",
            "60",
            "--duration",
            "5",
            "--username",
            "u",
            "--password",
            "p",
        ]
    )
    fleet = make_fleet(task.Clock(), args)
    assert [c.serial for c in fleet.cpes] == ["LAB000000", "LAB000001", "LAB000002"]
    assert [c.root for c in fleet.cpes] == ["Device.", "InternetGatewayDevice.", "Device."]
    assert fleet.cpes[0].value("Device.ManagementServer.PeriodicInformInterval") == "60"
    assert fleet.cpes[0].value("Device.ManagementServer.Username") == "u"
    assert args.duration == 5


def test_value_changes_are_parsed_and_scheduled_on_every_cpe() -> None:
    args = parse_args(
        [
            "--acs", "http://127.0.0.1:7547/", "--count", "2", "--model", "mixed",
            "--value-change", "DeviceInfo.Description=a=b@1.5",
            "--value-change", "Device.DeviceInfo.Description=x@0",
        ]
    )  # fmt: skip
    assert args.value_change == [
        ("DeviceInfo.Description", "a=b", 1.5),
        ("Device.DeviceInfo.Description", "x", 0.0),
    ]
    clock = task.Clock()
    fleet = make_fleet(clock, args)
    fleet.schedule_value_change(*args.value_change[0])
    clock.advance(1.5)
    assert [c.model.get_raw(c.root + "DeviceInfo.Description") for c in fleet.cpes] == ["a=b"] * 2
    with pytest.raises(ValueError, match="no parameter"):
        fleet.schedule_value_change(*args.value_change[1])  # absolute: not a TR-098 path


def test_cwmp_version_option_applies_to_the_whole_fleet() -> None:
    base = ["--acs", "http://127.0.0.1:7547/", "--count", "2", "--model", "mixed"]
    by_root = make_fleet(task.Clock(), parse_args(base))
    assert [c.cwmp_version for c in by_root.cpes] == ["1.3", "1.0"]
    chosen = make_fleet(task.Clock(), parse_args([*base, "--cwmp-version", "1.4"]))
    assert [c.cwmp_version for c in chosen.cpes] == ["1.4", "1.4"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--count", "1"],  # --acs missing
        ["--acs", "ftp://x/", "--count", "1"],
        ["--acs", "http://127.0.0.1/", "--count", "0"],
        ["--acs", "http://127.0.0.1/", "--count", "100001"],
        ["--acs", "http://127.0.0.1/", "--count", "ten"],
        ["--acs", "http://127.0.0.1/", "--count", "1", "--model", "tr069"],
        ["--acs", "http://127.0.0.1/", "--count", "1", "--interval", "0"],
        ["--acs", "http://127.0.0.1/", "--count", "1", "--duration", "-1"],
        ["--acs", "http://127.0.0.1/", "--count", "1", "--password", "p"],
        ["--acs", "http://127.0.0.1/", "--count", "1", "--cwmp-version", "1.5"],
        ["--acs", "http://127.0.0.1/", "--count", "1", "--value-change", "DeviceInfo.X@5"],
        ["--acs", "http://127.0.0.1/", "--count", "1", "--value-change", "DeviceInfo.X=1"],
        ["--acs", "http://127.0.0.1/", "--count", "1", "--value-change", "=1@5"],
        ["--acs", "http://127.0.0.1/", "--count", "1", "--value-change", "A=1@-1"],
        ["--acs", "http://127.0.0.1/", "--count", "1", "--value-change", "A=1@86401"],
        ["--acs", "http://127.0.0.1/", "--count", "1", *["--value-change", "A=1@1"] * 101],
    ],
)
def test_bad_arguments_are_argparse_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_summary_is_refreshed_in_place_on_a_tty_and_line_by_line_otherwise() -> None:
    fleet = make_fleet(task.Clock(), parse_args(["--acs", "http://127.0.0.1/", "--count", "2"]))
    tty, pipe = _Tty(), io.StringIO()
    for out in (tty, pipe):
        reporter = Reporter(fleet, out)
        reporter.report()
        reporter.report()
    assert tty.getvalue().count("\r") == 2 and "\n" not in tty.getvalue()
    assert pipe.getvalue().splitlines() == [fleet.summary()] * 2
    assert Reporter(fleet, tty).period == 1.0 and Reporter(fleet, pipe).period == 5.0
    assert fleet.summary().startswith("CPEs 2 | online 2 | sessions ok 0 failed 0")


def test_cpe_sim_runs_for_its_duration_and_exits_zero() -> None:
    # A closed loopback port: every session fails fast, the run still ends cleanly.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cpe_sim.cli",
            "--acs",
            f"http://127.0.0.1:{port}/",
            "--count",
            "3",
            "--duration",
            "0.5",
            "--model",
            "mixed",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("CPEs 3 | online 3 | sessions ok 0 failed ")
    assert "in flight 0" in last
