"""The ``acs`` command line: ``acs serve``, ``acs token create|list|revoke``, ``acs user
create|list|disable|passwd`` (web UI accounts), ``acs import``, ``acs db status|backup``,
``acs sim`` (the CPE simulator, as ``cpe-sim``), ``acs install`` (the single-file
executable as a systemd service) and ``acs --version``.

Exit codes: 0 success, 1 runtime failure (e.g. a port already in use), 2 bad usage or bad
configuration. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import stat
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

from acs.accounts import MAX_PASSWORD, Passwords, name_problem, password_problem
from acs.clock import Reactor
from acs.config import APPLIANCE_CONFIG, APPLIANCE_STATE, Config, ConfigError, load_config
from acs.store import (
    Conflict,
    NodeStatus,
    Store,
    StoreError,
    backup_file,
    file_nodes,
    file_schema_version,
    is_postgresql,
    redacted,
)
from acs.version import describe
from api.base import ApiError, Principal
from api.device_csv import MAX_IMPORT_BYTES, ImportRefused, import_devices

# `acs serve --workers` at most: each worker is a whole appliance (~60 MB resident).
MAX_WORKERS = 64


class _UsageError(Exception):
    """Bad command-line input: reported on stderr with exit status 2."""


class _Parser(argparse.ArgumentParser):
    # argparse exits by itself on usage errors; raising lets main() return the status instead
    # (so tests can call main() and a caller embedding it is not SystemExit'ed).
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message}")


class _Version(argparse.Action):
    """``--version``: the version and commit, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and commit")

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any) -> NoReturn:
        print(describe())
        parser.exit()


def _build_parser() -> argparse.ArgumentParser:
    config_opt = _Parser(add_help=False)
    config_opt.add_argument(
        "--config",
        metavar="PATH",
        help="TOML configuration file (default: $ACS_CONFIG, else built-in defaults)",
    )
    config_opt.add_argument(
        "--appliance",
        action="store_true",
        help=f"an installed appliance's defaults: {APPLIANCE_CONFIG} if it exists, storage "
        f"under {APPLIANCE_STATE}/ (also ACS_APPLIANCE=1)",
    )

    parser = _Parser(prog="acs", description="TR-069 ACS appliance")
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    serve_cmd = commands.add_parser(
        "serve", parents=[config_opt], help="run the appliance until SIGINT/SIGTERM"
    )
    serve_cmd.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help=f"processes sharing the listeners (1-{MAX_WORKERS}, or 'auto': one per core; "
        "default 1)",
    )
    # A worker's sockets, inherited from the supervisor (acs.workers): not for people.
    serve_cmd.add_argument("--worker-sockets", help=argparse.SUPPRESS)
    # Parsed by cpe_sim.cli itself (main() hands it everything after "sim").
    commands.add_parser(
        "sim", help="run simulated CPEs against an ACS (as cpe-sim)", add_help=False
    )
    db = commands.add_parser("db", help="the database: schema version, online backup")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", parser_class=_Parser)
    db_commands.required = True
    db_commands.add_parser(
        "status", parents=[config_opt], help="its path, size and schema version (read only)"
    )
    backup = db_commands.add_parser(
        "backup", parents=[config_opt], help="copy it, consistent, while the appliance runs"
    )
    backup.add_argument("target", metavar="FILE", help="the copy to write (must not exist)")
    migrate_to = db_commands.add_parser(
        "migrate-to",
        parents=[config_opt],
        help="copy it into an empty PostgreSQL database (stop the appliance first)",
    )
    migrate_to.add_argument(
        "target", metavar="URL", help="postgresql://user@host/database (or a libpq URL)"
    )
    install = commands.add_parser(
        "install",
        help="install this executable as the systemd service acs (user, unit, config)",
    )
    install.add_argument(
        "--root",
        metavar="DIR",
        default="/",
        help="lay the files down under DIR instead of / (no user is created, no systemctl)",
    )

    token = commands.add_parser("token", help="manage REST API tokens")
    token_commands = token.add_subparsers(
        dest="token_command", metavar="ACTION", parser_class=_Parser
    )
    token_commands.required = True
    create = token_commands.add_parser(
        "create", parents=[config_opt], help="create a token and print it (shown only once)"
    )
    create.add_argument("--name", required=True, help="token name (recorded as the actor)")
    create.add_argument("--role", required=True, help="admin, operator or viewer")
    _org_option(create, "token")
    imports = commands.add_parser(
        "import",
        parents=[config_opt],
        help="create the devices of a CSV file, all or none (as POST /inventory_device/import/)",
    )
    imports.add_argument("file", metavar="FILE.csv", help="a header row, then one device a row")
    imports.add_argument(
        "--dry-run", action="store_true", help="check the file and report; write nothing"
    )
    token_commands.add_parser("list", parents=[config_opt], help="list tokens (never the secret)")
    revoke = token_commands.add_parser("revoke", parents=[config_opt], help="revoke a token")
    revoke.add_argument("token_id", metavar="ID", help="token id (see `acs token list`)")

    user = commands.add_parser("user", help="manage web UI accounts (roles and scope as tokens)")
    user_commands = user.add_subparsers(dest="user_command", metavar="ACTION", parser_class=_Parser)
    user_commands.required = True
    password_opt = _Parser(add_help=False)
    password_opt.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (default: prompt twice)",
    )
    ucreate = user_commands.add_parser(
        "create", parents=[config_opt, password_opt], help="create an account"
    )
    ucreate.add_argument("name", metavar="NAME", help="the login name")
    ucreate.add_argument("--role", required=True, help="admin, operator or viewer")
    _org_option(ucreate, "user")
    user_commands.add_parser("list", parents=[config_opt], help="list accounts")
    disable = user_commands.add_parser(
        "disable", parents=[config_opt], help="disable an account and end its sessions"
    )
    disable.add_argument("name", metavar="NAME")
    passwd = user_commands.add_parser(
        "passwd", parents=[config_opt, password_opt], help="set a new password (ends sessions)"
    )
    passwd.add_argument("name", metavar="NAME")
    return parser


