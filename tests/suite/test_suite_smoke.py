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
