"""Downstream tasks: IMDb held out of train offline, SQuAD plain and distilled (the KD term and
the distillation Trainer)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import smoke_config

from distil_utils.downstream import (
    QADistillTrainer,
    finetune_imdb,
    finetune_squad,
    qa_kd_loss,
    stratified_holdout,
)


def test_stratified_holdout_keeps_label_shares():
    import datasets

    ds = datasets.Dataset.from_dict({"text": [str(i) for i in range(100)],
                                     "label": [int(i < 80) for i in range(100)]})
    rest, held = stratified_holdout(ds, 20, seed=0)
    assert sum(held["label"]) == 16 and len(rest) == 80
    assert not set(rest["text"]) & set(held["text"])
    assert list(held["text"]) == list(stratified_holdout(ds, 20, seed=0)[1]["text"])
    with pytest.raises(ValueError, match="imdb_heldout"):
        stratified_holdout(ds, 100, 0)


def test_imdb_holds_out_part_of_train_offline(models, tmp_path, data_dir):
    cfg = smoke_config(tmp_path, data_dir=data_dir, imdb_heldout=40, ft_max_train=24,
                       ft_max_eval=40)
    m = finetune_imdb(str(models / "student"), cfg, 0)
    assert m["n_test"] == 40 and m["n_train"] == 24 and "held out of train" in m["test_source"]
    assert 0 <= m["accuracy"] <= 100
    correct = m["per_example"]["accuracy"]  # one 0 / 100 per test review, for the intervals
    assert len(correct) == 40 and set(correct) <= {0.0, 100.0}
    assert sum(correct) / 40 == pytest.approx(m["accuracy"])
    low, high = m["intervals"]["accuracy"]
    assert low <= m["accuracy"] <= high
    # a record written before per-example scores were kept is not taken as done
    from distil_utils import ft_runs

    stamp, rid, done = ft_runs.lookup(cfg, str(models / "student"), "imdb", 0,
                                      needs=("per_example",))
    assert done == m
    record = ft_runs._record_path(cfg, rid)
    data = json.loads(record.read_text())
    del data["metrics"]["per_example"]
    record.write_text(json.dumps(data))
    assert ft_runs.lookup(cfg, str(models / "student"), "imdb", 0, needs=("per_example",))[2] \
        is None


def test_kd_term_is_zero_for_identical_logits_and_ignores_padding():
    x = torch.randn(4, 20)
    t = torch.randn(4, 20)
    p_t, p_s = torch.softmax(t / 2, -1), torch.softmax(x / 2, -1)
    by_hand = 4 * (p_t * (p_t.log() - p_s.log())).sum(-1).mean()  # T² KL(teacher ‖ student)
    assert qa_kd_loss(x, t, 2.0).item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert qa_kd_loss(x, x.clone(), 2.0).abs().item() < 1e-6
    assert qa_kd_loss(x, torch.randn(4, 20), 2.0).item() > 0
    mask = torch.ones(4, 20, dtype=torch.long)
    mask[:, 15:] = 0
    y = torch.randn(4, 20)
    y2 = y.clone()
    y2[:, 15:] = 100.0  # only padding differs
    assert qa_kd_loss(x, y, 2.0, mask).item() == pytest.approx(
        qa_kd_loss(x, y2, 2.0, mask).item())
    assert qa_kd_loss(x[:, :15], y[:, :15], 2.0).item() == pytest.approx(
        qa_kd_loss(x, y, 2.0, mask).item(), rel=1e-5)


def test_distill_trainer_loss_with_itself_as_teacher_is_the_scaled_task_loss(tmp_path,
                                                                             tokenizer):
    from transformers import BertConfig, BertForQuestionAnswering, TrainingArguments

    torch.manual_seed(0)
    qa = BertForQuestionAnswering(BertConfig(hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=64,
                                             hidden_dropout_prob=0.0,
                                             attention_probs_dropout_prob=0.0)).eval()
    enc = tokenizer(["who?", "when was it?"], ["jane austen wrote it", "in 1889"],
                    padding=True, return_tensors="pt")
    batch = {**enc, "start_positions": torch.tensor([5, 6]), "end_positions": torch.tensor([6, 6])}
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])

    def trainer(teacher):
        return QADistillTrainer(model=qa, args=args, teacher=teacher, alpha=0.3, temperature=2.0)

    same = trainer(qa)
    loss = same.compute_loss(qa, dict(batch))
    assert same.last_kd == pytest.approx(0.0, abs=1e-6)
    assert loss.item() == pytest.approx(0.7 * qa(**batch).loss.item(), rel=1e-5)
    loss.backward()  # the teacher's inference-mode logits do not break the backward pass
    other = BertForQuestionAnswering(qa.config)
    assert trainer(other).compute_loss(qa, dict(batch)).item() > loss.item()


@pytest.mark.slow  # two SQuAD fine-tunings (~5 s)
def test_squad_plain_and_distilled(models, tmp_path, data_dir):
    from transformers import AutoModelForQuestionAnswering

    cfg = smoke_config(tmp_path, data_dir=data_dir, squad_max_train=16, squad_max_eval=16,
                       squad_max_seq_len=96, squad_doc_stride=32)
    plain = finetune_squad(str(models / "teacher"), cfg, 0, output_dir=tmp_path / "tqa")
    assert 0 <= plain["exact_match"] <= plain["f1"] <= 100 and not plain["distilled"]
    assert plain["n_eval"] == 16 and "split by article" in plain["split"]
    for k in ("exact_match", "f1"):  # the per-question scores average to the metric
        assert len(plain["per_example"][k]) == 16
        assert sum(plain["per_example"][k]) / 16 == pytest.approx(plain[k])
        assert plain["intervals"][k][0] <= plain[k] <= plain["intervals"][k][1]
    assert AutoModelForQuestionAnswering.from_pretrained(tmp_path / "tqa")
    d = finetune_squad(str(models / "student"), cfg, 0, teacher_qa_path=str(tmp_path / "tqa"))
    assert d["distilled"] and 0 <= d["f1"] <= 100
    with pytest.raises(ValueError, match="not a SQuAD-fine-tuned model"):
        finetune_squad(str(models / "student"), cfg, 0, teacher_qa_path=str(models / "teacher"))
