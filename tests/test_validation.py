"""Settings checked and coerced before any work (`validation`): bad values are refused
naming the setting, a string is one item of a list setting, unreadable corpus files are named."""

from __future__ import annotations

import pytest

from distil_utils.config import get_config


@pytest.mark.parametrize("kw, match", [
    (dict(temperature=float("nan")), "temperature must be a finite number"),
    (dict(lr=float("inf")), "lr must be a finite number"),
    (dict(alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0), "all 0"),
    (dict(max_grad_norm=0.0), "max_grad_norm must be > 0"),
    (dict(lr=0.0), "lr must be > 0"),
    (dict(max_steps="abc"), "max_steps must be a whole number.*'abc'"),
    (dict(student_layers=3), r"student_layers must be a tuple.*\(0, 2, 5\)"),
    (dict(heldout_docs=0), "heldout_docs must be >= 1.*held-out"),
    (dict(checkpoint_every=0), "checkpoint_every must be >= 1"),
    (dict(ft_seeds=()), "ft_seeds is empty"),
    (dict(corpus=("/no/such/corpus.txt",)), "corpus entry '/no/such/corpus.txt'"),
    (dict(data_dir="/no/such/mirror"), "data_dir /no/such/mirror is not a folder"),
])
def test_bad_values_are_refused_naming_the_setting(kw, match):
    from distil_utils.validation import SettingError

    with pytest.raises(SettingError, match=match):
        get_config("smoke", **kw)


def test_a_string_for_a_list_setting_is_one_item_not_its_characters(tmp_path, corpus):
    assert get_config("smoke", glue_tasks="sst2").glue_tasks == ("sst2",)
    assert get_config("smoke", corpus=str(corpus)).corpus == (str(corpus),)


def test_corpus_files_that_cannot_be_read_are_named(tmp_path):
    from distil_utils.validation import SettingError

    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1") * 3)
    with pytest.raises(SettingError, match="empty.txt is empty"):
        get_config("smoke", corpus=(str(tmp_path / "empty.txt"),))
    with pytest.raises(SettingError, match="latin1.txt is not UTF-8 .*byte 3"):
        get_config("smoke", corpus=(str(tmp_path / "latin1.txt"),))


def test_a_parameter_name_is_taken_in_any_case_as_it_is_declared():
    from distil_utils.validation import declared_spelling

    assert declared_spelling("seed", ["SEED", "MAX_STEPS"]) == "SEED"
    assert declared_spelling("MAX_STEPS", ["seed", "max_steps"]) == "max_steps"
    assert declared_spelling("SEED", ["SEED"]) == "SEED"
    assert declared_spelling("max_stpes", ["MAX_STEPS"]) == "max_stpes"  # left for the refusal
