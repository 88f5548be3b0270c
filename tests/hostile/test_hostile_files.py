"""Hostile file-server requests: Range headers and URL expiries that str.isdigit() let
through to int() (issue 9, defect 4). The parsing functions are the server's own."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import task

from acs.files import UrlSigner
from acs.fileserver import _parse_range, _Refused


@pytest.mark.parametrize(
    "header",
    [
        "bytes=" + "9" * 5000 + "-",
        "bytes=-" + "9" * 5000,
        "bytes=²-",
        "bytes=-²",
        "bytes=0-٣",
        "bytes=-",
        "bytes= - ",
    ],
)
def test_a_malformed_range_is_ignored_not_a_crash(header: str) -> None:
    # RFC 9110: a server may ignore a Range it cannot parse and send the whole file.
    assert _parse_range(header, 1000) is None


def test_a_huge_but_well_formed_offset_is_unsatisfiable() -> None:
    with pytest.raises(_Refused) as info:
        _parse_range("bytes=" + "9" * 18 + "-", 1000)
    assert info.value.code == 416


@pytest.mark.parametrize("exp", ["²", "²" * 12, "٣٣٣", "9" * 13, "-1", ""])
def test_a_malformed_expiry_is_refused(exp: str) -> None:
    clock: Any = task.Clock()
    signer = UrlSigner(b"k" * 32, "http://127.0.0.1:7567", 3600, clock)
    assert signer.check("firmware", "/firmware/1/x", 1, exp, "0" * 64) in (
        "malformed signature",
        "unsigned URL",
    )
