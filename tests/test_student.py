"""Layer-skipping initialisation: every copied tensor and the full-depth function."""

from __future__ import annotations

import pytest
import torch
from helpers import make_tiny_bert
from transformers import DistilBertForMaskedLM, pipeline

from distil_utils.artefacts import save_model
from distil_utils.results_io import default_file_mode
from distil_utils.student import (
    check_layers,
    copy_report,
    count_parameters,
    default_layers,
    student_from_teacher,
)


def _randomise_token_types(model):
    """Make token-type-0 a large vector so that forgetting to fold it in shows."""
    with torch.no_grad():
        model.bert.embeddings.token_type_embeddings.weight.normal_(0, 1.0)
    return model


def test_default_layers_match_reference_and_spread_evenly():
    assert default_layers(12) == (0, 2, 4, 7, 9, 11)
    assert default_layers(6) == (0, 2, 5)
    assert default_layers(4) == (0, 3)
    assert default_layers(2) == (1,)
    for n in (4, 6, 8, 24):
        layers = default_layers(n)
        assert layers[0] == 0 and layers[-1] == n - 1 and len(layers) == n // 2


@pytest.mark.parametrize("layers, msg", [((0, 4), "out of range"), ((1, 1), "repeat"),
                                         ((2, 0), "increasing"), ((), "empty"),
                                         ((-1, 2), "out of range")])
def test_bad_layer_selection_is_a_clear_error(layers, msg):
    with pytest.raises(ValueError, match=msg):
        check_layers(layers, 4)


def test_full_depth_student_computes_the_teachers_logits():
    teacher = _randomise_token_types(make_tiny_bert(layers=4))
    student = student_from_teacher(teacher, layers=range(4))
    ids = torch.randint(1000, 29000, (3, 17))
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    with torch.no_grad():
        t = teacher(input_ids=ids, attention_mask=mask).logits
        s = student(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    assert (t - s)[real].abs().max().item() < 1e-4


def test_without_the_token_type_fold_the_logits_would_differ():
    """Guards the test above: the fold is what makes them equal."""
    teacher = _randomise_token_types(make_tiny_bert(layers=2))
    student = student_from_teacher(teacher, layers=range(2))
    with torch.no_grad():
        student.distilbert.embeddings.position_embeddings.weight -= (
            teacher.bert.embeddings.token_type_embeddings.weight[0])
        ids = torch.randint(1000, 29000, (2, 9))
        diff = (teacher(input_ids=ids).logits - student(input_ids=ids).logits).abs().max()
    assert diff.item() > 1e-2


def test_every_copied_tensor_equals_the_teachers():
    teacher = _randomise_token_types(make_tiny_bert(layers=4))
    student = student_from_teacher(teacher)  # (0, 3)
    rows = copy_report(teacher, student, (0, 3))
    assert len(rows) == 4 + 2 * 16 + 6
    assert all(r["max_abs_diff"] == 0.0 for r in rows)
    # layer 1 of the student is teacher layer 3, not layer 1
    s = student.distilbert.transformer.layer[1].attention.q_lin.weight
    assert torch.equal(s, teacher.bert.encoder.layer[3].attention.self.query.weight)
    assert not torch.equal(s, teacher.bert.encoder.layer[1].attention.self.query.weight)
    assert torch.equal(student.vocab_projector.bias, teacher.cls.predictions.decoder.bias)


def test_student_has_no_token_types_no_pooler_and_fewer_parameters():
    teacher = make_tiny_bert(layers=4)
    student = student_from_teacher(teacher)
    names = [n for n, _ in student.named_parameters()]
    assert not any("token_type" in n or "pooler" in n for n in names)
    assert student.config.n_layers == 2
    assert count_parameters(student) < count_parameters(teacher)


def test_wrong_teacher_type_is_refused():
    with pytest.raises(TypeError, match="BertForMaskedLM"):
        student_from_teacher(torch.nn.Linear(2, 2))


def test_saved_student_loads_with_from_pretrained_and_fill_mask(tmp_path, tokenizer):
    teacher = make_tiny_bert(layers=2)
    student = student_from_teacher(teacher)
    path = save_model(student, tokenizer, tmp_path / "student")
    again = DistilBertForMaskedLM.from_pretrained(path)
    ids = torch.randint(1000, 29000, (1, 8))
    with torch.no_grad():
        assert torch.allclose(again(input_ids=ids).logits, student(input_ids=ids).logits)
    fill = pipeline("fill-mask", model=str(path), tokenizer=str(path))
    out = fill("the cat sat on the [MASK].")
    assert len(out) == 5 and all("token_str" in o for o in out)
    # readable like any other written file, not owner-only as safetensors leaves it
    assert {f.stat().st_mode & 0o777 for f in path.iterdir()} == {default_file_mode()}


def test_layer_indices(tokenizer):
    from distil_utils.student import student_from_teacher

    teacher = make_tiny_bert(layers=4)
    with pytest.raises(ValueError, match="out of range.*0..3"):
        student_from_teacher(teacher, (0, 4))
    with pytest.raises(ValueError, match="repeat"):
        student_from_teacher(teacher, (0, 0, 3))
