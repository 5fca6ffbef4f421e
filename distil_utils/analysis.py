"""What the teacher-inspection notebook measures: parameter budget, layer similarity,
attention maps and fill-mask predictions. Each is a small tested function; the notebook plots.
"""

from __future__ import annotations

from typing import Any

import torch

from .data import batch_stream


def param_breakdown(model: torch.nn.Module) -> list[dict[str, Any]]:
    """Parameters (unique, tied counted once) per component: embeddings, each layer, head.

    Works for BERT and DistilBERT masked LMs; the vocabulary projection tied to the word
    embeddings appears once, under the embeddings.
    """
    seen: set[int] = set()
    rows: dict[str, int] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        rows[_component(name)] = rows.get(_component(name), 0) + p.numel()
    return [{"component": k, "params": v} for k, v in rows.items()]


def _component(name: str) -> str:
    parts = name.split(".")
    if "embeddings" in parts:
        return "embeddings"
    if "layer" in parts:
        return f"layer {int(parts[parts.index('layer') + 1])}"
    if "pooler" in parts:
        return "pooler"
    return "MLM head"


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al., 2019) between two (n, d) representations of n tokens.

    1 means the two layers represent the tokens identically up to rotation and scale.
    """
    x = x.double() - x.double().mean(0, keepdim=True)
    y = y.double() - y.double().mean(0, keepdim=True)
    cross = (y.T @ x).norm() ** 2
    return float(cross / ((x.T @ x).norm() * (y.T @ y).norm()))


@torch.inference_mode()
def layer_representations(model: torch.nn.Module, seqs: Any, pad_id: int, n_batches: int = 4,
                          batch_size: int = 16, max_tokens: int = 4000) -> list[torch.Tensor]:
    """Hidden states of every layer (embeddings first) at the real tokens of held-out text."""
    model.eval()
    per_layer: list[list[torch.Tensor]] = []
    for i, (_, batch) in enumerate(batch_stream(seqs, batch_size, 0, pad_id)):
        if i >= n_batches or i * batch_size >= len(seqs):
            break
        out = model(**batch, output_hidden_states=True)
        real = batch["attention_mask"].bool()
        for j, h in enumerate(out.hidden_states):
            if len(per_layer) <= j:
                per_layer.append([])
            per_layer[j].append(h[real])
    return [torch.cat(h)[:max_tokens] for h in per_layer]


def cka_matrix(reps: list[torch.Tensor]) -> torch.Tensor:
    """Linear CKA between every pair of layers: a symmetric matrix with ones on the diagonal."""
    n = len(reps)
    out = torch.ones(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = linear_cka(reps[i], reps[j])
    return out


@torch.inference_mode()
def attention_map(model: torch.nn.Module, tokenizer: Any, text: str, layer: int,
                  head: int) -> tuple[list[str], torch.Tensor]:
    """(tokens, seq × seq attention weights) of one layer and head for `text`.

    SDPA kernels do not return attention weights, so the model is switched to the eager
    implementation for this call and switched back afterwards.
    """
    n_layers = model.config.num_hidden_layers
    n_heads = model.config.num_attention_heads
    if not 0 <= layer < n_layers or not 0 <= head < n_heads:
        raise ValueError(f"layer {layer} / head {head} out of range: the model has {n_layers} "
                         f"layers of {n_heads} heads")
    enc = tokenizer(text, return_tensors="pt")
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        att = model(**enc, output_attentions=True).attentions[layer][0, head]
    finally:
        model.set_attn_implementation(previous)
    return tokenizer.convert_ids_to_tokens(enc["input_ids"][0]), att


@torch.inference_mode()
def fill_mask(model: torch.nn.Module, tokenizer: Any, text: str, k: int = 5) -> list[dict]:
    """Top-k predictions for the first [MASK] of `text` (what `pipeline("fill-mask")` does,
    kept as a function so the widget and the static call use the same code)."""
    if tokenizer.mask_token not in text:
        raise ValueError(f"the text has no {tokenizer.mask_token} token to fill: {text!r}")
    enc = tokenizer(text, return_tensors="pt")
    pos = (enc["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0, 0]
    probs = model(**{k_: v for k_, v in enc.items() if k_ != "token_type_ids"}
                  ).logits[0, pos].softmax(-1)
    top = probs.topk(k)
    return [{"token": tokenizer.convert_ids_to_tokens(int(i)), "score": float(s)}
            for s, i in zip(top.values, top.indices, strict=True)]
