"""``make dist``: build ``dist/acs``, the single-file appliance, from this repository alone.

1. ``build/dist/venv``: a virtualenv holding exactly ``packaging/requirements-dist.txt``
   (every version pinned, installed with ``--no-deps``: nothing floats), remade when that
   file changes.
2. The one-file bootloader: compiled from the pinned PyInstaller's sdist (from the
   package index) with ``packaging/bootloader-noexec.patch`` applied, and put in place of
   the wheel's own, so that a ``noexec`` ``$TMPDIR`` does not stop the executable.
3. This project installed into that venv, its version and commit written to
   ``acs/build.json`` inside the bundle (``acs --version``, ``/healthz``).
4. PyInstaller runs ``packaging/acs.spec`` -> ``dist/acs``.

Needs a Python 3.11 with venv, gcc, the zlib headers (Debian's ``zlib1g-dev``) and
``patch``; the network only to reach the package index. Stdlib only (and acs.version,
which is): it runs before any venv exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
REQUIREMENTS = PACKAGING / "requirements-dist.txt"
PATCH = PACKAGING / "bootloader-noexec.patch"
WORK = ROOT / "build" / "dist"
VENV = WORK / "venv"
PY = VENV / "bin" / "python"
BOOTLOADER = "Linux-64bit-intel"

sys.path.insert(0, str(ROOT))
from acs.version import checkout_commit  # noqa: E402 (stdlib only, as this script)


def run(*argv: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    print("+", " ".join(str(a) for a in argv), flush=True)
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"build.py: {argv[0]} exited with {done.returncode}")
    return done.stdout


def digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.read_bytes())
    return h.hexdigest()


def pinned(name: str) -> str:
    for line in REQUIREMENTS.read_text().splitlines():
        if line.lower().startswith(f"{name}=="):
            return line.split("==", 1)[1].strip()
    raise SystemExit(f"{REQUIREMENTS}: no pin for {name}")


def build_venv() -> None:
    stamp = VENV / ".requirements-sha256"
    want = digest(REQUIREMENTS, PATCH)
    if stamp.exists() and stamp.read_text() == want:
        return
    shutil.rmtree(VENV, ignore_errors=True)
    run(sys.executable, "-m", "venv", VENV)
    run(PY, "-m", "pip", "install", "--quiet", "--no-deps", "-r", REQUIREMENTS)
    build_bootloader()
    stamp.write_text(want)


def build_bootloader() -> None:
    """Compile the patched bootloader from the pinned sdist; replace the wheel's."""
    version = pinned("pyinstaller")
    sdists = WORK / "sdist"
    shutil.rmtree(sdists, ignore_errors=True)
    run(
        PY, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
        "-d", sdists, f"pyinstaller=={version}",
    )  # fmt: skip
    (archive,) = sdists.glob("pyinstaller-*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(sdists, filter="data")
    source = sdists / f"pyinstaller-{version}"
    run("patch", "-p1", "--forward", "-i", PATCH, cwd=source)
    run(PY, "./waf", "all", cwd=source / "bootloader")
    built = source / "PyInstaller" / "bootloader" / BOOTLOADER / "run"
    site = run(PY, "-c", "import PyInstaller, os; print(os.path.dirname(PyInstaller.__file__))")
    target = Path(site.strip()) / "bootloader" / BOOTLOADER
    for name in ("run", "run_d"):
        shutil.copy2(built.with_name(name), target / name)


def main() -> int:
    WORK.mkdir(parents=True, exist_ok=True)
    build_venv()
    run(PY, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", ROOT)
    info = WORK / "build.json"
    info.write_text(json.dumps({"commit": checkout_commit(ROOT)}) + "\n")
    env = {
        **os.environ,
        "ACS_BUILD_INFO": str(info),
        "PYTHONHASHSEED": "0",  # the same bytecode from the same sources
        "SOURCE_DATE_EPOCH": run("git", "-C", ROOT, "log", "-1", "--format=%ct").strip(),
    }
    started = time.monotonic()
    run(
        PY, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
        "--distpath", ROOT / "dist", "--workpath", WORK / "work", PACKAGING / "acs.spec",
        env=env,
    )  # fmt: skip
    binary = ROOT / "dist" / "acs"
    size = binary.stat().st_size / 1e6
    print(f"{binary}: {size:.1f} MB, built in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
