"""``cpe-sim``: run a fleet of simulated CPEs against an ACS from the command line.

Runs on the real reactor, prints a one-line live summary (refreshed in place every second
on a terminal, one line every 5 s otherwise, both on stderr), stops after ``--duration``
seconds or on Ctrl-C / SIGTERM, lets in-flight sessions finish, and exits 0.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import IO, Any
from urllib.parse import urlsplit

from twisted.internet.task import LoopingCall

from acs.clock import Reactor
from cpe_sim.cpe import CWMP_VERSIONS
from cpe_sim.fleet import MAX_NAT_COUNT, MAX_XMPP_COUNT, MODELS, Faults, Fleet
from cpe_sim.xmpp import XmppOptions, is_loopback_ipv4, trust_root

MAX_COUNT = 100_000
MAX_CA_BYTES = 1_000_000  # a --xmpp-ca file: a bundle of a few hundred certificates at most


def _bounded_int(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, not {value}")
        return value

    return parse


def _positive_float(minimum: float) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value >= minimum or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be a finite number >= {minimum}, not {text}")
        return value

    return parse


MAX_VALUE_CHANGES = 100


def _value_change(text: str) -> tuple[str, str, float]:
    """``PATH=VALUE@SECONDS``: PATH relative to the data-model root or absolute."""
    head, at, when = text.rpartition("@")
    path, equals, value = head.partition("=")
    if not (at and equals and path):
        raise argparse.ArgumentTypeError(f"not PATH=VALUE@SECONDS: {text!r}")
    seconds = _positive_float(0)(when)
    if seconds > 86400:
        raise argparse.ArgumentTypeError(f"at most a day (86400 s), not {when}")
    return path, value, seconds


def _url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {text!r}")
    return text


def _xmpp_server(text: str) -> tuple[str, int]:
    """``HOST:PORT``, HOST an IPv4 loopback address (all the simulator reaches)."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"not HOST:PORT with a port in 1-65535: {text!r}")
    if not is_loopback_ipv4(host):
        raise argparse.ArgumentTypeError(f"HOST must be an IPv4 loopback address: {host!r}")
    return host, int(port)


def _pem_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CA_BYTES + 1)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_CA_BYTES:
        raise argparse.ArgumentTypeError(f"{path}: larger than {MAX_CA_BYTES} bytes")
    try:
        trust_root(data)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{path}: {exc}") from None
    return data


def xmpp_options(args: argparse.Namespace) -> XmppOptions | None:
    """The fleet's XMPP server from ``--xmpp``/``--xmpp-domain``/``--xmpp-ca`` (ValueError
    for a domain that is not one)."""
    if args.xmpp is None:
        return None
    host, port = args.xmpp
    return XmppOptions(host, port, args.xmpp_domain or host, args.xmpp_ca)


def build_parser(prog: str = "cpe-sim") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Simulated TR-069 CPEs informing an ACS over HTTP."
    )
    p.add_argument("--acs", required=True, type=_url, help="ACS URL, e.g. http://127.0.0.1:7547/")
    p.add_argument("--count", required=True, type=_bounded_int(1, MAX_COUNT), help="number of CPEs")
    p.add_argument("--serial-prefix", default="SIM", help="serials are <prefix><6 digits>")
    p.add_argument("--model", choices=MODELS, default="tr181", help="data model root")
    p.add_argument(
        "--cwmp-version",
        choices=CWMP_VERSIONS,
        default=None,
        help="CWMP version the CPEs speak (default: 1.3 for tr181, 1.0 for tr098)",
    )
    p.add_argument(
        "--interval",
        type=_positive_float(1),
        default=None,
        help="initial PeriodicInformInterval in seconds (default: the template's)",
    )
    p.add_argument(
        "--duration",
        type=_positive_float(0.001),
        default=None,
        help="stop after this many seconds (default: until Ctrl-C/SIGTERM)",
    )
    p.add_argument("--username", default="", help="ManagementServer.Username for ACS auth")
    p.add_argument("--password", default="", help="ManagementServer.Password for ACS auth")
    p.add_argument(
        "--start-spread",
        type=_positive_float(0),
        default=None,
        help="spread the first informs over this many seconds (default: count/100)",
    )
    p.add_argument(
        "--connreq-listen",
        default="tcp:0:interface=127.0.0.1",
        help="Twisted endpoint for the connection-request listener",
    )
    p.add_argument("--reboot-delay", type=_positive_float(0), default=5.0)
    p.add_argument(
        "--reconnect",
        action="store_true",
        help="a new TCP connection for every request of a session, the session carried by "
        "its cookie alone (as behind a load balancer that spreads connections over ACS nodes)",
    )
    p.add_argument(
        "--nat",
        action="store_true",
        help="every CPE behind a NAT of its own: its ConnectionRequestURL is unreachable, "
        "NATDetected is true, and it is woken by TR-111 UDP connection requests through the "
        "binding its STUN client keeps once the ACS enables STUN (no --connreq-listen; at "
        f"most {MAX_NAT_COUNT} CPEs)",
    )
    p.add_argument(
        "--xmpp",
        type=_xmpp_server,
        default=None,
        metavar="HOST:PORT",
        help="every TR-181 CPE keeps a TLS connection to this XMPP server (an IPv4 loopback "
        "address), with an account it registers in-band, and is woken by TR-069 Annex K "
        f"connection requests sent there (with or without --nat; at most {MAX_XMPP_COUNT} CPEs)",
    )
    p.add_argument(
        "--xmpp-domain",
        default=None,
        metavar="DOMAIN",
        help="the XMPP domain of the CPEs' JIDs, which the server's certificate must name "
        "(default: the --xmpp host)",
    )
    p.add_argument(
        "--xmpp-ca",
        type=_pem_file,
        default=None,
        metavar="FILE",
        help="PEM certificates to trust for the XMPP server (default: the system's trust store)",
    )
    p.add_argument(
        "--value-change",
        action="append",
        default=[],
        type=_value_change,
        metavar="PATH=VALUE@SECONDS",
        help="every CPE's PATH (relative to its data-model root, or absolute) changes by itself "
        "to VALUE after SECONDS; reported as its notification attribute says (repeatable)",
    )
    p.add_argument("--seed", type=int, default=0)
    faults = p.add_argument_group("fault injection (every CPE's file transfers)")
    faults.add_argument(
        "--corrupt-download", action="store_true", help="damage downloaded files (9018)"
    )
    faults.add_argument(
        "--interrupt-after",
        type=_bounded_int(0, 2**62),
        default=None,
        metavar="BYTES",
        help="cut each download once after this many bytes, then resume with Range",
    )
    faults.add_argument(
        "--no-resume", action="store_true", help="an interrupted download fails (9017)"
    )
    faults.add_argument("--refuse-download", action="store_true", help="fail every download (9010)")
    faults.add_argument("--fail-upload", action="store_true", help="fail every upload (9011)")
    return p


