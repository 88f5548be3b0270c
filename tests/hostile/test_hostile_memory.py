"""Process memory under hostile Informs (issue 9, defect 1), measured as the RSS of a real
``acs serve`` subprocess on 127.0.0.1.

Big Informs with new serials, first on one kept-alive connection (each ends the session the
connection had), then on connections of their own (each holds a session, up to
``max_sessions``; the rest get 503 before their body is parsed). The RSS after many more
Informs must stay close to the RSS after the first few: what live sessions hold is bounded
by configuration, not by what CPEs send.
"""

from __future__ import annotations

import http.client
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from cwmpharness import make_inform, wire
from procharness import running, stop, write_config

from acs.cwmp import rpc

BIN = Path(sys.executable).parent
BUDGET = 60.0
CAP = 8
# Per Inform: 4,000 parameters of 256 characters, about 1.5 MB on the wire.
PARAMETERS = 4000


def big_inform(serial: str) -> bytes:
    inform = make_inform(serial)
    extra = tuple(rpc.ParameterValue(f"Device.X_Test.P{i}", "x" * 256) for i in range(PARAMETERS))
    return wire(replace(inform, parameters=inform.parameters + extra))


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None, status
    return int(match.group(1))


def post(conn: http.client.HTTPConnection, body: bytes) -> int:
    conn.request("POST", "/", body=body, headers={"Content-Type": "text/xml"})
    response = conn.getresponse()
    response.read()
    return response.status


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_rss_stays_bounded_under_big_informs_with_new_serials(tmp_path: Path) -> None:
    deadline = time.monotonic() + BUDGET
    config = write_config(tmp_path, cwmp=f"max_sessions = {CAP}\nsession_timeout = 300\n")
    with running([str(BIN / "acs"), "serve", "--config", str(config)], tmp_path) as (
        acs,
        out,
        err,
    ):
        out.wait_for(lambda ls: any(ls_.startswith("API token:") for ls_ in ls), deadline, "banner")
        found = re.search(r"^CWMP +http://127\.0\.0\.1:(\d+)/$", "\n".join(out.lines), re.M)
        assert found is not None
        port = int(found.group(1))
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def keep_alive_round(first: int, count: int) -> None:
            for i in range(first, first + count):
                assert post(kept, big_inform(f"KA{i:04d}")) == 200

        keep_alive_round(0, 5)
        baseline = rss_kib(acs.pid)
        keep_alive_round(5, 30)
        after_kept = rss_kib(acs.pid)
        # Connections of their own: CAP - 1 more sessions fit next to the kept one.
        own = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(20)]
        codes = [post(conn, big_inform(f"OWN{i:04d}")) for i, conn in enumerate(own)]
        after_own = rss_kib(acs.pid)
        assert codes.count(200) == CAP - 1, codes
        assert set(codes[CAP - 1 :]) == {503}, codes
        for conn in (kept, *own):
            conn.close()
        assert stop(acs, deadline) == 0
        assert "Traceback" not in err.text()
    # Each session holds no parsed Inform: 30 more Informs on one connection add little,
    # and CAP sessions at most a few MB each (the bound is what the cap allows, not N).
    assert after_kept - baseline < 20 * 1024, (baseline, after_kept)
    assert after_own - baseline < 40 * 1024, (baseline, after_kept, after_own)
