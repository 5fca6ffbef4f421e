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
