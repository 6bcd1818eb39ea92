"""The run core's pure rules: the phase table and the restart policy."""

from __future__ import annotations

import pytest

from llmdeploy.profile.model import Restart
from llmdeploy.run import phases, restarts
from llmdeploy.run.phases import Phase, WrongPhase


def test_every_live_phase_can_stop_and_fail() -> None:
    for phase in Phase:
        if not phase.terminal and phase is not Phase.STOPPING:
            phases.check(phase, Phase.STOPPING)
            phases.check(phase, Phase.FAILED)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (Phase.STOPPED, Phase.READY),
        (Phase.READY, Phase.PULLING),
        (Phase.PREPARING, Phase.READY),  # ready only after starting
        (Phase.STOPPING, Phase.READY),
        (Phase.FAILED, Phase.STARTING),
    ],
)
def test_a_wrong_transition_names_both_phases(current: Phase, new: Phase) -> None:
    with pytest.raises(WrongPhase) as caught:
        phases.check(current, new)
    assert f"is {current.value}, cannot become {new.value}" in caught.value.message


def test_restarts_back_off_and_give_up_within_the_window() -> None:
    policy = Restart(policy="on-failure", max_restarts=2, window_s=60, backoff_s=1)
    first = restarts.decide(policy, [], now=1000)
    second = restarts.decide(policy, [1000], now=1010)
    third = restarts.decide(policy, [1000, 1010], now=1020)
    assert (first.restart, first.delay) == (True, 1)
    assert (second.restart, second.delay) == (True, 2)
    assert not third.restart and "gave up after 2 restart(s) within 60 s" in third.why


def test_restarts_older_than_the_window_no_longer_count() -> None:
    policy = Restart(policy="on-failure", max_restarts=1, window_s=60)
    assert restarts.decide(policy, [1000], now=1070).restart
    assert not restarts.decide(policy, [1000], now=1030).restart


def test_policy_never_never_restarts() -> None:
    assert not restarts.decide(Restart(), [], now=0).restart
