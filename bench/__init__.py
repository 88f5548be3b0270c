"""``make bench``: the performance benchmark of issue 5 (measures; optimises nothing).

``python -m bench [--quick|--tiny]`` starts the ACS, a bare ``twisted.web`` ceiling server and
lean load generators as separate processes on 127.0.0.1, runs the five scenarios of issue 5
(ceiling, steady informs, boot storm, API at scale, simulator footprint) each for a bounded
time, and prints a table followed by one JSON object on the last line.

Modules: :mod:`bench.run` orchestrates, :mod:`bench.scenarios` holds one function per
scenario, :mod:`bench.procs` starts and measures processes, :mod:`bench.loadgen` is the load
generator process built on the raw HTTP/1.1 client of :mod:`bench.httpclient` and the
pre-serialized envelopes of :mod:`bench.envelopes`, :mod:`bench.ceiling` is the bare server
and :mod:`bench.simfoot` measures the simulator's memory per CPE.
"""