def _org_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--org",
        dest="orgs",
        metavar="ID",
        action="extend",
        nargs="+",
        default=[],
        help=f"restrict the {what} to these organization ids (repeatable; default: all)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``acs`` console script; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["sim"]:
        from cpe_sim.cli import main as sim

        try:
            return sim(arguments[1:], prog="acs sim")
        except SystemExit as exc:  # its usage errors and --help, as argparse reports them
            return exc.code if isinstance(exc.code, int) else 0
    try:
        args = _build_parser().parse_args(arguments)
    except _UsageError as exc:
        return _fail(str(exc), 2)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    if args.command == "install":
        from acs.install import InstallError, install

        try:
            return install(args.root, sys.stdout)
        except InstallError as exc:
            return _fail(f"acs install: {exc}", 1)
    appliance = args.appliance or os.environ.get("ACS_APPLIANCE") == "1"
    try:
        config = load_config(args.config, appliance=appliance)
    except ConfigError as exc:
        return _fail(f"acs: configuration error: {exc}", 2)
    try:
        if args.command == "serve":
            config_path = args.config or os.environ.get("ACS_CONFIG") or None
            if args.workers > 1 and args.worker_sockets is None:
                return supervise(config, config_path, args.workers, appliance_mode=appliance)
            return serve(
                config, config_path, appliance_mode=appliance, worker_sockets=args.worker_sockets
            )
        if args.command == "db":
            return _db(config, args, sys.stdout)
        if args.command == "import":
            return _import(config, args.file, dry_run=args.dry_run, out=sys.stdout)
        if args.command == "user":
            return _user(config, args, sys.stdin, sys.stdout)
        if args.token_command == "create":
            return _token_create(config, args.name, args.role, args.orgs)
        if args.token_command == "list":
            return _token_list(config, sys.stdout)
        return _token_revoke(config, args.token_id)
    except _UsageError as exc:
        return _fail(f"acs: {exc}", 2)
    except ConfigError as exc:
        return _fail(f"acs: configuration error: {exc}", 2)


def _fail(message: str, status: int) -> int:
    print(message, file=sys.stderr)
    return status


# -- import -----------------------------------------------------------------------------------


