"""tools/data_curve.py: the power-law fit behind "what 95 % count would take" (README)."""
import math

import pytest

from ig_llm.tools.data_curve import FITTED, curve, power_law_fit, scenes_for


def test_power_law_fit_recovers_a_known_law_and_inverts_it():
    xs = [1000, 4000, 9000, 30000]
    a, b = power_law_fit(xs, [3.0 * x ** -0.5 for x in xs])
    assert a == pytest.approx(3.0) and b == pytest.approx(0.5)
    assert scenes_for(0.01, a, b) == pytest.approx(90000)
    # an error that does not fall with more scenes never reaches the target
    assert scenes_for(0.05, *power_law_fit([1, 2, 4], [0.1, 0.1, 0.1])) == math.inf


def test_curve_reads_every_shipped_model_on_all_500_scenes():
    result = curve()
    for v in FITTED:
        assert all(s["scenes"] == 500 for s in result["models"][v]["sets"].values())
    # the shipped models' count error falls with scenes, so each fit reaches 95 % somewhere past 16,000
    for fit in result["fits"].values():
        assert fit["b"] > 0 and 16000 < fit["scenes_for_95"] < math.inf
