"""The FLOP count behind MFU agrees with torch's own FLOP counter on real forward passes."""

from __future__ import annotations

import torch
from helpers import make_tiny_bert
from torch.utils.flop_counter import FlopCounterMode

from distil_utils.flops import encoder_flops, head_flops, matmul_peak
from distil_utils.student import student_from_teacher


def _counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_encoder_and_head_flops_match_torch_counter():
    teacher = make_tiny_bert(layers=4, hidden=64)
    student = student_from_teacher(teacher, (0, 3))
    for m in (teacher, student):  # eager attention: its matmuls are what the counter sees
        m.set_attn_implementation("eager")
    ids = torch.randint(1000, 2000, (3, 40))  # no padding: every token is real
    with torch.no_grad():
        t = _counted(lambda: teacher.bert(input_ids=ids))
        s = _counted(lambda: student.distilbert(input_ids=ids))
        h = _counted(lambda: teacher.cls(torch.zeros(120, 64)))
    c = teacher.config
    assert abs(encoder_flops(4, 64, c.intermediate_size, [40] * 3) - t) / t < 0.01
    assert abs(encoder_flops(2, 64, c.intermediate_size, [40] * 3) - s) / s < 0.01
    assert abs(head_flops(64, c.vocab_size, 120) - h) / h < 0.01


def test_matmul_peak_is_a_measured_positive_rate():
    assert matmul_peak("cpu", torch.float32, n=256, repeats=2) > 1e8
