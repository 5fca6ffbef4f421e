"""Publish a model folder the suite saved to the Hugging Face Hub, with its card.

    python -m distil_utils.tools.publish results/cpu/student --repo-id you/distilbert-cpu-student
    python -m distil_utils.tools.publish results/cpu/finetuned/student_sst2 --repo-id ... --dry-run

The folder is checked before anything is sent: it must be a saved model (`config.json`,
weights, tokenizer) with a card that huggingface_hub parses, and a model of a plumbing profile
(a tiny teacher trained from random weights) is refused unless `--allow-plumbing`. Everything
else is huggingface_hub's own `create_repo` and one `create_commit` of the folder's files
(`HF_TOKEN` or `huggingface-cli login` for the credentials; `HF_ENDPOINT` for another Hub).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..artefacts import STAMP
from ..modelcard import CARD_FACTS, read_facts

WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
# What a saved folder holds that is this machine's business, not the model's.
LEFT_OUT = ("checkpoint", ".tmp", ".old", ".lock")


class PublishError(ValueError):
    """The folder cannot be published as it is; the message names the fix."""


def files_to_publish(folder: str | Path, allow_plumbing: bool = False) -> list[Path]:
    """The files of a saved model folder that go to the Hub, checked first."""
    from huggingface_hub import ModelCard

    folder = Path(folder)
    if not folder.is_dir():
        raise PublishError(f"{folder} is not a folder: give a model folder the suite saved, "
                           "e.g. results/cpu/student or results/cpu/finetuned/student_sst2")
    missing = [n for n in ("config.json", "README.md") if not (folder / n).is_file()]
    if not any((folder / w).is_file() for w in WEIGHTS):
        missing.append(" or ".join(WEIGHTS[:2]))
    if missing:
        raise PublishError(f"{folder} is not a saved model (no {', '.join(missing)}): save it "
                           "with save_pretrained (the notebooks and distil_utils.distill do)")
    try:
        card = ModelCard.load(folder / "README.md")
    except Exception as err:  # huggingface_hub raises several kinds for a bad card
        raise PublishError(f"{folder / 'README.md'} is not a valid model card ({err}); "
                           "rewrite it with distil_utils.modelcard.refresh_model_cards") from err
    facts = read_facts(folder)
    if not allow_plumbing and (facts.get("teacher") == "tiny" or not facts):
        why = ("its teacher is a tiny BERT trained from random weights (a plumbing profile)"
               if facts else f"it has no {CARD_FACTS}: nothing says what made it")
        raise PublishError(f"{folder} is not worth publishing: {why}. Publish a model of the "
                           "cpu, colab or paper profile, or pass --allow-plumbing")
    if not card.data.to_dict().get("model-index") and not allow_plumbing:
        print(f"note: {folder.name}'s card reports no results yet", file=sys.stderr)
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") or any(x in part for x in LEFT_OUT)
                              for part in p.relative_to(folder).parts))


def operations(folder: str | Path, allow_plumbing: bool = False) -> list[Any]:
    """huggingface_hub `CommitOperationAdd`s for the folder's files (checked first)."""
    from huggingface_hub import CommitOperationAdd

    folder = Path(folder)
    return [CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(),
                               path_or_fileobj=str(p))
            for p in files_to_publish(folder, allow_plumbing)]


def publish(folder: str | Path, repo_id: str, *, private: bool = False,
            allow_plumbing: bool = False, api: Any = None) -> Any:
    """Create `repo_id` (if needed) and upload the folder in one commit; its CommitInfo."""
    from huggingface_hub import HfApi

    if "/" not in repo_id or repo_id.count("/") > 1:
        raise PublishError(f"--repo-id {repo_id!r} must be 'owner/name', e.g. "
                           "you/distilbert-cpu-student")
    ops = operations(folder, allow_plumbing)  # every check before the network
    api = api or HfApi()
    facts = read_facts(folder)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    return api.create_commit(
        repo_id, operations=ops, repo_type="model",
        commit_message=f"{Path(folder).name} of the DistilBERT reproduction suite "
                       f"({facts.get('profile', 'unknown')} profile)",
        commit_description=f"Made by `{facts.get('command', 'unknown')}` at commit "
                           f"{facts.get('commit', 'unknown')}; settings in {STAMP}.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Upload a model folder the suite saved, with its "
                                 "card, to the Hugging Face Hub.")
    ap.add_argument("folder", help="e.g. results/cpu/student")
    ap.add_argument("--repo-id", required=True, help="owner/name on the Hub")
    ap.add_argument("--private", action="store_true")
    ap.add_argument("--dry-run", action="store_true", help="check and list the files; send "
                    "nothing")
    ap.add_argument("--allow-plumbing", action="store_true",
                    help="publish a smoke/binder model (tiny random teacher) anyway")
    args = ap.parse_args(argv)
    try:
        if args.dry_run:
            ops = operations(args.folder, args.allow_plumbing)
            for op in ops:
                print(op.path_in_repo)
            print(f"{len(ops)} files would go to {args.repo_id} (dry run: nothing sent)")
            return 0
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
            raise PublishError("HF_HUB_OFFLINE is set: unset it to upload (or use --dry-run)")
        operations(args.folder, args.allow_plumbing)  # the folder's checks, before the network
    except PublishError as err:
        ap.exit(2, f"error: {err}\n")
    try:
        info = publish(args.folder, args.repo_id, private=args.private,
                       allow_plumbing=args.allow_plumbing)
    except Exception as err:  # the Hub's HTTP, auth and connection errors alike
        from huggingface_hub import constants

        ap.exit(1, f"error: the upload to {constants.ENDPOINT} failed: {err}\n  check "
                   "HF_TOKEN (or huggingface-cli login), --repo-id and HF_ENDPOINT\n")
    print(f"published: {getattr(info, 'commit_url', info)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
