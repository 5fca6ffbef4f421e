"""The teacher: what `load_teacher` refuses (another architecture, no masked-LM head, corrupt
weights) and the check that the tokenizer is the teacher's vocabulary."""

from __future__ import annotations

import pytest
from helpers import make_tiny_bert
from transformers import DistilBertForMaskedLM

from distil_utils.teacher import load_teacher


def test_load_teacher_errors_name_the_problem(tmp_path, tokenizer):
    from transformers import BertConfig, BertModel, DistilBertConfig

    enc = BertModel(BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=32))
    enc.save_pretrained(tmp_path / "encoder")
    with pytest.raises(ValueError, match="no masked-LM head"):
        load_teacher(tmp_path / "encoder")
    DistilBertForMaskedLM(DistilBertConfig(vocab_size=100, dim=16, n_layers=1, n_heads=2,
                                           hidden_dim=32)).save_pretrained(tmp_path / "distil")
    with pytest.raises(TypeError, match="'distilbert' model"):
        load_teacher(tmp_path / "distil")
    good = tmp_path / "good"
    make_tiny_bert(layers=2).save_pretrained(good)
    weights = next(good.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(OSError, match="truncated or corrupt"):
        load_teacher(good)


def test_tokenizer_that_does_not_match_the_teacher(tokenizer):
    from distil_utils.teacher import check_vocab

    with pytest.raises(ValueError, match="tokenizer has 30522 tokens but the teacher embeds 999"):
        check_vocab(make_tiny_bert(layers=2, vocab=999), tokenizer)


def test_teacher_that_is_not_a_bert_masked_lm(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from distil_utils.student import student_from_teacher
    from distil_utils.teacher import load_teacher

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).save_pretrained(
        tmp_path / "gpt2")
    with pytest.raises(TypeError, match="'gpt2' model.*BertForMaskedLM"):
        load_teacher(tmp_path / "gpt2")
    with pytest.raises(TypeError, match="BertForMaskedLM"):
        student_from_teacher(make_tiny_bert(layers=2).bert)


def test_corrupt_teacher_checkpoint(tmp_path):
    from distil_utils.teacher import load_teacher

    make_tiny_bert(layers=2).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(OSError, match="truncated or corrupt"):
        load_teacher(tmp_path)


def test_tokenizer_of_the_right_size_with_other_tokens_is_refused(tokenizer, tmp_path,
                                                                 tiny_bert_dir):
    from transformers import BertForMaskedLM, BertTokenizerFast

    from distil_utils.artefacts import vocab_digest
    from distil_utils.teacher import check_vocab

    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.__getitem__)
    tokens[2000], tokens[2001] = tokens[2001], tokens[2000]
    (tmp_path / "vocab.txt").write_text("\n".join(tokens) + "\n")
    other = BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"))
    assert len(other) == len(tokenizer)
    teacher = make_tiny_bert(layers=2)
    teacher.config.distil_vocab_sha256 = vocab_digest(tokenizer)  # what save_model records
    check_vocab(teacher, tokenizer)
    with pytest.raises(ValueError, match="other tokens"):
        check_vocab(teacher, other)
    saved = BertForMaskedLM.from_pretrained(tiny_bert_dir)  # no digest: its saved tokenizer
    check_vocab(saved, tokenizer)
    with pytest.raises(ValueError, match="other tokens"):
        check_vocab(saved, other)
