"""``acs install``: lay the single-file executable down as the systemd service ``acs``.

Under ``root`` (``/`` on a real install, another directory to stage or to test):

- ``usr/local/bin/acs``: this executable (replaced atomically: an upgrade is a new binary
  and ``systemctl restart acs``; the schema migrates at start);
- ``etc/systemd/system/acs.service``: packaging/acs.service, carried inside the binary;
- ``etc/acs/acs.toml``: a starting configuration, only if there is none (root:acs 0640);
- ``var/lib/acs``: the state directory, the acs user's alone (0700).

On ``/`` it also creates the system user and group ``acs`` when missing (``useradd``) and
runs ``systemctl daemon-reload``; enabling the service is left to the operator, printed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TextIO

from acs.config import APPLIANCE_CONFIG, APPLIANCE_STATE

USER = "acs"
BINARY = "usr/local/bin/acs"
UNIT = "etc/systemd/system/acs.service"
# Where the spec (packaging/acs.spec) puts the unit inside the bundle.
BUNDLED_UNIT = Path(__file__).resolve().parent / "acs.service"
STARTING_CONFIG = f"""\
# The appliance's configuration: `acs serve --appliance` (the acs service) reads it.
# Every key, its default and what it does: config.example.toml in the source tree.
[storage]
database = "{APPLIANCE_STATE}/acs.db"
files = "{APPLIANCE_STATE}/files"

# CPEs download firmware from the files listener at this URL (the default, 127.0.0.1, is
# only right for a lab on this very host): an address the CPEs reach.
#[files]
#public_url = "http://acs.example.net:7567"
"""


class InstallError(Exception):
    """Why the installation cannot go on (one line, exit status 1)."""


def install(
    root: str,
    out: TextIO,
    *,
    executable: str | None = None,
    unit: Path = BUNDLED_UNIT,
) -> int:
    """Install ``executable`` (default: this frozen program) and ``unit`` under ``root``."""
    if executable is None:
        if not getattr(sys, "frozen", False):
            raise InstallError(
                "this acs runs from a Python environment; install the single-file "
                "executable instead (make dist, then dist/acs install)"
            )
        executable = sys.executable
    if not unit.is_file():
        raise InstallError(f"no unit file at {unit}")
    base = Path(root)
    real = base.resolve() == Path("/")
    if real and os.geteuid() != 0:
        raise InstallError("run it as root (it writes /usr/local, /etc and /var/lib)")
    owner = _ensure_user(out) if real else None

    binary = base / BINARY
    binary.parent.mkdir(parents=True, exist_ok=True)
    staged = binary.with_name(".acs.new")
    shutil.copyfile(executable, staged)
    staged.chmod(0o755)
    staged.replace(binary)  # atomic: a running service keeps its old file until restarted
    print(f"installed {binary}", file=out)

    unit_path = base / UNIT
    unit_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(unit, unit_path)
    unit_path.chmod(0o644)
    print(f"installed {unit_path}", file=out)

    config = base / APPLIANCE_CONFIG.lstrip("/")
    config.parent.mkdir(parents=True, exist_ok=True)
    if config.exists():
        print(f"kept {config}", file=out)
    else:
        config.write_text(STARTING_CONFIG, encoding="utf-8")
        config.chmod(0o640)
        if owner is not None:
            os.chown(config, 0, owner[1])
        print(f"wrote {config}", file=out)

    state = base / APPLIANCE_STATE.lstrip("/")
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    state.chmod(0o700)
    if owner is not None:
        os.chown(state, *owner)

    if real and shutil.which("systemctl"):
        subprocess.run(["systemctl", "daemon-reload"], check=False, timeout=60)
    prefix = "" if real else f"(under {base}) "
    print(
        f"next {prefix}steps:\n"
        "  systemctl enable --now acs\n"
        f"  sudo -u {USER} acs user create admin --role admin --appliance\n"
        "  journalctl -u acs   # the listeners and their URLs",
        file=out,
    )
    return 0


def _ensure_user(out: TextIO) -> tuple[int, int]:
    """The acs system user's (uid, gid), created (with its group) when missing."""
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        nologin = next(
            (s for s in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(s)), "/bin/false"
        )
        argv = [
            "useradd", "--system", "--user-group", "--home-dir", APPLIANCE_STATE,
            "--no-create-home", "--shell", nologin, USER,
        ]  # fmt: skip
        try:
            subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            raise InstallError(f"cannot create the user {USER}: {exc}") from None
        entry = pwd.getpwnam(USER)
        print(f"created the system user {USER}", file=out)
    return entry.pw_uid, entry.pw_gid
