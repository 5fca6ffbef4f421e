"""The README's result blocks, generated from `results/<profile>/summary.json`: each number has
one source, and a README sentence cannot keep a number the results no longer hold.

    python -m distil_utils.tools.readme_numbers            # check: exit 1 if a block is stale
    python -m distil_utils.tools.readme_numbers --write    # rewrite the blocks in place

A block sits between `<!-- results:NAME -->` and `<!-- /results:NAME -->`; everything outside
them is hand-written. `tests/test_readme_numbers.py` runs the check.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from ..config import ROOT
from ..paper import TABLE1_GLUE, TABLE3_SPEED
from ..results_io import atomic_write, read_json

README = ROOT / "README.md"
PROFILE = "cpu"
VERDICTS = ("met: the whole 95% interval is on the bound's side; within noise: the interval "
            "holds the bound; MISSED: the whole interval is on the wrong side")


def _summary(results: Path) -> dict[str, Any]:
    path = results / PROFILE / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run notebook 07 on the {PROFILE!r} profile")
    return read_json(path)


def _targets(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["metric"]: row for row in summary["metrics"]["targets"]}


def _ci(row: dict[str, Any], unit: str = "") -> str:
    low, high = row.get("95% low"), row.get("95% high")
    span = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
    return f"{row['measured']:.2f}{unit}{span}"


def headline(summary: dict[str, Any]) -> str:
    """Three lines for the top of the README: retention and speed, ours beside the paper's."""
    t = _targets(summary)
    paper_glue = 100 * TABLE1_GLUE["DistilBERT (paper)"]["score"] / \
        TABLE1_GLUE["BERT-base (paper)"]["score"]
    paper_speed = TABLE3_SPEED["BERT-base (paper)"]["seconds"] / \
        TABLE3_SPEED["DistilBERT (paper)"]["seconds"]
    tasks = [c for c in summary["metrics"]["glue"][0] if c not in ("model", "score")]
    return "\n".join([
        f"- the student keeps **{_ci(t['macro_retention'], '%')}** of its teacher's GLUE macro "
        f"score on {len(tasks)} tasks ({', '.join(tasks)}); the paper's DistilBERT kept "
        f"{paper_glue:.1f}% of BERT-base's on 9 *(paper)*;",
        f"- **{_ci(t['sst2_retention'], '%')}** of its SST-2 dev accuracy;",
        f"- it is **{_ci(t['speedup'], '×')}** faster at batch 1 on STS-B dev (the paper: "
        f"{paper_speed:.2f}× *(paper)*).",
    ])


def targets_table(summary: dict[str, Any]) -> str:
    """Every target notebook 07 judged, with its interval and verdict."""
    lines = ["| target | ours [95% interval] | bound | verdict |", "|---|---|---|---|"]
    for row in summary["metrics"]["targets"]:
        lines.append(f"| {row['target']} | {_ci(row)} | {row['bound']} | {row['result']} |")
    prov = summary["provenance"]
    lines += ["", f"Verdicts: {VERDICTS}. Made by `{prov['command']}` "
              f"({prov['created'][:10]}, torch {prov['versions']['torch']})."]
    return "\n".join(lines)


BLOCKS = {"headline": headline, "targets": targets_table}


def render(text: str, summary: dict[str, Any]) -> str:
    """`text` with every block replaced by what `summary` gives; a missing block is an error."""
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- results:{name} -->\n)(?:.*?\n)?(<!-- /results:{name} -->)",
                             re.S)
        if not pattern.search(text):
            raise ValueError(f"the README has no <!-- results:{name} --> ... "
                             f"<!-- /results:{name} --> block; put one where it belongs")
        body = make(summary)
        text = pattern.sub(lambda m: f"{m.group(1)}{body}\n{m.group(2)}", text)  # noqa: B023
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m distil_utils.tools.readme_numbers",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the README's blocks")
    ap.add_argument("--readme", default=str(README))
    ap.add_argument("--results", default=str(ROOT / "results"))
    args = ap.parse_args(argv)
    readme = Path(args.readme)
    text = readme.read_text(encoding="utf-8")
    try:
        new = render(text, _summary(Path(args.results)))
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if new == text:
        print(f"{readme.name}: result blocks match results/{PROFILE}/summary.json")
        return 0
    if args.write:
        atomic_write(readme, lambda tmp: tmp.write_text(new, encoding="utf-8"))
        print(f"{readme.name}: result blocks rewritten from results/{PROFILE}/summary.json")
        return 0
    print(f"{readme.name}: result blocks differ from results/{PROFILE}/summary.json; "
          "rewrite them with: python -m distil_utils.tools.readme_numbers --write",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