def _import(config: Config, path: str, *, dry_run: bool, out: TextIO) -> int:
    """The report as JSON on stdout; 0 when every row was good, 1 when none was written."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_IMPORT_BYTES + 1)
    except OSError as exc:
        raise _UsageError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_IMPORT_BYTES:
        raise _UsageError(f"{path}: an import is at most {MAX_IMPORT_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _UsageError(f"{path}: not UTF-8 text") from None
    store = _open_store(config)
    try:
        now = _now()
        principal = Principal("acs import", "admin")
        default = store.ensure_organization(config.cwmp.default_organization).id
        try:
            report = import_devices(
                store, principal, text, default_org=default, dry_run=dry_run, now=now
            )
        except ImportRefused as exc:
            raise _UsageError(f"{path}: {exc}") from None
        except ApiError as exc:  # a serial registered meanwhile
            print(json.dumps(exc.body), file=out)
            return 1
    finally:
        store.close()
    print(json.dumps(report.json(), indent=1), file=out)
    return 1 if report.errors else 0


# -- db ---------------------------------------------------------------------------------------


def _db(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    """``status``: JSON on stdout, 1 when the schema is newer than this program's (an
    SQLite file or a PostgreSQL database). ``backup``: an online copy of the file,
    owner-only, that never overwrites a file. ``migrate-to``: the file into PostgreSQL."""
    from acs.store.migrations import MIGRATIONS

    path = config.storage.database
    if is_postgresql(path):
        if args.db_command != "status":
            raise _UsageError(
                f"acs db {args.db_command} reads an SQLite file; {redacted(path)} is "
                "PostgreSQL (use its own tools: pg_dump, psql)"
            )
        from acs.store.postgres import read_status

        try:
            version, size, nodes = read_status(path, now=_now())
        except StoreError as exc:
            raise _UsageError(str(exc)) from None
        return _db_status(redacted(path), size, None, version, nodes, out)
    if not os.path.isfile(path):
        raise _UsageError(f"no database at {path}")
    try:
        if args.db_command == "migrate-to":
            return _migrate_to(path, args.target, out)
        if args.db_command == "backup":
            size = backup_file(path, args.target)
            print(f"backed up to {args.target} ({size} bytes)", file=out)
            return 0
        version = file_schema_version(path)
        # The processes serving it (`acs serve --workers`, nodes) and their live sessions.
        nodes = [] if version > len(MIGRATIONS) else file_nodes(path, now=_now())
    except StoreError as exc:
        raise _UsageError(str(exc)) from None
    wal = Path(f"{path}-wal")
    size = os.path.getsize(path) + (wal.stat().st_size if wal.exists() else 0)
    mode = f"{stat.S_IMODE(os.stat(path).st_mode):04o}"
    return _db_status(path, size, mode, version, nodes, out)


def _db_status(
    shown: str, size: int, mode: str | None, version: int, nodes: list[NodeStatus], out: TextIO
) -> int:
    """``acs db status``'s JSON (``mode``: the file's, None on PostgreSQL); 1 when the
    schema is newer than this program's."""
    from acs.store.migrations import MIGRATIONS

    known = len(MIGRATIONS)
    state = "current" if version == known else "older" if version < known else "newer"
    print(
        json.dumps(
            {
                "database": shown,
                "bytes": size,
                "mode": mode,
                "schema_version": version,
                "program_schema_version": known,
                "schema": state,
                "program": describe(),
                "nodes": [
                    {**asdict(node), "started": _format_time(node.started)} for node in nodes
                ],
            },
            indent=1,
        ),
        file=out,
    )
    if state == "newer":
        print(
            f"acs: {shown} was written by a newer acs (schema {version}, this one knows "
            f"{known}): run that version, or restore a backup made before the upgrade",
            file=sys.stderr,
        )
        return 1
    return 0


def _migrate_to(path: str, url: str, out: TextIO) -> int:
    if not is_postgresql(url):
        raise _UsageError(f"migrate-to takes a postgresql:// URL, not {url!r}")
    from acs.store.postgres import copy_from_sqlite

    counts = copy_from_sqlite(path, url)
    for table, n in counts.items():
        print(f"{table}: {n}", file=out)
    print(f"copied {path} to {redacted(url)}: set [storage] database to that URL", file=out)
    return 0


# -- tokens -----------------------------------------------------------------------------------


def _open_store(config: Config) -> Store:
    # Only the database: token commands need neither the listeners nor the files directory.
    try:
        return Store.open(config.storage.database)
    except Exception as exc:
        raise ConfigError(
            f"[storage] cannot open {redacted(config.storage.database)!r}: {exc}"
        ) from exc


def _now() -> float:
    return datetime.now(UTC).timestamp()


def _org_ids(orgs: Sequence[str]) -> list[int]:
    org_ids: list[int] = []
    for raw in orgs:
        try:
            org_ids.append(int(raw))
        except ValueError:
            raise _UsageError(f"--org must be an organization id (integer), not {raw!r}") from None
    return org_ids


def _token_create(config: Config, name: str, role: str, orgs: Sequence[str]) -> int:
    name = name.strip()
    if not name:
        raise _UsageError("--name must not be empty")
    org_ids = _org_ids(orgs)
    store = _open_store(config)
    try:
        try:
            _row, token = store.create_token(name, role, org_ids, now=_now())
        except ValueError as exc:
            raise _UsageError(str(exc)) from None
    finally:
        store.close()
    # Only the token on stdout, so `TOKEN=$(acs token create ...)` works.
    print(token)
    return 0


