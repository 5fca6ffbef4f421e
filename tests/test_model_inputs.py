"""Model size: parameters and bytes on disk, the student smaller than the teacher."""

from __future__ import annotations

import pytest

from distil_utils.model_inputs import model_size

pytestmark = pytest.mark.usefixtures("one_thread")


def test_model_size_is_positive_and_the_student_is_smaller(classifier_pair):
    _, models = classifier_pair
    t, s = model_size(models["teacher"]), model_size(models["student"])
    assert 0 < s["params_m"] < t["params_m"] and 0 < s["disk_mb"] < t["disk_mb"]
    n = sum(p.numel() for p in models["student"].parameters())  # no tied weights here
    assert s["params_m"] == pytest.approx(n / 1e6)
    assert s["disk_mb"] == pytest.approx(4 * n / 1e6, rel=0.05)  # fp32 safetensors
