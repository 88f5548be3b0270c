"""TR-069 value rules (acs/cwmp/values.py), shared by the ACS's task arguments and the
simulated CPE: both judge a value's type the same way."""

from __future__ import annotations

import re

import pytest

from acs.cwmp.values import VALUE_PATTERN, infer_type, type_problem, values_equal
from acs.tasks import validate_args
from cpe_sim.datamodel import ParamDef, normalize_value

# (type, text, is a value of that type)
CASES = [
    ("boolean", "true", True),
    ("boolean", "0", True),
    ("boolean", "yes", False),
    ("boolean", "tru", False),
    ("int", "-2147483648", True),
    ("int", "2147483648", False),
    ("unsignedInt", "4294967295", True),
    ("unsignedInt", "-1", False),
    ("unsignedInt", "1_000", False),
    ("unsignedInt", "٣", False),  # a digit, but not an ASCII one
    ("long", "9223372036854775807", True),
    ("unsignedLong", "18446744073709551616", False),
    ("dateTime", "2024-01-15T09:30:15Z", True),
    ("dateTime", "0001-01-01T00:00:00Z", True),
    ("dateTime", "2024-01-15T09:30:15.25+01:00", True),
    ("dateTime", "yesterday", False),
    ("hexBinary", "00ff", True),
    ("hexBinary", "0ff", False),
    ("base64", "aGk=", True),
    ("base64", "a", False),
    ("string", "anything at all", True),
]


@pytest.mark.parametrize(("xsd", "text", "valid"), CASES)
def test_the_acs_and_the_simulated_cpe_agree_on_types(xsd: str, text: str, valid: bool) -> None:
    assert (type_problem(text, xsd) is None) is valid
    assert (type_problem(text, f"xsd:{xsd}") is None) is valid
    args = {"parameters": [{"name": "Device.X.Y", "value": text, "type": f"xsd:{xsd}"}]}
    if valid:
        validate_args("set_parameter_values", args)
    else:
        with pytest.raises(ValueError, match=r"parameters\[0\]"):
            validate_args("set_parameter_values", args)
    normalized, fault = normalize_value(ParamDef(type=xsd, writable=True, default=""), text)
    assert (fault == 0) is valid, (normalized, fault)


@pytest.mark.parametrize("char", ["\x00", "\x08", "\x1f", "\ud800", "\uffff"])
def test_a_value_xml_cannot_carry_is_refused_whatever_its_type(char: str) -> None:
    for xsd in ("string", "base64", "unknownType"):
        problem = type_problem(f"a{char}b", f"xsd:{xsd}")
        assert problem is not None and f"U+{ord(char):04X}" in problem
    assert type_problem("tab\tnew\nline\rok \U0001f600", "xsd:string") is None
    # The API's schemas say the same (but of lone surrogates, see VALUE_PATTERN).
    if not 0xD800 <= ord(char) <= 0xDFFF:
        assert re.fullmatch(VALUE_PATTERN, f"a{char}b") is None
    assert re.fullmatch(VALUE_PATTERN, "tab\tnew\nline\rok \U0001f600")


def test_the_simulated_cpe_is_lenient_before_it_judges() -> None:
    assert normalize_value(ParamDef(type="boolean", writable=True, default=""), " TRUE ") == (
        "true",
        0,
    )
    assert normalize_value(ParamDef(type="unsignedInt", writable=True, default=""), " 060") == (
        "60",
        0,
    )
    assert normalize_value(ParamDef(type="unsignedInt", writable=True, default=""), "1_0") == (
        None,
        9006,
    )


def test_a_value_of_unknown_type_is_inferred_from_its_text() -> None:
    assert infer_type("300") == "xsd:unsignedInt"
    assert infer_type("4294967296") == "xsd:string"
    assert infer_type("-1") == "xsd:string"
    assert infer_type("false") == "xsd:boolean"
    assert infer_type("False") == "xsd:string"


def test_values_compare_by_type() -> None:
    assert values_equal("1", "true", "xsd:boolean")
    assert not values_equal("1", "false", "boolean")
    assert values_equal(" 060", "60", "xsd:unsignedInt")
    assert not values_equal("1_0", "10", "xsd:int")
    assert not values_equal("060", "60", "xsd:string")
