"""Several processes on one database, for real. ``acs serve --workers 2``: two worker
processes accept on the supervisor's sockets (plain TCP, and TLS); simulated CPEs that open
a new connection for every request of a session (so about half of them land on the worker
not running it) all finish their sessions; a worker killed with ``kill -9`` is restarted;
SIGTERM stops every process. Two ``acs serve`` nodes: one session per device across them,
and a node killed with ``kill -9`` holds its devices no longer."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl as stdlib_ssl
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cwmpharness import make_inform, wire
from metricscheck import samples
from procharness import listening, running, sessions_done, stop, write_config
from selfsigned import self_signed

from acs import stun
from acs.cli import main
from acs.store import Store

BIN = Path(sys.executable).parent
COUNT = 40
WORKERS = re.compile(r"^workers 2 \(pids (\d+) (\d+)\)$", re.MULTILINE)


def scrape(api: str, token: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    request = urllib.request.Request(
        api.replace("/api/v1/", "/metrics"), headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return samples(response.read().decode())


def forwarded_by_node(api: str, token: str, deadline: float) -> dict[str, float]:
    """Each worker's count of requests it forwarded by cookie, scraping (the kernel hands
    each scrape to either worker) until both have answered."""
    seen: dict[str, float] = {}
    while len(seen) < 2 and time.monotonic() < deadline:
        metrics = scrape(api, token)
        node = next(dict(labels)["node"] for (name, labels) in metrics if name == "acs_info")
        seen[node] = metrics.get(("acs_cwmp_forwarded_requests_total", (("by", "cookie"),)), 0.0)
    return seen


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_stun_answers(banner: str) -> None:
    """The STUN listener the supervisor printed answers Binding Requests (the workers
    share its one socket), each from a client socket of its own."""
    found = re.search(r"STUN  udp ([0-9.]+):(\d+)", banner)
    assert found is not None, banner
    for _ in range(4):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.settimeout(10)
            client.sendto(stun.binding_request(os.urandom(12)), (found[1], int(found[2])))
            answer = stun.parse(client.recvfrom(2048)[0])
            assert stun.mapped_address(answer) == client.getsockname()


def test_two_workers_serve_sessions_whose_requests_land_on_either(tmp_path: Path) -> None:
    deadline = time.monotonic() + 120
    config = str(write_config(tmp_path, stun=True))
    serve = [str(BIN / "acs"), "serve", "--config", config, "--workers", "2"]
    with running(serve, tmp_path) as (acs, out, _err):
        urls = listening(out, deadline)
        out.wait_for(lambda lines: WORKERS.search("\n".join(lines)) is not None, deadline, "pids")
        match = WORKERS.search("\n".join(out.lines))
        assert match is not None
        pids = [int(match.group(1)), int(match.group(2))]
        assert_stun_answers("\n".join(out.lines))
        store = Store.open(tmp_path / "acs.db")
        try:
            _row, token = store.create_token("e2e", "admin", [], now=time.time())
            sim = [str(BIN / "acs"), "sim", "--acs", urls["cwmp"], "--count", str(COUNT)]
            sim += ["--reconnect", "--duration", "60", "--seed", "1"]
            with running(sim, tmp_path) as (cpes, _sim_out, _sim_err):
                out.wait_for(sessions_done(COUNT), deadline, f"{COUNT} sessions done")
                cpes.send_signal(signal.SIGTERM)
                cpes.wait(timeout=30)
            text = out.text() if acs.poll() is not None else "\n".join(out.lines)
            problems = [x for x in text.splitlines() if "failed" in x or "timed out" in x]
            assert not problems, problems

            forwarded = forwarded_by_node(urls["api"], token, deadline)
            assert len(forwarded) == 2, forwarded  # two nodes answered
            # First sessions are several requests each (provisioning): with a new connection
            # for each, some reached the worker not running them, and were sent on.
            assert sum(forwarded.values()) > 0, forwarded
            # Every session gave its device's lease up at its end.
            held = store.db.execute(
                "SELECT count(*) FROM devices WHERE session_node IS NOT NULL"
            ).fetchone()[0]
            assert (store.count_devices(), held) == (COUNT, 0)

            os.kill(pids[0], signal.SIGKILL)
            out.wait_for(
                lambda lines: sum("worker 0 started" in line for line in lines) == 2,
                deadline,
                "worker 0 started again",
            )
            assert alive(pids[1])
            assert stop(acs, deadline) == 0
        finally:
            store.close()
    restarted = [int(m) for m in re.findall(r"worker 0 started pid=(\d+)", out.text())]
    assert not any(alive(pid) for pid in [*pids, *restarted])


def test_workers_refuse_a_listener_they_cannot_share(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    unix = f'listen = "unix:{tmp_path / "cwmp.sock"}"\n\n[api]'
    config.write_text(
        config.read_text().replace('listen = "tcp:0:interface=127.0.0.1"\n\n[api]', unix)
    )
    assert main(["serve", "--config", str(config), "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "--workers shares TCP and SSL listeners (also behind haproxy:) only" in err, err


def test_workers_speak_tls_on_a_shared_ssl_listener(tmp_path: Path) -> None:
    deadline = time.monotonic() + 60
    key, cert = self_signed("127.0.0.1")
    (tmp_path / "key.pem").write_bytes(key)
    (tmp_path / "cert.pem").write_bytes(cert)
    config = write_config(tmp_path)
    listen = f"ssl:0:interface=127.0.0.1:privateKey={tmp_path}/key.pem:certKey={tmp_path}/cert.pem"
    config.write_text(
        config.read_text().replace(
            'listen = "tcp:0:interface=127.0.0.1"', f'listen = "{listen}"', 1
        )
    )
    serve = [str(BIN / "acs"), "serve", "--config", str(config), "--workers", "2"]
    with running(serve, tmp_path) as (acs, out, _err):
        out.wait_for(lambda lines: WORKERS.search("\n".join(lines)) is not None, deadline, "pids")
        found = re.search(r"^CWMP +(https://127\.0\.0\.1:\d+/)$", "\n".join(out.lines), re.M)
        assert found is not None, out.lines
        out.wait_for(
            lambda lines: sum("cwmp listening on" in line for line in lines) == 2,
            deadline,
            "both workers accepting",
        )
        context = stdlib_ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        context.check_hostname = False
        for _ in range(10):  # new connections, to either worker: each one's TLS works
            request = urllib.request.Request(found.group(1), data=b"", method="POST")
            with urllib.request.urlopen(request, timeout=10, context=context) as response:
                assert response.status == 204
        assert stop(acs, deadline) == 0


@pytest.mark.parametrize("count", ["0", "65", "two", "-1"])
def test_workers_must_be_a_sane_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], count: str
) -> None:
    config = write_config(tmp_path)
    assert main(["serve", "--config", str(config), "--workers", count]) == 2
    assert "--workers: must be 1-64 or auto" in capsys.readouterr().err


def test_workers_read_the_proxy_protocol_behind_a_load_balancer(tmp_path: Path) -> None:
    deadline = time.monotonic() + 60
    config = write_config(tmp_path)
    config.write_text(
        config.read_text().replace(
            'listen = "tcp:0:interface=127.0.0.1"',
            'listen = "haproxy:tcp:0:interface=127.0.0.1"',
            1,
        )
    )
    serve = [str(BIN / "acs"), "serve", "--config", str(config), "--workers", "2"]
    with running(serve, tmp_path) as (acs, out, _err):
        cwmp = listening(out, deadline)["cwmp"]
        out.wait_for(
            lambda lines: sum("cwmp listening on" in line for line in lines) == 2,
            deadline,
            "both workers accepting",
        )
        port = int(cwmp.rstrip("/").rsplit(":", 1)[1])
        for n in range(4):  # new connections, to either worker
            body = wire(make_inform(f"PROXIED{n}"))
            request = (
                f"PROXY TCP4 192.0.2.{n + 1} 127.0.0.1 40000 {port}\r\n"
                "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode() + body
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(request)
                assert conn.recv(12) == b"HTTP/1.1 200"
        with Store.open(tmp_path / "acs.db") as store:
            for n in range(4):
                device = store.find_device_by_serial(f"PROXIED{n}")
                assert device is not None and device.address == f"192.0.2.{n + 1}"
        assert stop(acs, deadline) == 0


def post(url: str, body: bytes, cookie: str | None = None) -> tuple[int, str]:
    """POST ``body`` to ``url`` on a new connection: (status, the session cookie it set)."""
    headers = {"Content-Type": "text/xml"} | ({"Cookie": cookie} if cookie else {})
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, (response.headers.get("Set-Cookie") or "").split(";")[0]


def test_two_nodes_run_one_session_per_device_and_a_killed_one_frees_it(tmp_path: Path) -> None:
    deadline = time.monotonic() + 60
    config = str(write_config(tmp_path))  # both on one database, each its own free ports
    argv = [str(BIN / "acs"), "serve", "--config", config]
    inform = wire(make_inform("TWONODES1"))
    with running(argv, tmp_path) as (first, first_out, _):
        a = listening(first_out, deadline)["cwmp"]
        with running(argv, tmp_path) as (second, second_out, _):
            b = listening(second_out, deadline)["cwmp"]
            status, cookie = post(a, inform)
            assert status == 200
            # The CPE informs again on the other node while its session on the first
            # runs: the first node takes it (its cookie again), the second runs none.
            status, again = post(b, inform)
            assert status == 200
            assert again.split(".")[0] == cookie.split(".")[0], (cookie, again)
            assert "sent on to node" in "\n".join(second_out.lines)

            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            # Its lease would run a minute more; a dead process of this host holds nothing.
            status, taken = post(b, inform)
            assert status == 200
            assert taken.split(".")[0] != cookie.split(".")[0], (cookie, taken)
            assert stop(second, deadline) == 0