def _format_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _token_list(config: Config, out: TextIO) -> int:
    store = _open_store(config)
    try:
        tokens = store.list_tokens()
    finally:
        store.close()
    rows = [("ID", "NAME", "ROLE", "ORGS", "CREATED", "REVOKED")]
    for t in tokens:
        orgs = ",".join(str(o) for o in t.organization_ids) or "all"
        created = _format_time(t.created)
        rows.append((str(t.id), t.name, t.role, orgs, created, "yes" if t.revoked else "no"))
    _table(rows, out)
    return 0


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(),
            file=out,
        )


def _token_revoke(config: Config, raw_id: str) -> int:
    try:
        token_id = int(raw_id)
    except ValueError:
        raise _UsageError(f"token id must be an integer, not {raw_id!r}") from None
    store = _open_store(config)
    try:
        if store.get_token(token_id) is None:
            raise _UsageError(f"no token with id {token_id}")
        revoked = store.revoke_token(token_id)
    finally:
        store.close()
    print(f"token {token_id} revoked" if revoked else f"token {token_id} was already revoked")
    return 0


# -- users ------------------------------------------------------------------------------------


def _user(config: Config, args: argparse.Namespace, stdin: TextIO, out: TextIO) -> int:
    command = args.user_command
    if command != "list" and (problem := name_problem(args.name)) is not None:
        raise _UsageError(problem)
    password = _new_password(stdin, args.password_stdin) if command in ("create", "passwd") else ""
    hashed = Passwords().hash(password) if password else ""
    store = _open_store(config)
    try:
        if command == "list":
            rows = [("ID", "NAME", "ROLE", "ORGS", "CREATED", "DISABLED")]
            for u in store.list_users():
                orgs = ",".join(str(o) for o in u.organization_ids) or "all"
                created = _format_time(u.created)
                rows.append(
                    (str(u.id), u.name, u.role, orgs, created, "yes" if u.disabled else "no")
                )
            _table(rows, out)
            return 0
        if command == "create":
            try:
                store.create_user(args.name, hashed, args.role, _org_ids(args.orgs), now=_now())
            except (ValueError, Conflict) as exc:
                raise _UsageError(str(exc)) from None
            print(f"user {args.name} created ({args.role})", file=out)
            return 0
        done = (
            store.disable_user(args.name, now=_now())
            if command == "disable"
            else store.set_password(args.name, hashed, now=_now())
        )
        if not done:
            raise _UsageError(f"no user named {args.name!r}")
        print(
            f"user {args.name} {'disabled' if command == 'disable' else 'password set'}", file=out
        )
        return 0
    finally:
        store.close()


def _new_password(stdin: TextIO, from_stdin: bool) -> str:
    if from_stdin:
        password = stdin.readline(MAX_PASSWORD + 2).rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise _UsageError("the passwords differ")
    problem = password_problem(password)
    if problem is not None:
        raise _UsageError(problem)
    return password


# -- serve ------------------------------------------------------------------------------------


def command_hint(
    program: str, config_path: str | None, arguments: str, *, appliance: bool = False
) -> str:
    """An ``acs`` command spelled so it can be pasted as printed: the program as it was
    invoked (`.venv/bin/acs` under `make run`) and the config (or appliance mode) in use."""
    prog = program if os.sep in program else "acs"
    hint = f"{shlex.quote(prog)} {arguments}"
    if config_path:
        hint += f" --config {shlex.quote(config_path)}"
    return f"{hint} --appliance" if appliance else hint


def xmpp_account(config: Config) -> dict[str, str]:
    """For the banner: the XMPP account connection requests go from, and its server."""
    if not config.xmpp.server:
        return {}
    return {"xmpp": f"{config.xmpp.jid} on {config.xmpp.server.strip()} (connection requests)"}


def banner(
    urls: dict[str, str], program: str, config_path: str | None, *, appliance: bool = False
) -> list[str]:
    """The lines `acs serve` prints once listening: each listener, then how to get in."""
    lines = []
    if "cwmp" in urls:
        lines.append(f"CWMP  {urls['cwmp']}")
    if "api" in urls:
        lines.append(f"UI    {urls['api']}")
        lines.append(f"API   {urls['api']}api/v1/ (healthz: {urls['api']}healthz)")
    if "files" in urls:
        lines.append(f"files {urls['files']}")
    if "stun" in urls:
        lines.append(f"STUN  {urls['stun']}")
    if "xmpp" in urls:
        lines.append(f"XMPP  {urls['xmpp']}")
    user = command_hint(program, config_path, "user create admin --role admin", appliance=appliance)
    lines.append(f"UI login: {user}")
    token = command_hint(
        program, config_path, "token create --name admin --role admin", appliance=appliance
    )
    lines.append(f"API token: {token}")
    return lines


