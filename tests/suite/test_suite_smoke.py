"""The whole `smoke` profile through the runner, as a user would run it — twice, to check that
the same seed gives the same numbers (timings aside)."""

from __future__ import annotations

import json

import pytest

from distil_utils.tools.reproduce import find_notebooks, run_suite

pytestmark = pytest.mark.slow


TIMING_KEYS = {"seconds", "created", "command", "tokens_per_second", "executed"}


TIMING_PARTS = ("time", "latency", "throughput", "per_s", "speed", "_ms", "seconds", "ratio")


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory, data_dir):
    runs = []
    for name in ("first", "second"):
        out = tmp_path_factory.mktemp(name)
        log = run_suite("smoke", results_dir=str(out), quiet=True)
        runs.append((out / "smoke", log))
    return runs


def test_every_notebook_runs_and_writes_its_results(smoke_runs):
    out, log = smoke_runs[0]
    names = [p.name for p in find_notebooks()]
    assert [r["notebook"] for r in log] == names
    assert all(r["status"] == "ok" for r in log)
    for name in names:
        executed = out / "notebooks" / name
        assert executed.exists()
        assert '"output_type": "error"' not in executed.read_text()
    assert (out / "figures" / "01_layer_cka.png").exists()
    assert (out / "figures" / "03_losses.svg").exists()
    assert (out / "student" / "config.json").exists()
    # the tiny profile's summary says its numbers are plumbing before it shows any
    summary = (out / "notebooks" / "07_summary.ipynb").read_text()
    assert summary.index("Plumbing, not a result") < summary.index("07_headline")
    prov = json.loads((out / "03_distill.json").read_text())["provenance"]
    assert prov["profile"] == "smoke" and prov["versions"]["transformers"]


def _is_timing(key: str) -> bool:
    return key in TIMING_KEYS or any(p in key.lower() for p in TIMING_PARTS)


def _strip(obj, base: str):
    """Drop timings and provenance; write the run's own directory as <out>."""
    if isinstance(obj, dict):
        return {k: _strip(v, base) for k, v in obj.items()
                if not _is_timing(k) and k != "provenance"}
    if isinstance(obj, list):  # the summary's targets on speed (by their metric) are timings
        return [_strip(v, base) for v in obj
                if not (isinstance(v, dict) and _is_timing(str(v.get("metric", ""))))]
    if isinstance(obj, str):
        return obj.replace(base, "<out>")
    return obj


def test_same_seed_gives_identical_metrics_files(smoke_runs):
    (a, _), (b, _) = smoke_runs
    files = sorted(p.relative_to(a) for p in a.glob("*.json")
                   if p.name not in {"reproduce_log.json"})
    assert files, "no metrics files written"
    for rel in files:
        ja, jb = json.loads((a / rel).read_text()), json.loads((b / rel).read_text())
        assert _strip(ja, str(a)) == _strip(jb, str(b)), \
            f"{rel} differs between two runs of the same seed"


def test_every_card_parses_by_the_hubs_rules_and_tells_its_own_numbers(smoke_runs):
    from huggingface_hub import ModelCard

    from distil_utils.modelcard import card_numbers
    from distil_utils.tasks import TASKS

    out, _ = smoke_runs[0]
    cards = sorted(out.glob("*/README.md")) + sorted(out.glob("finetuned/*/README.md"))
    assert len(cards) >= 10

    def metrics(name):
        return json.loads((out / name).read_text())["metrics"]

    glue = {m: metrics(f"glue_{m}.json") for m in ("teacher", "student")}
    held = {r["model"]: r for r in metrics("03_distill.json")["held_out_mlm"]}
    squad = metrics("05_downstream.json")["squad"]
    checked = 0
    for card in cards:
        loaded = ModelCard.load(card)
        assert loaded.data.license == "apache-2.0" and loaded.data.pipeline_tag, card
        assert loaded.data.datasets and "profile-smoke" in loaded.data.tags, card
        numbers = {r["metric_type"]: r["metric_value"] for r in card_numbers(card)}
        model, _, task = card.parent.name.partition("_")
        expected = {}
        if card.parent.name == "student":
            expected = {"accuracy": held["student, distilled"]["mlm_acc"]}
        elif task in glue.get(model, {}).get("runs", {}):  # the first seed's model is saved
            run = glue[model]["runs"][task][0]
            expected = {{"pearson": "pearsonr"}.get(k, k): v for k, v in run.items()}
        elif task == "squad":
            expected = {k: squad[model][k] for k in ("exact_match", "f1")}
        for key, value in expected.items():
            assert numbers[key] == pytest.approx(value, abs=1e-3), (card, key)
            checked += 1
        if task in TASKS:
            assert loaded.data.eval_results, card
    assert checked >= 6


def test_results_files_and_saved_configs_hold_no_machine_paths(smoke_runs):
    out, _ = smoke_runs[0]
    root = str(out.parent.parent)  # the run's temporary folder
    files = [*out.glob("*.json"), *out.glob("config/*.json"), *out.glob("*/config.json"),
             *out.glob("finetuned/*/config.json"), *out.glob("*/tokenizer_config.json")]
    assert len(files) > 20

    def body(obj):  # the command and parameters are what was typed: this run's RESULTS_DIR
        if isinstance(obj, dict):
            return {k: body(v) for k, v in obj.items() if k not in ("command", "parameters")}
        return [body(v) for v in obj] if isinstance(obj, list) else obj

    with_paths = [f.name for f in files if root in json.dumps(body(json.loads(f.read_text())))]
    assert not with_paths, with_paths
