"""The paper's layer-skipping student initialisation.

DistilBERT's student is BERT with half the layers, no token-type embeddings and no pooler,
initialised by copying one teacher layer out of two. transformers has no function that builds
a `DistilBertForMaskedLM` from a `BertForMaskedLM` (the reference `extract_distilbert.py`
script is a state-dict rename outside the library), so the copy is written here, tensor by
tensor, and tested tensor by tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import BertForMaskedLM, DistilBertConfig, DistilBertForMaskedLM

# The reference extraction script's choice for a 12-layer teacher.
PAPER_LAYERS_12 = (0, 2, 4, 7, 9, 11)


def default_layers(n_teacher_layers: int) -> tuple[int, ...]:
    """Half the layers, spread evenly, first and last kept; (0, 2, 4, 7, 9, 11) for 12.

    A 2- or 3-layer teacher keeps only its last layer.
    """
    if n_teacher_layers == 12:
        return PAPER_LAYERS_12
    if n_teacher_layers < 2:
        raise ValueError(f"a teacher with {n_teacher_layers} layer(s) cannot be halved")
    k = n_teacher_layers // 2
    if k == 1:  # a 2- or 3-layer teacher: keep the last layer, which feeds the MLM head
        return (n_teacher_layers - 1,)
    step = (n_teacher_layers - 1) / (k - 1)
    return tuple(round(i * step) for i in range(k))


def check_layers(layers: Sequence[int], n_teacher_layers: int) -> tuple[int, ...]:
    """Validate a layer selection; out of range, repeated or unsorted indices are errors."""
    layers = tuple(int(i) for i in layers)
    if not layers:
        raise ValueError("layers is empty: choose at least one teacher layer to copy")
    bad = [i for i in layers if not 0 <= i < n_teacher_layers]
    if bad:
        raise ValueError(f"layer index(es) {bad} out of range: the teacher has "
                         f"{n_teacher_layers} layers, valid indices are 0..{n_teacher_layers - 1}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layer indices {list(layers)} repeat a layer; each teacher layer "
                         "can be copied once")
    if list(layers) != sorted(layers):
        raise ValueError(f"layer indices {list(layers)} are not in increasing order; the "
                         f"student keeps the teacher's order, e.g. {sorted(layers)}")
    return layers


def _decoder_is_tied(teacher: BertForMaskedLM) -> bool:
    dec = teacher.cls.predictions.decoder.weight
    emb = teacher.bert.embeddings.word_embeddings.weight
    return dec.data_ptr() == emb.data_ptr()


def student_config(teacher: BertForMaskedLM, n_layers: int) -> DistilBertConfig:
    """A DistilBERT config of the teacher's width with `n_layers` layers."""
    t = teacher.config
    return DistilBertConfig(
        vocab_size=t.vocab_size, max_position_embeddings=t.max_position_embeddings,
        sinusoidal_pos_embds=False, n_layers=n_layers, n_heads=t.num_attention_heads,
        dim=t.hidden_size, hidden_dim=t.intermediate_size, dropout=t.hidden_dropout_prob,
        attention_dropout=t.attention_probs_dropout_prob, activation=t.hidden_act,
        initializer_range=t.initializer_range, pad_token_id=t.pad_token_id or 0,
        tie_word_embeddings=_decoder_is_tied(teacher),
    )


def copy_map(layers: Sequence[int]) -> list[tuple[str, str]]:
    """(student name, teacher name) of every tensor the initialisation copies.

    Token-type embeddings and the pooler have no student counterpart; the token-type-0
    vector is folded into the position embeddings by `student_from_teacher`.
    """
    pairs = [
        ("distilbert.embeddings.word_embeddings.weight", "bert.embeddings.word_embeddings.weight"),
        ("distilbert.embeddings.position_embeddings.weight",
         "bert.embeddings.position_embeddings.weight"),
        ("distilbert.embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.weight"),
        ("distilbert.embeddings.LayerNorm.bias", "bert.embeddings.LayerNorm.bias"),
    ]
    per_layer = [
        ("attention.q_lin", "attention.self.query"),
        ("attention.k_lin", "attention.self.key"),
        ("attention.v_lin", "attention.self.value"),
        ("attention.out_lin", "attention.output.dense"),
        ("sa_layer_norm", "attention.output.LayerNorm"),
        ("ffn.lin1", "intermediate.dense"),
        ("ffn.lin2", "output.dense"),
        ("output_layer_norm", "output.LayerNorm"),
    ]
    for s_idx, t_idx in enumerate(layers):
        for s_mod, t_mod in per_layer:
            for p in ("weight", "bias"):
                pairs.append((f"distilbert.transformer.layer.{s_idx}.{s_mod}.{p}",
                              f"bert.encoder.layer.{t_idx}.{t_mod}.{p}"))
    pairs += [
        ("vocab_transform.weight", "cls.predictions.transform.dense.weight"),
        ("vocab_transform.bias", "cls.predictions.transform.dense.bias"),
        ("vocab_layer_norm.weight", "cls.predictions.transform.LayerNorm.weight"),
        ("vocab_layer_norm.bias", "cls.predictions.transform.LayerNorm.bias"),
        ("vocab_projector.weight", "cls.predictions.decoder.weight"),
        ("vocab_projector.bias", "cls.predictions.decoder.bias"),
    ]
    return pairs


