"""Tests of the task-kind registry (acs.tasks.kinds): every declaration is coherent, argument
validation is a lookup (an unknown kind is an error, never validated as another kind), and
the API's operation flags and pending names are the declared ones.
"""

from __future__ import annotations

from typing import Any

import pytest

from acs.tasks import KINDS, TASK_KINDS, TaskKind, validate_args
from acs.tasks.kinds import INFORM, TRANSFER
from api import device_ops
from api.openapi import SCHEMAS


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_each_example_is_valid_and_already_normal(kind: str) -> None:
    example = dict(KINDS[kind].example)
    assert validate_args(kind, example) == example


@pytest.mark.parametrize("kind", [k for k in TASK_KINDS if not KINDS[k].arguments])
def test_kinds_without_arguments_refuse_any(kind: str) -> None:
    with pytest.raises(ValueError, match=f"unknown argument\\(s\\) for {kind}: stray"):
        validate_args(kind, {"stray": 1})


def test_unknown_kind_is_an_error_not_another_kinds_validation() -> None:
    # Valid set_parameter_attributes arguments: the old fall-through accepted these.
    args = {"parameters": [{"name": "Device.X.Y", "notification": 1}]}
    with pytest.raises(ValueError, match="unknown task kind 'explode'; expected one of"):
        validate_args("explode", args)


def test_arguments_must_be_an_object() -> None:
    with pytest.raises(ValueError, match="task arguments must be an object"):
        validate_args("refresh", ["Device."])  # type: ignore[arg-type]


def _steps(run: Any) -> Any:
    yield from ()
    return {}


@pytest.mark.parametrize(
    "declaration",
    [
        {"completion": INFORM},  # nothing says which Inform confirms it
        {"confirmed_by": lambda tasks, inform, events: []},  # answered kinds need no Inform
        {"completion": "eventually"},
    ],
)
def test_incoherent_declarations_are_refused(declaration: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TaskKind("odd", _steps, **declaration)


def test_inform_and_transfer_kinds_are_not_requeued_blindly() -> None:
    for kind in KINDS.values():
        assert kind.requeue_after_crash == (kind.completion not in (INFORM, TRANSFER))


def test_api_flags_and_pending_names_are_the_declared_ones() -> None:
    flagged = {k.api_flag: k.name for k in KINDS.values() if k.api_flag}
    assert dict(device_ops.FLAG_TASKS) == flagged
    assert set(device_ops.FLAG_KEYS) == set(flagged)
    assert {
        k.name: k.pending_name for k in KINDS.values() if k.pending_name
    } == device_ops.PENDING_NAMES
    # Resets first, so a reboot or sync asked in the same body runs against the reset device.
    order = [kind for _, kind in device_ops.FLAG_TASKS]
    assert order.index("factory_reset") < order.index("sync") < order.index("reboot")


def test_every_operation_flag_is_documented_in_openapi() -> None:
    patch = SCHEMAS["DevicePatch"]["properties"]
    assert set(device_ops.FLAG_KEYS) <= set(patch)
