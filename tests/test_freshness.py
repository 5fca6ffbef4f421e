"""What the runner's --skip-done compares: a model folder's fingerprint."""

from __future__ import annotations


def test_a_model_folder_fingerprint_ignores_its_card_but_not_its_weights(tmp_path):
    from distil_utils.artefacts import STAMP
    from distil_utils.tools.freshness import fingerprint

    model = tmp_path / "student"
    model.mkdir()
    (model / STAMP).write_text('{"digest": "abc"}')
    (model / "model.safetensors").write_bytes(b"w" * 100)
    before = fingerprint(model)
    (model / "README.md").write_text("card with the latest metrics")  # notebook 07's refresh
    assert fingerprint(model) == before
    (model / "model.safetensors").write_bytes(b"w" * 50)  # a truncated weight file
    assert fingerprint(model) != before