def student_from_teacher(teacher: BertForMaskedLM,
                         layers: Sequence[int] | None = None) -> DistilBertForMaskedLM:
    """Build a `DistilBertForMaskedLM` from `teacher` by copying the chosen layers.

    Copies word and position embeddings, the embedding LayerNorm, each chosen encoder layer
    (Q/K/V, attention output, both LayerNorms, feed-forward) and the whole MLM head. BERT adds
    the token-type-0 embedding to every token of a single-segment input; DistilBERT has no
    token types, so that vector is added to every position embedding — with all layers kept,
    the student then computes exactly the teacher's function.
    """
    if not isinstance(teacher, BertForMaskedLM):
        raise TypeError(f"teacher must be a transformers.BertForMaskedLM, got "
                        f"{type(teacher).__name__}; load it with distil_utils.teacher.load_teacher")
    n = teacher.config.num_hidden_layers
    layers = check_layers(default_layers(n) if layers is None else layers, n)
    student = DistilBertForMaskedLM(student_config(teacher, len(layers)))
    t_state = teacher.state_dict()
    s_params = dict(student.named_parameters(remove_duplicate=False))
    with torch.no_grad():
        for s_name, t_name in copy_map(layers):
            src = t_state[t_name]
            if s_name.endswith("position_embeddings.weight"):
                src = src + t_state["bert.embeddings.token_type_embeddings.weight"][0]
            s_params[s_name].copy_(src)
    student.config.distil_teacher_layers = list(layers)
    return student.eval()


def copy_report(teacher: BertForMaskedLM, student: DistilBertForMaskedLM,
                layers: Sequence[int]) -> list[dict[str, Any]]:
    """Max |student − teacher| for every copied tensor (0 everywhere proves the copy).

    The position embeddings are compared with the folded token-type-0 vector added.
    """
    t_state, s_state = teacher.state_dict(), student.state_dict()
    rows = []
    for s_name, t_name in copy_map(layers):
        ref = t_state[t_name]
        if s_name.endswith("position_embeddings.weight"):
            ref = ref + t_state["bert.embeddings.token_type_embeddings.weight"][0]
        diff = (s_state[s_name] - ref).abs().max().item()
        rows.append({"student": s_name, "teacher": t_name, "shape": tuple(ref.shape),
                     "max_abs_diff": diff})
    return rows


def unique_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """`{name: parameter}`, each tensor once under its first name (tied weights once)."""
    seen: dict[int, tuple[str, torch.nn.Parameter]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        seen.setdefault(id(p), (name, p))
    return dict(seen.values())


def count_parameters(model: torch.nn.Module) -> int:
    """Unique parameters (tied weights once), including the int8 weights of quantised layers,
    which torch keeps in packed buffers rather than parameters."""
    n = sum(p.numel() for p in unique_parameters(model).values())
    for m in model.modules():
        if hasattr(m, "_packed_params") and callable(getattr(m, "weight", None)):
            n += m.weight().numel()
            bias = m.bias() if callable(getattr(m, "bias", None)) else None
            n += bias.numel() if bias is not None else 0
    return n


def random_student(teacher: BertForMaskedLM, n_layers: int, seed: int = 0) -> DistilBertForMaskedLM:
    """A student of the same shape with fresh random weights (the paper's random-init ablation)."""
    torch.manual_seed(seed)
    return DistilBertForMaskedLM(student_config(teacher, n_layers)).eval()
