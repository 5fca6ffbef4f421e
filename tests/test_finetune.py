"""GLUE fine-tuning on tiny models and slices: heads, metrics and seeds, predictions in dataset
order, per-task settings, missing data, and the results file kept when there is none."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import smoke_config

from distil_utils.artefacts import resolve
from distil_utils.config import get_config
from distil_utils.finetune import finetune_glue, run_glue


def test_predictions_keep_dataset_order_with_length_grouping(models, tmp_path, data_dir,
                                                            tokenizer):
    """transformers 5.x groups eval batches by length too; our predictions must not move."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification

    from distil_utils.finetune import make_trainer, predict_in_order, training_args

    cfg = smoke_config(tmp_path, data_dir=data_dir)
    assert cfg.ft_group_by_length
    texts = [" ".join(["word"] * n) + " good" for n in (1, 30, 3, 50, 2, 40, 5, 20) * 20]
    ds = Dataset.from_dict(dict(tokenizer(texts)))
    model = AutoModelForSequenceClassification.from_pretrained(models / "student",
                                                               num_labels=2).eval()
    with torch.no_grad():  # a random tiny head barely tells inputs apart: magnify it
        model.classifier.weight.mul_(1000)
    trainer = make_trainer(model, tokenizer, training_args(cfg, 0, str(tmp_path), 1.0), ds)
    got = predict_in_order(trainer, ds)
    with torch.no_grad():
        want = [model(**tokenizer(t, return_tensors="pt")).logits[0].numpy() for t in texts]
    want = np.stack(want)
    spread = float(np.ptp(want[:, 0]))
    assert spread > 0.01, "inputs too alike to show an order change"
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 * spread)


