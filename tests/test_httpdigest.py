"""Tests for ``acs.httpdigest``: Basic/Digest challenges, client answers and server checks."""

from __future__ import annotations

import base64

import pytest

from acs.httpdigest import (
    Challenge,
    Credentials,
    NonceSigner,
    authorization_for,
    basic_challenge,
    check_credentials,
    digest_challenge,
    digest_nonce,
    parse_authorization,
    parse_challenge,
    parse_challenges,
)

# RFC 2617 section 3.5 worked example.
RFC_AUTHORIZATION = (
    'Digest username="Mufasa", realm="testrealm@host.com", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, '
    'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
    'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)


def test_rfc2617_example_authorization_is_accepted() -> None:
    creds = parse_authorization(RFC_AUTHORIZATION)
    assert creds is not None
    assert creds.scheme == "digest" and creds.username == "Mufasa"
    assert creds.params["nonce"] == "dcd98b7102dd2f0e8b11d0f600bfb0c093"
    assert check_credentials(
        creds, method="GET", password="Circle Of Life", realm="testrealm@host.com"
    )


def test_rfc2617_example_is_reproduced_by_the_client() -> None:
    value = authorization_for(
        RFC_CHALLENGE,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle Of Life",
        cnonce="0a4f113b",
    )
    assert 'response="6629fae49393a05397450978507c4ef1"' in value
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in value
    assert "qop=auth, nc=00000001" in value


def test_rfc2617_example_fails_with_wrong_password_method_or_realm() -> None:
    creds = parse_authorization(RFC_AUTHORIZATION)
    assert creds is not None
    realm = "testrealm@host.com"
    assert not check_credentials(creds, method="GET", password="circle of life", realm=realm)
    assert not check_credentials(creds, method="POST", password="Circle Of Life", realm=realm)
    assert not check_credentials(creds, method="GET", password="Circle Of Life", realm="acs")


@pytest.mark.parametrize("stale", [False, True])
def test_digest_round_trip_challenge_answer_check(stale: bool) -> None:
    challenge = digest_challenge("acs", "1700000000:abcdef", opaque="op-1", stale=stale)
    assert challenge.startswith("Digest ") and 'qop="auth"' in challenge
    assert ("stale=true" in challenge) is stale
    value = authorization_for(
        challenge,
        method="POST",
        uri="/cwmp",
        username="00D09E-HomeGW-SN1",
        password='pa:ss "w\\rd"',
        cnonce="c0ffee",
        nc=7,
    )
    creds = parse_authorization(value)
    assert creds is not None and creds.username == "00D09E-HomeGW-SN1"
    assert creds.params["nc"] == "00000007"
    assert creds.params["opaque"] == "op-1"
    assert check_credentials(creds, method="POST", password='pa:ss "w\\rd"', realm="acs")
    assert not check_credentials(creds, method="POST", password="wrong", realm="acs")


def test_legacy_digest_without_qop_is_answered_and_checked() -> None:
    challenge = 'Digest realm="cpe", nonce="n0nce"'
    value = authorization_for(
        challenge, method="GET", uri="/cr", username="acs", password="pw", cnonce="x"
    )
    assert "qop" not in value and "cnonce" not in value
    creds = parse_authorization(value)
    assert creds is not None
    assert check_credentials(creds, method="GET", password="pw", realm="cpe")
    assert not check_credentials(creds, method="GET", password="pW", realm="cpe")


@pytest.mark.parametrize("algorithm", ["MD5-sess", "SHA-256", "SHA-256-sess"])
def test_other_digest_algorithms_round_trip(algorithm: str) -> None:
    challenge = f'Digest realm="r", nonce="n", qop="auth", algorithm={algorithm}'
    value = authorization_for(
        challenge, method="GET", uri="/", username="u", password="p", cnonce="cn"
    )
    assert f"algorithm={algorithm}" in value
    creds = parse_authorization(value)
    assert creds is not None
    assert check_credentials(creds, method="GET", password="p", realm="r")
    assert not check_credentials(creds, method="GET", password="q", realm="r")


def test_basic_round_trip() -> None:
    challenge = basic_challenge("acs")
    assert challenge.startswith('Basic realm="acs"')
    value = authorization_for(
        challenge, method="POST", uri="/", username="cpe", password="pä:ss", cnonce="unused"
    )
    creds = parse_authorization(value)
    assert creds == Credentials("basic", "cpe", {"password": "pä:ss"})
    assert check_credentials(creds, method="POST", password="pä:ss", realm="acs")
    assert not check_credentials(creds, method="POST", password="pass", realm="acs")


def test_basic_latin1_credentials_are_decoded() -> None:
    token = base64.b64encode("bj\u00f6rn:p\u00e4ss".encode("latin-1")).decode()
    assert parse_authorization(f"Basic {token}") == Credentials(
        "basic", "björn", {"password": "päss"}
    )


def test_digest_is_preferred_when_both_challenges_are_offered() -> None:
    combined = f"{basic_challenge('acs')}, {digest_challenge('acs', 'n')}"
    scheme, params = parse_challenge(combined)
    assert scheme == "digest" and params["nonce"] == "n" and params["realm"] == "acs"
    assert [s for s, _ in parse_challenges(combined)] == ["basic", "digest"]
    value = authorization_for(
        combined, method="GET", uri="/", username="u", password="p", cnonce="c"
    )
    assert value.startswith("Digest ")


def test_challenge_scheme_and_param_names_are_case_insensitive() -> None:
    scheme, params = parse_challenge('DIGEST Realm="x", NONCE="y", QOP="auth"')
    assert scheme == "digest" and params == {"realm": "x", "nonce": "y", "qop": "auth"}


def test_auth_int_only_challenge_falls_back_to_basic_or_fails() -> None:
    only_int = 'Digest realm="r", nonce="n", qop="auth-int"'
    assert parse_challenge(only_int) == ("", {})
    with pytest.raises(ValueError, match="no usable"):
        authorization_for(only_int, method="GET", uri="/", username="u", password="p", cnonce="c")
    scheme, _ = parse_challenge(only_int + ', Basic realm="r"')
    assert scheme == "basic"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "Basic",
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Bearer abc.def",
        "Digest",
        'Digest realm="x", nonce="y"',  # no username
        'Digest username="unterminated',
        "Digest username=a b c",
        'Digest username="u", =="x"',
        "\x00\xff" * 10,
        "Digest " + "a=" * 50000,
        b"Basic \xff\xfe",
    ],
)
def test_garbage_authorization_is_none(value: str | bytes | None) -> None:
    assert parse_authorization(value) is None


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"realm": "acs"},
        {"realm": "acs", "nonce": "n", "uri": "/"},  # no response
        {"realm": "acs", "nonce": "n", "uri": "/", "response": "x", "qop": "auth"},  # no nc
        {"realm": "acs", "nonce": "n", "uri": "/", "response": "x", "algorithm": "SHA-512"},
        {
            "realm": "acs",
            "nonce": "n",
            "uri": "/",
            "response": "x",
            "qop": "auth-int",
            "nc": "1",
            "cnonce": "c",
        },
    ],
)
def test_incomplete_digest_credentials_fail(params: dict[str, str]) -> None:
    creds = Credentials("digest", "u", params)
    assert check_credentials(creds, method="POST", password="p", realm="acs") is False


