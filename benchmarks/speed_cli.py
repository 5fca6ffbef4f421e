"""`python -m benchmarks.speed_cli`: size and CPU speed of a teacher/student pair,
the paper's Table 3 protocol interleaved and repeated (`distil_utils.speed.run_bench`).

    python -m benchmarks.speed_cli --teacher PATH_OR_NAME --student PATH_OR_NAME
        [--task stsb] [--profile smoke] [--max-examples N] [--repeats N] [--threads N]
        [--no-grid] [--no-plots] [--results-dir DIR]
"""

from __future__ import annotations

import argparse
from typing import Any

from distil_utils.config import get_config
from distil_utils.figures import save_speed_plots
from distil_utils.results_io import ResultsLockedError, lock_results
from distil_utils.speed import run_bench
from distil_utils.tasks import GLUE_TASKS


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse `argv`, lock the results folder, run the benchmark; its results."""
    ap = argparse.ArgumentParser(description="Size and CPU speed of a teacher/student pair "
                                 "(the paper's Table 3 protocol, interleaved and repeated).")
    ap.add_argument("--teacher", required=True, help="checkpoint path, Hub name or 'minilm'")
    ap.add_argument("--student", required=True, help="checkpoint path, Hub name or 'minilm'")
    ap.add_argument("--task", default="stsb", choices=sorted(GLUE_TASKS))
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--max-examples", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--no-grid", action="store_true", help="skip the batch × length grid")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--results-dir", default=None, help="default: results/ of this checkout")
    args = ap.parse_args(argv)
    try:  # bad settings and a results folder another run is writing: named before any work
        cfg = get_config(args.profile, bench_max_examples=args.max_examples,
                         bench_repeats=args.repeats, results_dir=args.results_dir)
        lock_results(cfg.out, f"bench --profile {args.profile}")
    except (ValueError, ResultsLockedError, NotADirectoryError) as err:
        ap.exit(2, f"error: {err}\n")
    res = run_bench(args.teacher, args.student, cfg, args.task, grid=not args.no_grid,
                    threads=args.threads)
    if not args.no_plots and res["grid"]:
        res["figures"] = [str(p) for p in save_speed_plots(res, cfg.out / "figures")]
    return res


if __name__ == "__main__":
    main()
