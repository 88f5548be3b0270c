"""Where the tests find the third-party files vendored into the repository.

Every file a test reads lives inside the checkout: the Broadband Forum CWMP schemas and data
models under ``conformance/`` (see its README for origin and licence) and the vendor API
pages under ``tests/seeds/``. A missing file is an error, never a skip: a test that quietly
stops checking is worse than a failing one.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO / "conformance"
XSD_DIR = CONFORMANCE / "xsd"
DATAMODELS = CONFORMANCE / "datamodels"
SEEDS = REPO / "tests" / "seeds"


def vendored(path: Path) -> Path:
    """``path`` itself; raises FileNotFoundError naming it when the checkout lacks it."""
    if not path.is_file():
        raise FileNotFoundError(f"vendored file missing from the checkout: {path}")
    return path


def xsd(name: str) -> Path:
    """One CWMP schema, e.g. ``xsd("cwmp-1-2.xsd")``."""
    return vendored(XSD_DIR / name)


def datamodel(source: str) -> Path:
    """The xz-compressed BBF data model whose uncompressed name is ``source``."""
    return vendored(DATAMODELS / f"{source}.xz")


def seed(prefix: str) -> Path:
    """The vendor documentation page whose file name starts with ``prefix`` (e.g. ``"001"``)."""
    found = sorted(SEEDS.glob(f"{prefix}_*.txt"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one seed page {prefix}_*.txt in {SEEDS}, found {found}")
    return found[0]
