"""Teacher loading and the paper's layer-skipping student initialisation.

DistilBERT's student is BERT with half the layers, no token-type embeddings and no pooler,
initialised by copying one teacher layer out of two. transformers has no function that builds
a `DistilBertForMaskedLM` from a `BertForMaskedLM` (the reference `extract_distilbert.py`
script is a state-dict rename outside the library), so the copy is written here, tensor by
tensor, and tested tensor by tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import BertConfig, BertForMaskedLM, DistilBertConfig, DistilBertForMaskedLM

from .hub import resolve_model
from .results_io import default_file_mode

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


def tiny_teacher(vocab_size: int, layers: int = 4, hidden: int = 64, heads: int = 2,
                 intermediate: int = 128, max_positions: int = 512,
                 seed: int = 0) -> BertForMaskedLM:
    """A randomly initialised BERT masked LM built from a config (the smoke profile's teacher)."""
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=intermediate,
                     max_position_embeddings=max_positions)
    return BertForMaskedLM(cfg)


def load_teacher(name_or_path: str | Path, *, allow_new_head: bool = False) -> BertForMaskedLM:
    """A `BertForMaskedLM` teacher by Hub name, local path or short name ("minilm").

    The student copies the teacher's MLM head, so a checkpoint without one (a plain
    `BertModel` such as a sentence encoder) is refused unless `allow_new_head` is set — the
    teacher-adaptation step sets it, gives the model a head and trains it.
    """
    from transformers import AutoConfig

    path = resolve_model(str(name_or_path))
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise OSError(f"could not read a model config from {name_or_path!r} ({path}): {err}\n"
                      "Offline? Pass a local directory saved with save_pretrained, or 'minilm'."
                      ) from err
    if config.model_type != "bert":
        raise TypeError(
            f"teacher {name_or_path!r} is a {config.model_type!r} model "
            f"(architectures {getattr(config, 'architectures', None)}); the student "
            "initialisation needs a BERT masked LM (BertForMaskedLM), e.g. bert-base-uncased"
        )
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        raise TypeError(f"teacher {name_or_path!r} uses {config.position_embedding_type!r} "
                        "position embeddings; DistilBERT has absolute ones only")
    try:
        model, info = BertForMaskedLM.from_pretrained(path, output_loading_info=True)
    except Exception as err:  # safetensors/torch raise many types for a damaged file
        raise OSError(f"could not load the weights of teacher {name_or_path!r} ({path}): "
                      f"{type(err).__name__}: {err}. The checkpoint may be truncated or "
                      "corrupt: download or save it again.") from err
    missing_head = [k for k in info["missing_keys"] if k.startswith("cls.predictions")]
    if missing_head and not allow_new_head:
        raise ValueError(
            f"teacher {name_or_path!r} has no masked-LM head (missing {missing_head[:3]}…): "
            "it is a plain BERT encoder. Use a BertForMaskedLM checkpoint, or let the suite "
            "give it a head and adapt it first (profile setting adapt_steps > 0: notebook 01 "
            "runs distil_utils.teacher.adapt_teacher)."
        )
    missing_body = [k for k in info["missing_keys"] if k.startswith("bert.")]
    if missing_body:
        raise ValueError(f"teacher {name_or_path!r} is missing encoder weights {missing_body[:3]}"
                         "…: the checkpoint is incomplete")
    return model.eval()


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
                        f"{type(teacher).__name__}; load it with distil_utils.student.load_teacher")
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


def count_params(model: torch.nn.Module) -> int:
    """Unique parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def random_student(teacher: BertForMaskedLM, n_layers: int, seed: int = 0) -> DistilBertForMaskedLM:
    """A student of the same shape with fresh random weights (the paper's random-init ablation)."""
    torch.manual_seed(seed)
    return DistilBertForMaskedLM(student_config(teacher, n_layers)).eval()


def save_model(model: torch.nn.Module, tokenizer: Any, path: str | Path,
               stamp: dict[str, Any] | None = None, **stamp_extra: Any) -> Path:
    """`save_pretrained` model and tokenizer into `path`, so `from_pretrained`, `pipeline`
    and the Hub can load it; written to a sibling directory first, then renamed.

    `stamp` (`artefacts.make_stamp`, plus `stamp_extra` such as a report) is written inside,
    so the settings a model was made from arrive with it in the same rename. The config
    records the tokenizer's vocabulary digest, which `teacher.check_vocab` compares.
    """
    import shutil

    from .artefacts import vocab_digest, write_stamp

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    if tokenizer is not None:
        model.config.distil_vocab_sha256 = vocab_digest(tokenizer)
    model.save_pretrained(tmp)
    if stamp is not None:
        write_stamp(tmp, stamp, **stamp_extra)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    from .modelcard import write_model_card  # README.md: base model, data, metrics

    write_model_card(tmp, model.config)
    # safetensors writes its file owner-only (0600); a shared results folder needs it readable.
    mode = default_file_mode()
    for file in tmp.iterdir():
        if file.is_file():
            file.chmod(mode)
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        if old.exists():
            shutil.rmtree(old)
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old)
    else:
        tmp.rename(path)
    return path