def udp_address(host: str, port: int) -> str:
    """How the banner shows the STUN listener: ``udp [::]:3478``."""
    return f"udp [{host}]:{port}" if ":" in host else f"udp {host}:{port}"


def _workers(text: str) -> int:
    if text == "auto":
        return max(1, min(os.cpu_count() or 1, MAX_WORKERS))
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be 1-{MAX_WORKERS} or auto, not {text!r}")
    return int(text)


def _begin_logging() -> None:
    from twisted.logger import globalLogBeginner

    from acs.logs import LineLogObserver

    # Info and up: per-RPC CWMP lines are debug, and a dropped event is never formatted.
    # Any: mypy cannot match classes to zope interfaces (no mypy-zope plugin).
    observer: Any = LineLogObserver(sys.stdout)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def supervise(
    config: Config, config_path: str | None, count: int, *, appliance_mode: bool = False
) -> int:
    """``acs serve --workers N``: bind the listeners, run N workers over them (acs.workers)
    until SIGINT/SIGTERM."""
    from twisted.internet import reactor as _reactor

    from acs import workers
    from acs.listen import is_tls
    from acs.service import open_store, port_url

    reactor: Reactor = _reactor
    open_store(config).close()  # migrated once, before any worker opens it; else exit 2
    ports = workers.bind_shared(reactor, config)
    stun = workers.bind_stun(config)
    _begin_logging()
    status = {"code": 0}

    def fatal(code: int) -> None:
        print("acs: a worker could not start: stopping", file=sys.stderr, flush=True)
        status["code"] = code
        reactor.stop()

    supervisor = workers.Supervisor(
        reactor,
        ports,
        workers.worker_command(config_path, appliance_mode),
        count,
        on_fatal=fatal,
        stun=stun,
    )

    def start() -> None:
        supervisor.start()
        urls = {
            name: port_url(port, secure=is_tls(getattr(config, name).listen))
            for name, port in ports.items()
        }
        if stun is not None:
            host, port = stun.getsockname()[:2]
            urls["stun"] = udp_address(host, port)
        urls.update(xmpp_account(config))
        lines = banner(urls, sys.argv[0], config_path, appliance=appliance_mode)
        pids = " ".join(map(str, supervisor.pids()))
        print("\n".join([*lines, f"workers {count} (pids {pids})"]), flush=True)

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", supervisor.stop)
    reactor.run()
    return status["code"]


def serve(
    config: Config,
    config_path: str | None = None,
    *,
    appliance_mode: bool = False,
    worker_sockets: str | None = None,
) -> int:
    """Run the appliance on the global reactor until SIGINT/SIGTERM (as a worker of
    ``supervise`` with ``worker_sockets``: on its sockets, until it ends)."""
    from twisted.internet import reactor as _reactor

    reactor: Reactor = _reactor

    from acs.service import Appliance

    inherited = None
    stun_fd = None
    if worker_sockets is not None:
        from acs import workers

        inherited = workers.inherited_endpoints(reactor, worker_sockets, config)
        stun_fd = workers.inherited_stun(worker_sockets)
        workers.watch_lifeline(reactor)
    # ConfigError -> exit 2
    appliance = Appliance(config, reactor, inherited=inherited, stun_fd=stun_fd)
    _begin_logging()
    status = {"code": 0}

    def listening(_ports: Any) -> None:
        if inherited is not None:
            return  # the supervisor printed where the listeners are
        urls = appliance.urls()
        stun = appliance.stun_address()
        if stun is not None:
            urls["stun"] = udp_address(*stun)
        urls.update(xmpp_account(config))
        lines = banner(urls, sys.argv[0], config_path, appliance=appliance_mode)
        print("\n".join(lines), flush=True)

    def failed(failure: Any) -> None:
        print(f"acs: cannot start: {failure.getErrorMessage()}", file=sys.stderr, flush=True)
        status["code"] = 1
        reactor.stop()

    def start() -> None:
        appliance.service.startService()
        appliance.when_listening().addCallbacks(listening, failed)

    reactor.callWhenRunning(start)
    # The reactor's own SIGINT/SIGTERM handlers stop it; this trigger then stops the service
    # (listeners, sweep, session timers) and closes the store before the process exits.
    reactor.addSystemEventTrigger("before", "shutdown", appliance.service.stopService)
    reactor.run()
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
