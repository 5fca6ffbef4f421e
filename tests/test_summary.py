"""The summary tables: our rows, retention and the paper's rows, from results files; targets
judged on their intervals; stale or broken results files refused."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import make_tiny_bert

from distil_utils.artefacts import write_result
from distil_utils.config import get_config
from distil_utils.summary import collect, summary_tables, with_retention


def test_retention_is_student_over_teacher():
    df = with_retention({"teacher": {"sst2": 90.0, "cola": 50.0},
                         "student": {"sst2": 81.0, "cola": None}}, ["sst2", "cola"])
    ret = df[df.model.str.startswith("retention")].iloc[0]
    assert ret.sst2 == pytest.approx(90.0) and pd.isna(ret.cola)
    # not rounded: 68.8 / 79.4 is 86.65 %, which a one-decimal rounding would show as 86.60
    odd = with_retention({"teacher": {"imdb": 79.4}, "student": {"imdb": 68.8}}, ["imdb"])
    assert odd.imdb.iloc[-1] == pytest.approx(100 * 68.8 / 79.4, abs=1e-9)


def test_summary_reads_results_files_and_adds_the_papers_rows(tmp_path):
    cfg = get_config("smoke", results_dir=str(tmp_path))
    write_result(cfg.out / "04_glue.json", {
        "models": {"teacher": {"sst2": 80.0, "score": 80.0},
                   "student": {"sst2": 76.0, "score": 76.0}},
        "ablation_sst2": {"triple loss": 76.0, "without L_ce": 70.0},
        "ablation_sst2_delta": {"without L_ce": {"delta": -6.0, "interval": [-8.0, -4.0],
                                                 "resolvable": True}}}, cfg)
    write_result(cfg.out / "03_distill.json", {
        "held_out_mlm": [{"model": "teacher", "mlm_acc": 20.0}],
        "ablation": [{"row": "triple loss", "mlm_acc": 10.0, "mlm_loss": 5.0},
                     {"row": "without L_ce", "mlm_acc": 8.0, "mlm_loss": 6.0, "delta": -2.0,
                      "delta_low": -2.5, "delta_high": 0.5, "resolvable": False}]}, cfg)
    tables = summary_tables(collect(cfg.out))
    glue = tables["glue"]
    assert list(glue.model[:3]) == ["teacher", "student", "retention % (student / teacher)"]
    assert glue.loc[2, "sst2"] == pytest.approx(95.0)
    assert "BERT-base (paper)" in set(glue.model) and "cola" not in glue.columns
    abl = tables["ablation"].set_index("row")
    assert abl.loc["without L_ce", "Δ SST-2 vs triple loss"] == pytest.approx(-6.0)
    assert abl.loc["without L_ce", "Δ MLM 95% high"] == pytest.approx(0.5)
    assert abl.loc["without L_ce", "Δ MLM resolvable"] == "within noise"
    assert abl.loc["triple loss", "Δ MLM resolvable"] == ""  # the reference row itself
    assert abl.loc["without L_ce", "Δ GLUE macro (paper)"] == pytest.approx(-2.96)
    assert tables["speed"].empty and tables["downstream"].empty
    mlm = tables["targets"].set_index("metric").loc["mlm_margin_over_ablations"]
    assert mlm["measured"] == pytest.approx(2.0) and mlm["result"] == "within noise"
    assert (mlm["95% low"], mlm["95% high"]) == (pytest.approx(-0.5), pytest.approx(2.5))


def test_targets_are_judged_from_the_results_files(tmp_path):
    cfg = get_config("smoke", results_dir=str(tmp_path))
    write_result(cfg.out / "04_glue.json", {
        "models": {"teacher": {"sst2": 90.0, "score": 80.0},
                   "student": {"sst2": 86.0, "score": 70.0}},
        "ablation_sst2": {"triple loss": 86.0, "without L_ce": 86.5}}, cfg)
    write_result(cfg.out / "06_speed.json", {"ratios": {"speedup": 1.85}}, cfg)
    write_result(cfg.out / "deploy.json", {
        "models": {"student fp32": {"accuracy": 86.0},
                   "student int8 (torch)": {"accuracy": 85.5, "speedup_vs_teacher": 3.2},
                   "student ONNX int8": {"accuracy": 85.0, "speedup_vs_teacher": 3.3,
                                         "speedup_paired": 3.1,
                                         "speedup_interval": [2.9, 3.4]}}}, cfg)
    df = summary_tables(collect(cfg.out))["targets"].set_index("target")
    result = df["result"].to_dict()
    assert result["student keeps >= 95% of the teacher's SST-2 dev accuracy"] == "met"
    assert result["student keeps >= 90% of the teacher's GLUE macro score"] == "MISSED"
    assert result["student beats every ablation row on SST-2 dev"] == "MISSED"
    assert result["student beats every ablation row on held-out MLM accuracy"] == "not run"
    assert result["student >= 1.8x faster than the teacher (STS-B dev, batch 1, "
                  "no tokenisation)"] == "met"
    assert result["student >= 1.9x faster than the teacher (same protocol)"] == "MISSED"
    int8 = [k for k in result if k.startswith("int8 (torch)")]
    assert [result[k] for k in int8] == ["met", "met"]
    onnx = df.loc["ONNX int8 student >= 3x faster than the fp32 teacher (SST-2 dev, batch 1)"]
    assert onnx["measured"] == pytest.approx(3.1)  # the paired ratio, with its interval
    assert onnx["result"] == "within noise" and onnx["95% low"] == pytest.approx(2.9)
    assert result["ONNX int8 student loses <= 1 point of SST-2 dev accuracy vs the fp32 "
                  "student"] == "met"  # 86.0 - 85.0, no interval stored: the point decides
    assert df.loc["student keeps >= 95% of the teacher's SST-2 dev accuracy",
                  "measured"] == pytest.approx(100 * 86 / 90)


def test_targets_are_judged_on_their_intervals():
    from distil_utils.summary import judge

    assert judge(96.0, ">=", 95.0, (95.5, 96.5)) == "met"
    assert judge(96.0, ">=", 95.0, (94.0, 98.0)) == "within noise"
    assert judge(93.0, ">=", 95.0, (92.0, 94.0)) == "MISSED"
    assert judge(0.5, "<=", 1.0, (0.1, 0.9)) == "met"
    assert judge(1.03, "<=", 1.0, (0.2, 1.9)) == "within noise"
    assert judge(1.9, "<=", 1.0, (1.2, 2.6)) == "MISSED"
    assert judge(96.0, ">=", 95.0) == "met" and judge(None, ">=", 95.0) == "not run"


def test_glue_intervals_pair_teacher_and_student_on_the_same_dev_examples(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    hard = rng.random(400) < 0.15
    t = np.where(hard, 1 - y, y)
    s = np.where(hard | (rng.random(400) < 0.05), 1 - y, y)
    dev = {"validation": {"labels": y.tolist()}}

    def glue(preds):
        return {"dev": {"sst2": [{"validation": {**dev["validation"],
                                                 "predictions": preds.tolist()}}]}}

    cfg = get_config("smoke", results_dir=str(tmp_path))
    write_result(cfg.out / "glue_teacher.json", glue(t), cfg)
    write_result(cfg.out / "glue_student.json", glue(s), cfg)
    tables = summary_tables(collect(cfg.out))
    df = tables["glue intervals"].set_index("task")
    row = df.loc["sst2"]
    assert row["teacher 95% low"] < row["teacher"] < row["teacher 95% high"]
    assert row["retention 95% low"] < row["retention %"] <= row["retention 95% high"] <= 100
    assert row["dev examples"] == 400 and "macro (these tasks)" in df.index
    targets = tables["targets"].set_index("metric")
    assert targets.loc["sst2_retention", "95% low"] == pytest.approx(row["retention 95% low"])
    assert "student seeds" not in df.columns  # one seed: no range to show

    # three seeds: the paper's median and the range across seeds beside the first seed's
    runs = {"runs": {"sst2": [{"accuracy": a} for a in (80.0, 84.0, 81.0)]}}
    write_result(cfg.out / "glue_student.json", {**glue(s), **runs}, cfg)
    row = summary_tables(collect(cfg.out))["glue intervals"].set_index("task").loc["sst2"]
    assert row["student seeds"] == 3 and row["student median"] == pytest.approx(81.0)
    assert (row["student seed min"], row["student seed max"]) == (80.0, 84.0)


def test_downstream_scores_carry_intervals_and_paired_retention(tmp_path):
    import numpy as np

    rng = np.random.default_rng(1)
    right_t = rng.random(500) < 0.8
    right_s = right_t & (rng.random(500) < 0.95)  # errs where the teacher errs, and more
    f1_t, f1_s = rng.random(200) * 100, rng.random(200) * 80

    def run(**scores):
        return {"per_example": {k: list(map(float, v)) for k, v in scores.items()}}

    cfg = get_config("smoke", results_dir=str(tmp_path))
    write_result(cfg.out / "05_downstream.json", {
        "models": {}, "imdb": {"teacher": run(accuracy=100.0 * right_t),
                               "student": run(accuracy=100.0 * right_s)},
        "squad": {"teacher": run(exact_match=f1_t // 50 * 100, f1=f1_t),
                  "student": run(exact_match=f1_s // 50 * 100, f1=f1_s),
                  "student (D)": run(exact_match=f1_s // 50 * 100, f1=f1_s + 5)}}, cfg)
    df = summary_tables(collect(cfg.out))["downstream intervals"]
    imdb = df[df.measure == "IMDb accuracy"].set_index("model")
    assert imdb.loc["teacher", "score"] == pytest.approx(100 * right_t.mean())
    assert imdb.loc["teacher", "95% low"] < imdb.loc["teacher", "score"] < imdb.loc[
        "teacher", "95% high"]
    assert pd.isna(imdb.loc["teacher", "retention %"])
    s = imdb.loc["student"]
    assert s["retention %"] == pytest.approx(100 * right_s.mean() / right_t.mean())
    # paired: far narrower than the two accuracies' own intervals would allow
    assert s["retention 95% high"] - s["retention 95% low"] < s["95% high"] - s["95% low"]
    f1 = df[df.measure == "SQuAD F1"].set_index("model")
    assert list(f1.index) == ["teacher", "student", "student (D)"]
    assert f1.loc["student (D)", "score"] == pytest.approx(f1_s.mean() + 5)
    assert (f1.examples == 200).all()


def test_ablation_differences_carry_their_interval_and_verdict(tmp_path):
    cfg = get_config("smoke", results_dir=str(tmp_path))
    nodist = "no distillation (layer-skipped init only)"
    write_result(cfg.out / "04_glue.json", {
        "ablation_sst2": {"triple loss": 86.0, "without L_ce": 84.0, nodist: 85.5},
        "ablation_sst2_delta": {
            "triple loss": {"delta": 0.0, "interval": [0.0, 0.0], "resolvable": False},
            "without L_ce": {"delta": -2.0, "interval": [-3.1, -0.9], "resolvable": True},
            nodist: {"delta": -0.5, "interval": [-1.6, 0.7], "resolvable": False}}}, cfg)
    write_result(cfg.out / "03_distill.json", {"ablation": [
        {"row": r, "mlm_acc": 10.0, "mlm_loss": 5.0}
        for r in ("triple loss", "without L_ce", nodist)]}, cfg)
    tables = summary_tables(collect(cfg.out))
    abl = tables["ablation"].set_index("row")
    assert abl.loc["without L_ce", "Δ SST-2 resolvable"] == "yes"
    assert abl.loc[nodist, "Δ SST-2 resolvable"] == "within noise"
    # no MLM differences stored: no empty columns (nor a column of empty verdicts)
    assert "Δ MLM acc" not in abl.columns and "Δ MLM resolvable" not in abl.columns
    assert abl.loc["without L_ce", "Δ SST-2 95% low"] == pytest.approx(-3.1)
    targets = tables["targets"].set_index("metric")
    gain = targets.loc["sst2_gain_over_undistilled"]
    assert gain["measured"] == pytest.approx(0.5) and gain["result"] == "within noise"
    assert (gain["95% low"], gain["95% high"]) == (pytest.approx(-0.7), pytest.approx(1.6))
    margin = targets.loc["sst2_margin_over_ablations"]  # the best other row: undistilled
    assert margin["measured"] == pytest.approx(0.5) and margin["result"] == "within noise"


def test_garbage_results_json_is_an_error_naming_the_file(tmp_path):
    from distil_utils.summary import collect

    (tmp_path / "04_glue.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"04_glue.json is not valid JSON.*delete it"):
        collect(tmp_path)


def test_the_summary_refuses_results_of_a_student_made_again_since(tmp_path, tokenizer):
    from distil_utils.artefacts import StaleArtefactError, make_stamp, save_model, write_result
    from distil_utils.summary import collect

    cfg = get_config("smoke", results_dir=str(tmp_path))
    student = cfg.out / "student"
    save_model(make_tiny_bert(layers=2), tokenizer, student, make_stamp("student", {"v": 1}, {}))
    write_result(cfg.out / "04_glue.json", {"models": {}}, cfg, student=str(student))
    assert "04_glue" in collect(cfg.out)
    save_model(make_tiny_bert(layers=2), tokenizer, student, make_stamp("student", {"v": 2}, {}))
    with pytest.raises(StaleArtefactError, match=r"04_glue.json: student .*Re-run"):
        collect(cfg.out)


def test_the_interval_table_feeds_the_figures_with_the_macro_as_score():
    import numpy as np
    import pandas as pd

    from distil_utils.summary import glue_figure_intervals

    table = pd.DataFrame([
        {"task": "sst2", "teacher": 90.0, "teacher 95% low": 88.0, "teacher 95% high": 92.0,
         "student": 87.0, "student 95% low": 85.0, "student 95% high": 89.0,
         "retention %": 96.7, "retention 95% low": 94.0, "retention 95% high": 98.0},
        {"task": "macro (these tasks)", "teacher": 90.0, "student": 87.0,
         "teacher 95% low": np.nan, "teacher 95% high": np.nan, "retention %": 96.7,
         "retention 95% low": 93.0, "retention 95% high": 99.0}])
    bars = glue_figure_intervals(table)
    assert bars["teacher"] == {"sst2": (88.0, 92.0)}  # the macro has no score interval
    assert bars["retention"] == {"sst2": (94.0, 98.0), "score": (93.0, 99.0)}
    assert glue_figure_intervals(pd.DataFrame()) == {"teacher": {}, "student": {},
                                                     "retention": {}}


def test_the_speed_up_is_one_number_wherever_it_is_reported():
    from distil_utils.speed import reported_speedup
    from distil_utils.summary import target_intervals, target_measurements

    ratios = {"speedup": 2.085, "speedup_paired": 2.075,
              "speedup_paired_interval": [1.99, 2.085]}
    results = {"06_speed": {"ratios": ratios}}
    assert reported_speedup(ratios) == (2.075, (1.99, 2.085))
    assert target_measurements(results)["speedup"] == 2.075
    assert target_intervals(results)["speedup"] == (1.99, 2.085)
    assert reported_speedup({"speedup": 1.9}) == (1.9, None)  # unpaired: no interval


def test_table_3_shows_the_paper_shapes_timed_here_beside_ours_and_the_papers():
    from distil_utils.summary import speed_table

    models = {"teacher": {"params_m": 22.7, "seconds": 2.2}, "student": {"params_m": 17.4,
                                                                        "seconds": 1.1}}
    shapes = {"examples": 1500, "seconds": {"BERT-base shape": 77.2,
                                            "DistilBERT-base shape": 37.3},
              "params_m": {"BERT-base shape": 109.5, "DistilBERT-base shape": 67.0}}
    table = speed_table({"06_speed": {"models": models}, "speed": {"paper_shapes": shapes}})
    row = table[table.model.str.startswith("BERT-base shape")].iloc[0]
    assert row["seconds"] == 77.2 and row["params_m"] == 109.5
    assert "1500 STS-B pairs, random weights (ours)" in row["model"]
    assert "BERT-base (paper)" in set(table.model)
    without = speed_table({"06_speed": {"models": models}})  # switched off: no such rows
    assert not without.model.str.contains("shape").any()
