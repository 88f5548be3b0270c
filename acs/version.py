"""The program's version, and the commit it was built from.

``make dist`` bundles ``acs/build.json`` (packaging/build.py) with both; run from a Git
checkout, the commit is the checkout's HEAD (``-dirty`` with uncommitted changes); an
install with neither knows no commit (None).
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

import acs

_PACKAGE = Path(__file__).resolve().parent
BUILD_INFO = _PACKAGE / "build.json"


@functools.cache
def build_info() -> dict[str, Any]:
    """``{"version": ..., "commit": ...}`` of this program (read once)."""
    try:
        data = json.loads(BUILD_INFO.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"version": acs.__version__, "commit": checkout_commit(_PACKAGE.parent)}
    commit = data.get("commit") if isinstance(data, dict) else None
    return {"version": acs.__version__, "commit": commit if isinstance(commit, str) else None}


def checkout_commit(root: Path) -> str | None:
    """HEAD of the Git checkout at ``root`` (12 hex digits, ``-dirty`` with uncommitted
    changes to tracked files); None outside a checkout. Also what ``make dist`` stamps."""
    if not (root / ".git").exists():
        return None
    git = ["git", "-C", str(root)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if not head:
        return None
    return f"{head}-dirty" if dirty else head


def describe() -> str:
    """``acs 0.1.0 (commit 0123abcd4567)``: what ``acs --version`` prints."""
    info = build_info()
    return f"acs {info['version']} (commit {info['commit'] or 'unknown'})"
