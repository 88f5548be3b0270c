"""The benchmark harness (``bench/``): its output format, its lean HTTP client and the store's
bulk-seeding section. No timing is asserted anywhere: figures are for people to read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from acs.store import DOWN, UP, Conflict, Store
from bench import envelopes, run, scenarios
from bench.httpclient import CwmpAttempt, HttpConnection

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000.0


# --- the whole harness, smallest configuration ----------------------------------------------


def test_tiny_bench_prints_a_table_then_every_figure_as_json_on_the_last_line(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--workdir", str(tmp_path / "work")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert any(line.startswith("1 ceiling") for line in lines[:-1])  # the table came first

    assert figures["profile"] == "tiny"
    assert {"date", "nproc", "cpu_model", "loadavg_start", "loadavg_end"} <= set(figures["machine"])
    assert {
        "requests_per_s",
        "server_cpu",
        "client_cpu",
        "client_saturated",
        "background_cpu",
    } <= set(figures["ceiling"])
    assert figures["ceiling"]["requests_per_s"] > 0
    assert [s["cpes"] for s in figures["steady"]] == list(scenarios.PROFILES["tiny"].steady_cpes)
    for s in figures["steady"]:
        assert {
            "sessions_per_s",
            "p50_ms",
            "p99_ms",
            "acs_cpu",
            "acs_peak_rss_mb",
            "inform_ratio",
            "errors",
            "client_cpu",
            "client_saturated",
        } <= set(s)
        assert s["sessions"] > 0 and s["errors"] == {}
    assert figures["inform_ratio"] == figures["steady"][-1]["inform_ratio"]

    # The same steady informs on one process, then on `acs serve --workers 2`.
    pair = figures["workers"]
    assert (pair["one"]["workers"], pair["two"]["workers"]) == (1, 2)
    for s in (pair["one"], pair["two"]):
        assert s["sessions"] > 0 and s["errors"] == {}, s
        assert s["acs_cpu_ms_per_session"] > 0
    assert pair["speedup"] > 0 and pair["cpu_per_session_ratio"] > 0
    [only] = pair["rounds"]  # the tiny profile measures one pair
    assert only["speedup"] == pair["speedup"]
    assert only["one_sessions_per_s"] == pair["one"]["sessions_per_s"]

    storm = figures["boot_storm"]
    assert {
        "seconds_to_all_provisioned",
        "errors_by_kind",
        "backpressure_503",
        "lost_sessions",
        "unfinished_cpes",
    } <= set(storm)
    assert storm["workers"] == 2  # the storm's target is on `acs serve --workers 2`
    # Correctness, not speed: a tiny storm is fully registered and provisioned.
    cpes = scenarios.PROFILES["tiny"].storm_cpes
    assert (storm["registered"], storm["provisioned"], storm["lost_sessions"]) == (cpes, cpes, 0)
    assert storm["provisioning_rpcs"] == cpes * scenarios.PROVISIONING_RPCS

    # Two nodes behind the round-robin proxy: every CPE's requests alternated between them,
    # some were forwarded to the node running the session, each provisioned exactly once.
    pair_of_nodes = figures["nodes"]
    cpes = pair_of_nodes["cpes"]
    assert (pair_of_nodes["provisioned"], pair_of_nodes["provisioning_rpcs"]) == (
        cpes,
        cpes * scenarios.PROVISIONING_RPCS,
    )
    assert (pair_of_nodes["lost_sessions"], pair_of_nodes["errors"]) == (0, 0)
    assert sum(pair_of_nodes["forwarded"]) > 0

    api = figures["api"]
    for name in (*scenarios.LIST_QUERIES, *scenarios.DETAIL_QUERIES):
        assert {"p50_ms", "p99_ms", "requests"} <= set(api[name]), name
        assert api[name]["non_200"] == 0, name
    assert "list_worst_p99_ms" in api

    assert {"cpes", "kb_per_cpe"} <= set(figures["simulator"])
    assert set(figures["targets"]) == set(run.evaluate({}))
    assert figures["client_saturated"] == [] or isinstance(figures["client_saturated"], list)


def test_unknown_scenario_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--only", "warp"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown scenario(s): warp" in done.stderr
    assert "Traceback" not in done.stderr


# --- figures -----------------------------------------------------------------------------------


def test_percentile_is_nearest_rank_and_none_without_values() -> None:
    values = [float(x) for x in range(1, 101)]
    assert scenarios.percentile(values, 50) == 50.0
    assert scenarios.percentile(values, 99) == 99.0
    assert scenarios.percentile([3.0], 99) == 3.0
    assert scenarios.percentile([], 50) is None


def test_generators_split_serials_without_overlap() -> None:
    assert scenarios._split(10, 3) == [(0, 4), (4, 3), (7, 3)]
    assert scenarios._split(2, 5) == [(0, 1), (1, 1)]


def test_targets_are_missed_met_or_not_measured() -> None:
    figures: dict[str, Any] = {
        "steady": [{"inform_ratio": 0.7, "p99_ms": 10.0}, {"inform_ratio": 0.4, "p99_ms": 60.0}],
        "boot_storm": {"cpes": 5, "provisioned": 5, "lost_sessions": 0, "errors": 0},
        "simulator": {"kb_per_cpe": 2.0},
    }
    targets = run.evaluate(figures)
    assert targets["inform_ratio >= 0.5"] is False  # the worst N decides
    assert targets["steady p99 < 50 ms at the largest N"] is False
    assert targets["boot storm: all provisioned, 0 lost, 0 errors"] is True
    assert targets["API list p99 < 20 ms"] is None
    assert targets["simulator < 20 KB per CPE"] is True


# --- the lean HTTP client ----------------------------------------------------------------------


class _Recorder:
    def __init__(self) -> None:
        self.responses: list[tuple[int, dict[bytes, bytes], bytes]] = []

    def connected(self, conn: HttpConnection) -> None:
        pass

    def response(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.responses.append((status, headers, body))

    def lost(self, reason: Failure) -> None:
        pass

    def connect_failed(self, reason: Failure) -> None:
        pass


def test_responses_are_delivered_whole_however_the_bytes_are_split() -> None:
    wire = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: session=ab; Path=/\r\n\r\nhello"
        b"HTTP/1.1 204 No Content\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\n\r\n"
    )
    for step in (1, 2, 7, len(wire)):
        recorder = _Recorder()
        conn = HttpConnection(recorder)
        for i in range(0, len(wire), step):
            conn.dataReceived(wire[i : i + step])
        assert [(s, b) for s, _, b in recorder.responses] == [
            (200, b"hello"),
            (204, b""),
            (200, b"abcdefg"),
        ], step
        assert recorder.responses[0][1][b"set-cookie"] == b"session=ab; Path=/"


class _Owner:
    def __init__(self) -> None:
        self.done: list[CwmpAttempt] = []
        self.failed: list[tuple[str, float | None]] = []

    def attempt_done(self, attempt: CwmpAttempt) -> None:
        self.done.append(attempt)

    def attempt_failed(self, attempt: CwmpAttempt, kind: str, retry_after: float | None) -> None:
        self.failed.append((kind, retry_after))


def _connected_attempt(
    event: str = envelopes.BOOTSTRAP,
) -> tuple[CwmpAttempt, _Owner, StringTransport, HttpConnection, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    owner = _Owner()
    attempt = CwmpAttempt(
        reactor, owner, envelopes.build(event), 0, b"Host: 127.0.0.1:1\r\n", request_timeout=30.0
    )
    attempt.start("127.0.0.1", 1, "CPE000001", connect_timeout=30.0)
    (host, port, factory, _timeout, _bind) = reactor.tcpClients[0]
    assert (host, port) == ("127.0.0.1", 1)
    transport = StringTransport()
    conn = factory.buildProtocol(None)
    assert isinstance(conn, HttpConnection)
    conn.makeConnection(cast(Any, transport))
    return attempt, owner, transport, conn, reactor


def _sent(transport: StringTransport) -> bytes:
    data = transport.value()
    transport.clear()
    return bytes(data)


def test_a_bootstrap_session_answers_set_parameter_values_and_ends_on_204() -> None:
    attempt, owner, transport, conn, reactor = _connected_attempt()
    inform = _sent(transport)
    assert inform.startswith(b"POST / HTTP/1.1\r\n")
    assert b"<SerialNumber>CPE000001</SerialNumber>" in inform
    assert b"0 BOOTSTRAP" in inform

    conn.dataReceived(
        b"HTTP/1.1 200 OK\r\nSet-Cookie: session=s1; Path=/\r\nContent-Length: 5\r\n\r\n<ok/>"
    )
    empty = _sent(transport)
    assert b"Content-Length: 0\r\n\r\n" in empty and b"Cookie: session=s1\r\n" in empty

    spv = b"<cwmp:ID soap-env:mustUnderstand='1'>42</cwmp:ID><cwmp:SetParameterValues>"
    conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(spv) + spv)
    answer = _sent(transport)
    assert b"SetParameterValuesResponse" in answer and b">42</cwmp:ID>" in answer

    conn.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert owner.done == [attempt] and owner.failed == []
    assert attempt.rpcs == 1 and attempt.informed
    assert transport.disconnecting  # the CPE closes its connection after the session
    assert reactor.getDelayedCalls() == []  # no request timer left behind


def test_a_503_with_retry_after_is_back_pressure_not_an_error() -> None:
    _attempt, owner, _transport, conn, _reactor = _connected_attempt(envelopes.PERIODIC)
    conn.dataReceived(b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n")
    assert owner.failed == [("backpressure_503", 7.0)]


def test_a_session_without_an_answer_fails_as_timeout() -> None:
    attempt, owner, _transport, _conn, reactor = _connected_attempt()
    reactor.advance(30.0)
    assert owner.failed == [("timeout", None)]
    assert not attempt.informed


# --- the store's bulk-seeding section ------------------------------------------------------


def test_bulk_seeded_devices_are_ordinary_devices(store: Store) -> None:
    org = store.ensure_organization("Default").id
    rows = [
        {"serial_number": "S1", "name": "one", "organization_id": org, "status": UP},
        {"serial_number": "S2", "name": "two", "organization_id": org, "provisioned": True},
    ]
    assert store.bulk_seed_devices(rows, now=T0, actor="bench") == 2
    one = store.find_device_by_serial("S1")
    two = store.find_device_by_serial("S2")
    assert one is not None and two is not None
    assert (one.status, one.provisioned, one.status_change) == (UP, False, T0)
    assert (two.status, two.provisioned) == (DOWN, True)
    assert store.count_by_serial_prefix("S") == (2, 1)
    assert store.count_by_serial_prefix("X") == (0, 0)


def test_bulk_seeding_rejects_bad_rows_and_taken_serials_without_writing(store: Store) -> None:
    org = store.ensure_organization("Default").id
    store.bulk_seed_devices(
        [{"serial_number": "S1", "name": "one", "organization_id": org}], now=T0, actor="bench"
    )
    with pytest.raises(ValueError, match="organization_id 999 does not exist"):
        store.bulk_seed_devices(
            [{"serial_number": "S2", "name": "x", "organization_id": 999}], now=T0, actor="b"
        )
    with pytest.raises(ValueError, match="unknown or read-only device field 'id'"):
        store.bulk_seed_devices(
            [{"serial_number": "S2", "name": "x", "organization_id": org, "id": 5}],
            now=T0,
            actor="b",
        )
    with pytest.raises(Conflict):
        store.bulk_seed_devices(
            [
                {"serial_number": "S3", "name": "three", "organization_id": org},
                {"serial_number": "S1", "name": "again", "organization_id": org},
            ],
            now=T0,
            actor="b",
        )
    assert store.count_by_serial_prefix("S") == (1, 0)  # the failed batch left nothing


def test_bulk_seeded_parameters_are_the_stored_tree(store: Store) -> None:
    org = store.ensure_organization("Default").id
    store.bulk_seed_devices(
        [{"serial_number": "S1", "name": "one", "organization_id": org}], now=T0, actor="bench"
    )
    device = store.find_device_by_serial("S1")
    assert device is not None
    rows = [
        (device.id, "Device.A", "1", "xsd:unsignedInt"),
        (device.id, "Device.B", "x", "xsd:string"),
    ]
    assert store.bulk_seed_parameters(rows, now=T0) == 2
    stored = {p.path: (p.value, p.type, p.writable) for p in store.get_parameters(device.id)}
    assert stored == {
        "Device.A": ("1", "xsd:unsignedInt", False),
        "Device.B": ("x", "xsd:string", False),
    }
