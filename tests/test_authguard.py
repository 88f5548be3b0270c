"""acs.authguard: the Digest nonce ledger and the per-source authentication throttle."""

from __future__ import annotations

from acs.authguard import AuthThrottle, NonceLedger


def test_each_nonce_count_is_accepted_once_and_must_grow() -> None:
    ledger = NonceLedger()
    assert ledger.accept("n1", 100.0, 1)
    assert not ledger.accept("n1", 100.0, 1)  # the same header again
    assert ledger.accept("n1", 100.0, 3)
    assert not ledger.accept("n1", 100.0, 2)  # an older one
    assert ledger.accept("n2", 100.0, 1)  # nonces are independent


def test_a_full_ledger_forgets_the_oldest_and_refuses_what_it_forgot() -> None:
    ledger = NonceLedger(capacity=3)
    for i in range(5):
        assert ledger.accept(f"n{i}", 100.0 + i, 1)
    assert len(ledger) == 3
    # n0 and n1 were forgotten: accepting them again would allow a replay, so every nonce
    # issued up to the newest forgotten one is refused (the CPE gets a fresh challenge).
    assert not ledger.accept("n0", 100.0, 2)
    assert not ledger.accept("n1", 101.0, 1)
    assert ledger.accept("n5", 105.0, 1)


def test_expire_drops_nonces_issued_before_a_time() -> None:
    ledger = NonceLedger()
    ledger.accept("old", 10.0, 1)
    ledger.accept("new", 500.0, 1)
    ledger.expire(before=100.0)
    assert len(ledger) == 1
    assert not ledger.accept("new", 500.0, 1)


def test_backoff_doubles_up_to_the_ceiling_and_quiet_time_forgives() -> None:
    throttle = AuthThrottle("T", lambda _: None, free=2, base=1.0, ceiling=8.0, forget_after=60)
    waits = []
    for _ in range(7):
        throttle.failed("a", 0.0, "x")
        waits.append(throttle.retry_after("a", 0.0))
    assert waits == [None, None, 1, 2, 4, 8, 8]
    assert throttle.retry_after("b", 0.0) is None  # per source
    assert throttle.retry_after("a", 9.0) is None
    # After a quiet minute, the source starts afresh.
    throttle.failed("a", 100.0, "x")
    assert throttle.retry_after("a", 100.0) is None