@pytest.mark.slow  # two fine-tunings and a regression (~10 s)
def test_glue_classification_and_regression_save_loadable_models(models, tmp_path, data_dir):
    from transformers import AutoModelForSequenceClassification

    cfg = smoke_config(tmp_path, data_dir=data_dir, ft_max_train=32, ft_max_eval=32)
    m = finetune_glue(str(models / "student"), "sst2", cfg, 0, output_dir=tmp_path / "sst2")
    assert set(m) == {"accuracy"} and 0 <= m["accuracy"] <= 100
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "sst2")
    assert again.config.num_labels == 2 and type(again).__name__.startswith("DistilBert")
    torch.manual_seed(123)  # the global RNG state must not matter: the seed decides
    finetune_glue(str(models / "student"), "sst2", cfg, 0, output_dir=tmp_path / "sst2-again")
    same = AutoModelForSequenceClassification.from_pretrained(tmp_path / "sst2-again")
    for (k, a), b in zip(again.state_dict().items(), same.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    s = finetune_glue(str(models / "teacher"), "stsb", cfg, 0, output_dir=tmp_path / "stsb")
    assert set(s) == {"pearson", "spearmanr"}
    reg = AutoModelForSequenceClassification.from_pretrained(tmp_path / "stsb")
    assert reg.config.num_labels == 1 and reg.config.problem_type == "regression"


def test_missing_train_split_and_unknown_task_are_clear_errors(models, tmp_path, data_dir):
    cfg = smoke_config(tmp_path, data_dir=data_dir)
    with pytest.raises(FileNotFoundError, match=r"glue/qnli.*no split 'train'.*DISTIL_DATA_DIR"):
        finetune_glue(str(models / "student"), "qnli", cfg, 0)
    with pytest.raises(ValueError, match="unknown GLUE task 'sst-2'"):
        finetune_glue(str(models / "student"), "sst-2", cfg, 0)


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.slow  # six fine-tunings (~1 min)
def test_run_glue_on_fixture_qqp_and_mnli_with_median_and_skips(models, tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "data"
    qqp = [{"question1": f"what is {i}?", "question2": f"what is {i % 3}?",
            "label": int(rng.integers(2)), "idx": i} for i in range(24)]
    _write(d / "glue/qqp/train.jsonl", qqp)
    _write(d / "glue/qqp/validation.jsonl", qqp[:12])
    mnli = [{"premise": f"a man {i}", "hypothesis": f"a person {i % 4}",
             "label": int(rng.integers(3)), "idx": i} for i in range(24)]
    for split in ("train", "validation_matched", "validation_mismatched"):
        _write(d / f"glue/mnli/{split}.jsonl", mnli)
    cfg = smoke_config(tmp_path, data_dir=d, glue_tasks=("qqp", "mnli", "rte"), ft_seeds=(1, 2, 3))
    res = run_glue(str(models / "student"), cfg, "student")
    assert set(res["per_task"]) == {"qqp", "mnli"} and "rte" in res["skipped"]
    assert "no split 'train'" in res["skipped"]["rte"]
    assert set(res["per_task"]["mnli"]) == {"accuracy_matched", "accuracy_mismatched"}
    f1s = sorted(r["f1"] for r in res["runs"]["qqp"])
    assert res["per_task"]["qqp"]["f1"] == f1s[1]  # the median of three seeds
    m = res["per_task"]["mnli"]
    assert res["columns"]["mnli"] == pytest.approx((m["accuracy_matched"]
                                                    + m["accuracy_mismatched"]) / 2)
    assert res["score"] == pytest.approx(np.mean(list(res["columns"].values())))
    saved = json.loads((cfg.out / "glue_student.json").read_text())
    prov = saved["provenance"]
    assert prov["profile"] == "smoke" and prov["seeds"] == [1, 2, 3]
    assert prov["tasks"] == ["qqp", "mnli", "rte"]
    # recorded relative to the results folder, resolved back to the same model
    assert resolve(prov["model"], cfg.out).resolve() == (models / "student").resolve()
    assert saved["metrics"]["score"] == pytest.approx(res["score"])
    assert (cfg.out / "finetuned" / "student_qqp" / "config.json").exists()


def test_per_task_fine_tuning_overrides_apply_to_their_task_only():
    from distil_utils.finetune import task_config

    cfg = get_config("smoke", ft_task_overrides={"sst2": {"ft_max_train": None,
                                                          "ft_epochs": 2.0}})
    sst2, rte = task_config(cfg, "sst2"), task_config(cfg, "rte")
    assert (sst2.ft_max_train, sst2.ft_epochs) == (None, 2.0)
    assert (rte.ft_max_train, rte.ft_epochs) == (cfg.ft_max_train, cfg.ft_epochs)
    with pytest.raises(ValueError, match="not a GLUE task"):
        get_config("smoke", ft_task_overrides={"SST-2": {"ft_epochs": 1.0}})
    with pytest.raises(ValueError, match="only change fine-tuning settings"):
        get_config("smoke", ft_task_overrides={"sst2": {"max_steps": 5}})


def test_a_data_folder_without_glue_keeps_the_good_results_file(tmp_path, tiny_bert_dir):
    from distil_utils.finetune import run_glue

    empty = tmp_path / "mirror"
    empty.mkdir()
    cfg = get_config("smoke", results_dir=str(tmp_path), data_dir=str(empty))
    good = cfg.out / "glue_student.json"
    good.parent.mkdir(parents=True)
    good.write_text('{"metrics": {"score": 80.0}}')
    with pytest.raises(FileNotFoundError, match="none of the GLUE tasks"):
        run_glue(str(tiny_bert_dir), cfg, "student")
    assert good.read_text() == '{"metrics": {"score": 80.0}}'


def test_a_second_run_glue_finds_every_run_and_says_so(models, tmp_path, data_dir):
    """Reused work is named (notebook 04 prints the run ids), never reported as a 0-minute
    fine-tuning; the results file is the same either way."""
    cfg = smoke_config(tmp_path, data_dir=data_dir, glue_tasks=("rte",), ft_max_train=16,
                       ft_max_eval=16)
    first = run_glue(str(models / "student"), cfg, "student", save_first_seed=False)
    written = json.loads((cfg.out / "glue_student.json").read_text())["metrics"]
    again = run_glue(str(models / "student"), cfg, "student", save_first_seed=False)
    assert first["found"] == [] and len(again["found"]) == len(cfg.ft_seeds)
    assert all(rid.startswith(f"student_rte_seed{seed}_")
               for rid, seed in zip(again["found"], cfg.ft_seeds, strict=True))
    assert "found" not in written
    assert again["per_task"] == first["per_task"]
