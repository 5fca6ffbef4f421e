"""Where inputs come from: the offline data mirror's splits."""

from __future__ import annotations

import pytest


def test_data_dir_without_the_split(tmp_path):
    from distil_utils.hub import load_split

    (tmp_path / "glue" / "sst2").mkdir(parents=True)
    (tmp_path / "glue" / "sst2" / "validation.jsonl").write_text('{"sentence": "a", "label": 1}\n')
    with pytest.raises(FileNotFoundError, match="no split 'train'.*DISTIL_DATA_DIR"):
        load_split("glue/sst2", "train", tmp_path)
    assert len(load_split("glue/sst2", "validation", tmp_path)) == 1


def test_a_loaded_tokenizer_carries_no_stored_padding_into_the_models_saved_with_it(tmp_path):
    import json

    from distil_utils.hub import load_tokenizer

    tok = load_tokenizer("minilm")  # its tokenizer.json pads every input to 128 tokens
    assert tok.backend_tokenizer.padding is None and tok.backend_tokenizer.truncation is None
    tok.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "tokenizer.json").read_text())
    assert saved["padding"] is None and saved["truncation"] is None
    assert len(tok("a short sentence")["input_ids"]) == 5  # [CLS] a short sentence [SEP]
