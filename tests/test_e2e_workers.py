"""``acs serve --workers 2`` for real: two worker processes accept on the supervisor's
sockets; simulated CPEs that open a new connection for every request of a session (so
about half of them land on the worker not running it) all finish their sessions; a worker
killed with ``kill -9`` is restarted; SIGTERM stops every process."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from metricscheck import samples
from procharness import listening, running, sessions_done, stop, write_config

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


def test_two_workers_serve_sessions_whose_requests_land_on_either(tmp_path: Path) -> None:
    deadline = time.monotonic() + 120
    config = str(write_config(tmp_path))
    serve = [str(BIN / "acs"), "serve", "--config", config, "--workers", "2"]
    with running(serve, tmp_path) as (acs, out, _err):
        urls = listening(out, deadline)
        out.wait_for(lambda lines: WORKERS.search("\n".join(lines)) is not None, deadline, "pids")
        match = WORKERS.search("\n".join(out.lines))
        assert match is not None
        pids = [int(match.group(1)), int(match.group(2))]
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
            assert "CWMP request failed" not in text
            assert "timed out" not in text

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


def test_workers_refuse_a_tls_listener_they_cannot_share(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    text = config.read_text().replace(
        'listen = "tcp:0:interface=127.0.0.1"\n\n[api]',
        'listen = "ssl:0:privateKey=k.pem"\n\n[api]',
    )
    config.write_text(text)
    assert main(["serve", "--config", str(config), "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "--workers shares plain TCP listeners only" in err, err


@pytest.mark.parametrize("count", ["0", "65", "two", "-1"])
def test_workers_must_be_a_sane_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], count: str
) -> None:
    config = write_config(tmp_path)
    assert main(["serve", "--config", str(config), "--workers", count]) == 2
    assert "--workers: must be 1-64 or auto" in capsys.readouterr().err