def parse_args(argv: Sequence[str] | None = None, prog: str = "cpe-sim") -> argparse.Namespace:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.password and not args.username:
        parser.error("--password needs --username")
    if args.nat and args.count > MAX_NAT_COUNT:
        parser.error(f"--nat takes at most {MAX_NAT_COUNT} CPEs (one UDP socket each)")
    if len(args.value_change) > MAX_VALUE_CHANGES:
        parser.error(f"at most {MAX_VALUE_CHANGES} --value-change")
    if args.xmpp is None and (args.xmpp_domain is not None or args.xmpp_ca is not None):
        parser.error("--xmpp-domain and --xmpp-ca need --xmpp")
    if args.xmpp is not None:
        if args.model == "tr098":
            parser.error("--xmpp needs TR-181 CPEs (--model tr181 or mixed): TR-098 has no XMPP")
        if args.count > MAX_XMPP_COUNT:
            parser.error(f"--xmpp takes at most {MAX_XMPP_COUNT} CPEs (one connection each)")
        try:
            xmpp_options(args)
        except ValueError as exc:
            parser.error(f"--xmpp-domain: {exc}")
    return args


def make_fleet(reactor: Reactor, args: argparse.Namespace) -> Fleet:
    spread = args.start_spread if args.start_spread is not None else args.count / 100
    fleet = Fleet(
        reactor,
        acs_url=args.acs,
        count=args.count,
        serial_prefix=args.serial_prefix,
        model=args.model,
        interval=args.interval,
        connreq_listen=args.connreq_listen,
        acs_username=args.username,
        acs_password=args.password,
        reboot_delay=args.reboot_delay,
        reconnect=args.reconnect,
        start_spread=spread,
        seed=args.seed,
        cwmp_version=args.cwmp_version,
        nat=args.nat,
        xmpp=xmpp_options(args),
    )
    fleet.faults = Faults(
        corrupt_download=args.corrupt_download,
        interrupt_after=args.interrupt_after,
        resume=not args.no_resume,
        refuse_download=args.refuse_download,
        fail_upload=args.fail_upload,
    )
    return fleet


class Reporter:
    """The live summary line: ``\\r``-refreshed on a TTY, plain lines otherwise."""

    def __init__(self, fleet: Fleet, out: IO[str]) -> None:
        self.fleet = fleet
        self.out = out
        self.tty = out.isatty()
        self.period = 1.0 if self.tty else 5.0

    def report(self) -> None:
        line = self.fleet.summary()
        if self.tty:
            self.out.write("\r" + line + "\x1b[K")
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def final(self) -> None:
        self.out.write(("\n" if self.tty else "") + self.fleet.summary() + "\n")
        self.out.flush()


def main(argv: Sequence[str] | None = None, prog: str = "cpe-sim") -> int:
    """The simulator's command line (also ``acs sim``: ``prog`` names it in messages)."""
    args = parse_args(argv, prog)
    from twisted.internet import reactor as _reactor

    reactor: Reactor = _reactor
    fleet = make_fleet(reactor, args)
    reporter = Reporter(fleet, sys.stderr)
    ticker = LoopingCall(reporter.report)
    ticker.clock = reactor
    failures: list[str] = []

    def started(_: object) -> None:
        try:
            for path, value, seconds in args.value_change:
                fleet.schedule_value_change(path, value, seconds)
        except ValueError as exc:
            failures.append(str(exc))
            reactor.stop()
            return
        ticker.start(reporter.period, now=False)
        if args.duration is not None:
            reactor.callLater(args.duration, reactor.stop)

    def failed(f: Any) -> None:
        failures.append(f.getErrorMessage())
        reactor.stop()

    def shutting_down() -> Any:
        if ticker.running:
            ticker.stop()
        return fleet.stop()

    reactor.addSystemEventTrigger("before", "shutdown", shutting_down)
    reactor.callWhenRunning(lambda: fleet.start().addCallbacks(started, failed))
    reactor.run()
    if failures:
        print(f"{prog}: cannot start: {failures[0]}", file=sys.stderr)
        return 1
    reporter.final()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
