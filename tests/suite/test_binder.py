"""The `binder` profile through the runner, as mybinder.org users run it: all seven notebooks,
offline, each kernel within Binder's memory (about 2 GB for the whole container)."""

from __future__ import annotations

import json
import threading

import psutil
import pytest

from distil_utils.tools.reproduce import find_notebooks, run_suite

pytestmark = pytest.mark.slow

# Binder's 2 GB also holds the Jupyter server (~150 MB) and the browser-side kernel of the
# previous notebook if it was not shut down; one kernel must stay well under it.


KERNEL_LIMIT_MB = 1600


class PeakRSS:
    """Largest resident memory of any descendant process (the notebook kernels), polled."""

    def __init__(self, every_s: float = 0.2) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._every = every_s
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            for child in me.children(recursive=True):
                try:
                    self.peak_mb = max(self.peak_mb, child.memory_info().rss / 2**20)
                except psutil.Error:
                    pass
            self._stop.wait(self._every)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.slow
def test_binder_profile_runs_every_notebook_offline_within_binder_memory(tmp_path, data_dir):
    with PeakRSS() as rss:
        log = run_suite("binder", results_dir=str(tmp_path), quiet=True)
    out = tmp_path / "binder"
    names = [p.name for p in find_notebooks()]
    assert [r["notebook"] for r in log] == names
    assert all(r["status"] == "ok" for r in log)
    for name in names:
        executed = (out / "notebooks" / name).read_text()
        assert '"output_type": "error"' not in executed
        assert "huggingface.co" not in executed
    # the tiny teacher is adapted and saved, so 04-06 load it from disk, not "tiny" from the Hub
    assert (out / "teacher" / "config.json").exists()
    adaptation = json.loads((out / "teacher_adaptation.json").read_text())["metrics"]
    assert adaptation["after"]["mlm_acc"] > adaptation["before"]["mlm_acc"]
    assert (out / "student" / "README.md").exists()
    assert json.loads((out / "finetuned" / "student_sst2" / "config.json").read_text()
                      )["id2label"] == {"0": "negative", "1": "positive"}
    assert 0 < rss.peak_mb < KERNEL_LIMIT_MB, f"a kernel peaked at {rss.peak_mb:.0f} MB"
    (tmp_path / "peak_rss_mb.txt").write_text(f"{rss.peak_mb:.0f}\n")
    print(f"binder profile: {sum(r['seconds'] for r in log):.0f} s, "
          f"kernel peak RSS {rss.peak_mb:.0f} MB")