def test_unknown_scheme_credentials_fail() -> None:
    creds = Credentials("ntlm", "u", {"password": "p"})
    assert check_credentials(creds, method="POST", password="p", realm="acs") is False


@pytest.mark.parametrize("value", [None, "", "garbage ,,, ===", '"quoted"', "Digest realm"])
def test_garbage_challenge_is_empty(value: str | None) -> None:
    assert parse_challenge(value) == ("", {})
    with pytest.raises(ValueError):
        authorization_for(
            value or "", method="GET", uri="/", username="u", password="p", cnonce="c"
        )


def test_challenge_values_are_quoted_safely() -> None:
    challenge = digest_challenge('we"ird\\realm', "n")
    assert parse_challenge(challenge)[1]["realm"] == 'we"ird\\realm'
    with pytest.raises(ValueError):
        digest_challenge("bad\r\nInjected: header", "n")


def test_parsed_challenge_can_be_answered_directly() -> None:
    challenge = parse_challenge(digest_challenge("cpe", "n1"))
    assert challenge.scheme == "digest" and challenge.params["realm"] == "cpe"
    value = authorization_for(
        challenge, method="GET", uri="/cr", username="u", password="p", cnonce="c"
    )
    creds = parse_authorization(value)
    assert creds is not None and check_credentials(creds, method="GET", password="p", realm="cpe")
    with pytest.raises(ValueError):
        authorization_for(
            Challenge("digest", {"realm": "r"}),
            method="GET",
            uri="/",
            username="u",
            password="p",
            cnonce="c",
        )


def test_digest_nonce_is_read_from_a_digest_header_only() -> None:
    header = b'Digest username="u", realm="acs", nonce="abc-1-2-ff", uri="/", cnonce="x"'
    assert digest_nonce(header) == "abc-1-2-ff"
    assert digest_nonce(b'digest cnonce="x",nonce="n1"') == "n1"
    for other in (None, b"", b"Basic bm9uY2U9ImEi", b'Digest cnonce="x"', b"Digest"):
        assert digest_nonce(other) is None


def test_nonce_signer_makes_unique_nonces_only_its_secret_verifies() -> None:
    signer = NonceSigner(b"k" * 32, ttl=300.0)
    first, second = signer.make(1000.9), signer.make(1000.9)
    assert first != second  # two challenges in one second never share a nonce
    assert signer.issued(first) == 1000.0
    assert NonceSigner(b"other" * 8).issued(first) is None
    stamp, _, mac = first.rpartition("-")
    assert signer.issued(f"{stamp}-{'0' * len(mac)}") is None
    for garbled in ("", "-", "x" * 100, "zz-ab-" + mac, "é-" + mac):
        assert signer.issued(garbled) is None
    assert signer.issuer(first) == 0
    assert (
        NonceSigner(b"k" * 32, issuer=42).issuer(NonceSigner(b"k" * 32, issuer=42).make(1.0)) == 42
    )
    assert NonceSigner(b"other" * 8).issuer(first) is None  # not ours: no issuer to believe
    assert signer.issuer(f"{stamp}-{'0' * len(mac)}") is None
    assert signer.fresh(1000.0, 1300.0) and not signer.fresh(1000.0, 1300.5)
    assert signer.fresh(1000.0, 941.0) and not signer.fresh(1000.0, 939.0)
