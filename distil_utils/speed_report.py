"""Table 3 as `speed.run_bench` reports it: our rows and ratios assembled into `speed.json`'s
shape, the paper's rows (labelled as the paper's) and the ratios they imply, and the printed
table with both side by side.
"""

from __future__ import annotations

from typing import Any

import torch

from .glue_tasks import dev_split
from .speed_grid import grid_ratios

PAPER_CPU = "Xeon E5-2690 v3, full 1,500-pair STS-B dev set"


def assemble(task: str, texts: list, models: dict, loaded: dict, sizes: dict, passes: dict,
             rows: list, notes: list, teacher: str, student: str) -> dict[str, Any]:
    """`speed.json`'s metrics from `run_bench`'s measurements: Table 3 per model, the
    student/teacher ratios, every timed pass, the grid and its ratios, the paper's table."""
    no_tok, tok = passes[False]["models"], passes[True]["models"]
    table = {n: {"params_m": sizes[n]["params_m"], "disk_mb": sizes[n]["disk_mb"],
                 "seconds": no_tok[n]["seconds_median"],
                 "seconds_min": no_tok[n]["seconds_min"],
                 "seconds_max": no_tok[n]["seconds_max"],
                 "seconds_iqr": no_tok[n]["seconds_iqr"],
                 "seconds_with_tokenization": tok[n]["seconds_median"],
                 "time_per_example_ms": no_tok[n]["time_per_example_ms"],
                 "layers": _n_layers(models[n]), "fresh_head": loaded[n][1]}
             for n in models}
    ratios = {
        "params": sizes["student"]["params_m"] / sizes["teacher"]["params_m"],
        "disk": sizes["student"]["disk_mb"] / sizes["teacher"]["disk_mb"],
        "time": no_tok["student"]["time_ratio_vs_first"],
        "speedup": no_tok["student"]["speedup_vs_first"],
        "speedup_paired": no_tok["student"]["paired_speedup_median"],
        "speedup_paired_interval": no_tok["student"]["paired_speedup_interval"],
        "speedup_rounds": passes[False]["rounds"],
        "time_with_tokenization": tok["student"]["time_ratio_vs_first"],
        "speedup_with_tokenization": tok["student"]["speedup_vs_first"],
    }
    return {"task": task, "split": dev_split(task), "examples": len(texts),
            "batch_size": 1, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "teacher": teacher,
            "student": student, "models": table, "ratios": ratios,
            "passes": {"without_tokenization": passes[False], "with_tokenization": passes[True]},
            "grid": rows, "grid_ratios": grid_ratios(rows), "notes": notes,
            "paper": paper_table3()}


def _n_layers(model: Any) -> int | None:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layers", None)


def paper_table3() -> dict[str, Any]:
    """The paper's Table 3 and the ratios it implies (labelled as the paper's)."""
    from .paper import SOURCE, TABLE3_SPEED

    bert, distil = TABLE3_SPEED["BERT-base (paper)"], TABLE3_SPEED["DistilBERT (paper)"]
    return {"source": SOURCE, "hardware": PAPER_CPU, "rows": TABLE3_SPEED,
            "ratios": {"params": distil["params_m"] / bert["params_m"],
                       "time": distil["seconds"] / bert["seconds"],
                       "speedup": bert["seconds"] / distil["seconds"]}}


def format_table(res: dict[str, Any]) -> str:
    """Our rows, the paper's Table 3 rows beside them (labelled), and the ratios of both."""
    head = (f"{'':28} {'params (M)':>10} {'disk (MB)':>10} {'pass (s)':>10} "
            f"{'min-max (s)':>15} {'+tok (s)':>10}")
    lines = [f"{res['task']} {res['split']}: {res['examples']} examples, batch size 1, "
             f"{res['threads']} threads, {len(res['passes']['without_tokenization']['order'])} "
             "interleaved repeats (median)", head]
    for n, r in res["models"].items():
        spread = f"{r['seconds_min']:.3f}-{r['seconds_max']:.3f}"
        lines.append(f"{n + ' (ours)':28} {r['params_m']:10.1f} {r['disk_mb']:10.1f} "
                     f"{r['seconds']:10.3f} {spread:>15} {r['seconds_with_tokenization']:10.3f}")
    paper = res["paper"]
    for n, r in paper["rows"].items():
        lines.append(f"{n:28} {r['params_m']:10.1f} {'':>10} {r['seconds']:10.1f} {'':>15} "
                     f"{'':>10}")
    rt, pr = res["ratios"], paper["ratios"]
    lines.append(f"student/teacher params: ours {rt['params']:.2f}, paper {pr['params']:.2f}; "
                 f"disk: ours {rt['disk']:.2f}")
    lines.append(f"student/teacher time: ours {rt['time']:.2f} (student {rt['speedup']:.2f}x "
                 f"faster; {rt['speedup_with_tokenization']:.2f}x with tokenisation), paper "
                 f"{pr['time']:.2f} ({pr['speedup']:.2f}x faster)")
    lines.append(f"paper's rows: {paper['source']}, {paper['hardware']}")
    lines.extend(f"note: {n}" for n in res["notes"])
    return "\n".join(lines)
