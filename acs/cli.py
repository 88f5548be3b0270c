"""The ``acs`` command line: ``acs serve``, ``acs token create|list|revoke``, ``acs user
create|list|disable|passwd`` (web UI accounts) and ``acs import``.

Exit codes: 0 success, 1 runtime failure (e.g. a port already in use), 2 bad usage or bad
configuration. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, TextIO

from acs.accounts import MAX_PASSWORD, Passwords, name_problem, password_problem
from acs.clock import Reactor
from acs.config import Config, ConfigError, load_config
from acs.store import Conflict, Store
from api.base import ApiError, Principal
from api.device_csv import MAX_IMPORT_BYTES, ImportRefused, import_devices


class _UsageError(Exception):
    """Bad command-line input: reported on stderr with exit status 2."""


class _Parser(argparse.ArgumentParser):
    # argparse exits by itself on usage errors; raising lets main() return the status instead
    # (so tests can call main() and a caller embedding it is not SystemExit'ed).
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message}")


def _build_parser() -> argparse.ArgumentParser:
    config_opt = _Parser(add_help=False)
    config_opt.add_argument(
        "--config",
        metavar="PATH",
        help="TOML configuration file (default: $ACS_CONFIG, else built-in defaults)",
    )

    parser = _Parser(prog="acs", description="TR-069 ACS appliance")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    commands.add_parser(
        "serve", parents=[config_opt], help="run the appliance until SIGINT/SIGTERM"
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
    try:
        args = _build_parser().parse_args(argv)
    except _UsageError as exc:
        return _fail(str(exc), 2)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _fail(f"acs: configuration error: {exc}", 2)
    try:
        if args.command == "serve":
            return serve(config, args.config or os.environ.get("ACS_CONFIG") or None)
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


# -- tokens -----------------------------------------------------------------------------------


def _open_store(config: Config) -> Store:
    # Only the database: token commands need neither the listeners nor the files directory.
    try:
        return Store.open(config.storage.database)
    except Exception as exc:
        raise ConfigError(f"[storage] cannot open {config.storage.database!r}: {exc}") from exc


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


def command_hint(program: str, config_path: str | None, arguments: str) -> str:
    """An ``acs`` command spelled so it can be pasted as printed: the program as it was
    invoked (`.venv/bin/acs` under `make run`) and the config in use."""
    prog = program if os.sep in program else "acs"
    hint = f"{shlex.quote(prog)} {arguments}"
    return f"{hint} --config {shlex.quote(config_path)}" if config_path else hint


def banner(urls: dict[str, str], program: str, config_path: str | None) -> list[str]:
    """The lines `acs serve` prints once listening: each listener, then how to get in."""
    lines = []
    if "cwmp" in urls:
        lines.append(f"CWMP  {urls['cwmp']}")
    if "api" in urls:
        lines.append(f"UI    {urls['api']}")
        lines.append(f"API   {urls['api']}api/v1/ (healthz: {urls['api']}healthz)")
    if "files" in urls:
        lines.append(f"files {urls['files']}")
    user = command_hint(program, config_path, "user create admin --role admin")
    lines.append(f"UI login: {user}")
    token = command_hint(program, config_path, "token create --name admin --role admin")
    lines.append(f"API token: {token}")
    return lines


def serve(config: Config, config_path: str | None = None) -> int:
    """Run the appliance on the global reactor until SIGINT/SIGTERM."""
    from twisted.internet import reactor as _reactor
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    reactor: Reactor = _reactor

    from acs.service import Appliance

    appliance = Appliance(config, reactor)  # ConfigError -> main() -> exit 2
    # Info and up: per-RPC CWMP lines are debug, and a filtered event is never formatted.
    # Any: mypy cannot match classes to zope interfaces (no mypy-zope plugin).
    text: Any = textFileLogObserver(sys.stdout)
    info_and_up: Any = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
    observer: Any = FilteringLogObserver(text, [info_and_up])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    status = {"code": 0}

    def listening(_ports: Any) -> None:
        print("\n".join(banner(appliance.urls(), sys.argv[0], config_path)), flush=True)

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
