"""Simulator footprint: ``python -m bench.simfoot COUNT`` prints RSS per simulated CPE as JSON.

A ``cpe_sim.Fleet`` of COUNT TR-181 CPEs is built and powered on in this process, with the
first Informs spread over a day so each CPE holds its real idle state (data model, timers)
while no traffic flows; the growth of the resident set over the process with the templates
already loaded, divided by COUNT, is the cost of one simulated CPE.
"""

from __future__ import annotations

import gc
import json
import sys
from typing import Any

from acs.clock import Reactor
from cpe_sim.datamodel import load_template
from cpe_sim.fleet import Fleet


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def measure(reactor: Reactor, count: int) -> dict[str, Any]:
    load_template("tr181")
    load_template("tr098")
    gc.collect()
    before = _rss()
    fleet = Fleet(
        reactor,
        acs_url="http://127.0.0.1:9/",  # never contacted: the first Inform is a day away
        count=count,
        start_spread=86400.0,
        connreq_listen="tcp:0:interface=127.0.0.1",
    )
    await fleet.start()
    gc.collect()
    after = _rss()
    await fleet.stop()
    per_cpe = (after - before) / count if count else 0.0
    return {
        "cpes": count,
        "rss_before_mb": round(before / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "kb_per_cpe": round(per_cpe / 1024, 2),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m bench.simfoot COUNT", file=sys.stderr)
        return 2
    count = int(argv[0])
    from twisted.internet import defer, task

    result: dict[str, Any] = {}

    def run(reactor: Reactor) -> defer.Deferred[None]:
        d = defer.Deferred.fromCoroutine(measure(reactor, count))
        return d.addCallback(result.update)

    try:
        task.react(run)
    except SystemExit as exc:
        if exc.code not in (0, None):
            return int(exc.code) if isinstance(exc.code, int) else 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
