"""What the teacher-inspection notebook measures: parameter budget, layer similarity,
attention maps and fill-mask predictions. Each is a small tested function; the notebook plots.
"""

from __future__ import annotations

from typing import Any

import torch

from .data import batch_stream
from .student import unique_parameters


def param_breakdown(model: torch.nn.Module) -> list[dict[str, Any]]:
    """Parameters (unique, tied counted once) per component: embeddings, each layer, head.

    Works for BERT and DistilBERT masked LMs; the vocabulary projection tied to the word
    embeddings appears once, under the embeddings. The rows sum to `count_parameters`.
    """
    rows: dict[str, int] = {}
    for name, p in unique_parameters(model).items():
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
def fill_masks(model: torch.nn.Module, tokenizer: Any, text: str, k: int = 5) -> list[list[dict]]:
    """Top-k predictions for every [MASK] of `text`, in order (what `pipeline("fill-mask")`
    returns, each mask predicted with the others left masked), as a function so the widget
    and the static call use the same code."""
    if tokenizer.mask_token not in text:
        raise ValueError(f"the text has no {tokenizer.mask_token} token to fill: {text!r}")
    enc = tokenizer(text, return_tensors="pt", truncation=True)
    positions = (enc["input_ids"][0] == tokenizer.mask_token_id).nonzero()[:, 0]
    if not len(positions):
        raise ValueError(f"every {tokenizer.mask_token} of the text is past the model's "
                         f"{tokenizer.model_max_length} tokens")
    device = next(model.parameters()).device  # a student may still sit on the GPU
    logits = model(**{k_: v.to(device) for k_, v in enc.items()
                      if k_ != "token_type_ids"}).logits[0].cpu()
    out = []
    for pos in positions:
        top = logits[pos].softmax(-1).topk(k)
        out.append([{"token": tokenizer.convert_ids_to_tokens(int(i)), "score": float(s)}
                    for s, i in zip(top.values, top.indices, strict=True)])
    return out


def fill_mask(model: torch.nn.Module, tokenizer: Any, text: str, k: int = 5) -> list[dict]:
    """Top-k predictions for the first [MASK] of `text`."""
    return fill_masks(model, tokenizer, text, k)[0]


def fill_mask_table(models: dict[str, torch.nn.Module], tokenizer: Any, text: str,
                    k: int = 5) -> Any:
    """Models side by side on every [MASK]: one row per (mask, rank), for each model its
    token and probability (%)."""
    import pandas as pd

    preds = {name: fill_masks(m, tokenizer, text, k) for name, m in models.items()}
    rows = []
    for mask in range(len(next(iter(preds.values())))):
        for rank in range(k):
            row: dict[str, Any] = {"[MASK]": mask + 1, "rank": rank + 1}
            for name, p in preds.items():
                row[f"{name}: token"] = p[mask][rank]["token"]
                row[f"{name}: p (%)"] = round(100 * p[mask][rank]["score"], 1)
            rows.append(row)
    return pd.DataFrame(rows).set_index(["[MASK]", "rank"])


def classify_timed(pipes: dict[str, Any], text: str, repeats: int = 5) -> Any:
    """Each text-classification pipeline's label, confidence (%) and median latency (ms) on
    `text` (one warm-up call first, batch size 1, tokenisation included)."""
    import statistics
    import time

    import pandas as pd

    rows = []
    for name, pipe in pipes.items():
        pred = pipe(text)[0]
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            pipe(text)
            times.append(time.perf_counter() - t0)
        rows.append({"model": name, "label": pred["label"],
                     "confidence (%)": round(100 * pred["score"], 1),
                     "latency (ms, median)": round(1000 * statistics.median(times), 2)})
    return pd.DataFrame(rows).set_index("model")
