"""`benchmarks.ft_epochs` on tiny models: the evaluation plan, the intervals and
differences, the suite's own score at the last point, and bad settings named up front."""

from __future__ import annotations

import json

import pytest

from benchmarks import ft_epochs
from distil_utils.config import get_config
from distil_utils.finetune import finetune_glue


@pytest.fixture(scope="module")
def student(models):
    """The saved DistilBERT student of a 2-layer × 32 BERT (conftest's `models`)."""
    return models / "student"


@pytest.mark.slow  # two tasks, two epochs, four evaluations each (~45 s)
def test_points_intervals_and_the_suites_final_score(student, tmp_path, data_dir,
                                                     monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default --out lands in the current folder
    work = tmp_path / "work"
    res = ft_epochs.main(["--profile", "smoke", "--model", str(student), "--task", "stsb",
                          "--task", "rte", "--epochs", "2", "--evals-per-epoch", "2",
                          "--results-dir", str(work)])
    out = capsys.readouterr().out
    for task, r in res.items():
        pts = r["points"]
        assert len(pts) == 2 * 2 == r["total_steps"] // (r["steps_per_epoch"] // 2)
        epochs = [p["epoch"] for p in pts]
        assert epochs == sorted(set(epochs)) and epochs[-1] == pytest.approx(2.0)
        assert [p["step"] for p in pts][-1] == r["total_steps"] == 2 * r["steps_per_epoch"]
        assert pts[-1]["diff_vs_final"] == 0 and pts[-1]["diff_interval"] == [0, 0]
        assert not pts[-1]["resolvable"]
        for p in pts:
            lo, hi = p["interval"]
            assert lo <= p["score"] <= hi, (task, p)
            dlo, dhi = p["diff_interval"]
            assert dlo <= p["diff_vs_final"] <= dhi, (task, p)
            assert p["resolvable"] == (dlo > 0 or dhi < 0)
        assert r["earliest_within_noise"] in epochs
        assert r["train_size"] == 64 and r["dev_size"] == 64 and r["seed"] == 42
        saved = json.loads((tmp_path / f"ft_epochs_{task}.json").read_text())
        assert saved["points"] == json.loads(json.dumps(pts))
        assert out.count(f"[ft_epochs] {task} epoch") == len(pts)
    # nothing of the suite's (ft_runs records, results files) written: only the Trainer folder
    assert not (tmp_path / "results").exists()
    assert {p.name for p in work.iterdir()} <= {"ft_epochs_stsb", "ft_epochs_rte"}
    # the last point is the suite's own run: evaluating on the way changes no training step
    cfg = get_config("smoke", results_dir=str(tmp_path / "suite"), data_dir=str(data_dir),
                     ft_epochs=2.0)
    suite = finetune_glue(str(student), "stsb", cfg, 42)
    assert res["stsb"]["points"][-1]["metrics"] == pytest.approx(suite, abs=1e-4)


def test_plan_hits_every_point_when_n_does_not_divide_the_epoch():
    per, total, steps = ft_epochs.plan(100, 16, 1, 3.0, 4)  # 7 steps an epoch, 4 points each
    assert (per, total, len(steps), steps[-1]) == (7, 21, 12, 21)
    assert steps == sorted(set(steps))


@pytest.mark.parametrize("argv, named", [
    (["--task", "sst-2"], "--task 'sst-2'"),
    (["--task", "stsb", "--model", "/no/such/model"], "--model '/no/such/model'"),
    (["--task", "stsb", "--evals-per-epoch", "0"], "--evals-per-epoch"),
])
def test_bad_settings_are_named_before_any_work(argv, named, student, capsys, monkeypatch):
    monkeypatch.setattr(ft_epochs, "run_task", lambda *a, **k: pytest.fail("work started"))
    args = ["--profile", "smoke", "--model", str(student), *argv]
    with pytest.raises(SystemExit) as exc:
        ft_epochs.main(args)
    assert exc.value.code == 2 and named in capsys.readouterr().err
