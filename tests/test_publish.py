"""distil_utils.tools.publish: a saved model folder goes to the Hub with its card, checked
first; tested offline (a recording stand-in for HfApi, and an endpoint nobody answers)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import make_tiny_bert

from distil_utils.artefacts import save_model
from distil_utils.config import ROOT, get_config
from distil_utils.modelcard import card_facts, mlm_results
from distil_utils.tools import publish


@pytest.fixture
def saved(tmp_path, tokenizer):
    cfg = get_config("smoke", results_dir=str(tmp_path), teacher="minilm")
    facts = card_facts(cfg, results=mlm_results(cfg, {"mlm_acc": 30.0, "mlm_acc_low": 28.0,
                                                      "mlm_acc_high": 32.0}))
    path = save_model(make_tiny_bert(layers=2), tokenizer, cfg.out / "student", card=facts)
    (path / ".README.md.tmp").write_text("half-written")  # never sent
    return path


class RecordingApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))

    def create_commit(self, repo_id, operations, **kw):
        self.calls.append(("create_commit", repo_id, [o.path_in_repo for o in operations], kw))
        return "https://hub.example/commit/1"


def test_the_folder_goes_in_one_commit_with_its_card(saved):
    api = RecordingApi()
    assert publish.publish(saved, "you/student", api=api) == "https://hub.example/commit/1"
    (_, repo, kw), (_, repo2, files, commit) = api.calls
    assert repo == repo2 == "you/student" and kw["exist_ok"] and not kw["private"]
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", "distil_card.json"} <= set(files)
    assert not [f for f in files if f.startswith(".")]
    assert "smoke profile" in commit["commit_message"]


def test_bad_folders_and_names_are_refused_before_the_network(saved, tmp_path, tokenizer):
    api = RecordingApi()
    with pytest.raises(publish.PublishError, match="owner/name"):
        publish.publish(saved, "no-owner", api=api)
    with pytest.raises(publish.PublishError, match="not a saved model"):
        publish.publish(tmp_path, "you/x", api=api)
    tiny = save_model(make_tiny_bert(layers=2), tokenizer, tmp_path / "smoke" / "tiny_student",
                      card=card_facts(get_config("smoke", results_dir=str(tmp_path))))
    with pytest.raises(publish.PublishError, match="--allow-plumbing"):
        publish.publish(tiny, "you/x", api=api)
    assert api.calls == []
    publish.publish(tiny, "you/x", api=api, allow_plumbing=True)
    assert api.calls


def test_command_line_dry_run_and_an_unreachable_hub(saved):
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9",
           "HF_TOKEN": "hf_test", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "distil_utils.tools.publish", str(saved), "--repo-id", "you/s"]
    dry = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert dry.returncode == 0 and "README.md" in dry.stdout and "nothing sent" in dry.stdout
    sent = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert sent.returncode == 1 and "http://127.0.0.1:9" in sent.stderr
    assert "HF_TOKEN" in sent.stderr and "Traceback" not in sent.stderr
    offline = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                             env={**env, "HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 2 and "HF_HUB_OFFLINE" in offline.stderr
