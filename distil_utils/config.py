"""Profiles: one flat block of settings per scale, overridden key by key.

`smoke` proves the plumbing in seconds (tiny models built from configs, tiny data slices),
`cpu` gives meaningful numbers on a laptop with a real pretrained teacher, `paper` is the
paper's own settings for a GPU machine with internet. Every notebook and command line calls
the same functions with one of these configs: nothing forks into demo code.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .tasks import GLUE_TASKS, check_glue_task
from .validation import SettingError, check_recipe, check_values, coerce_all

ROOT = Path(__file__).resolve().parent.parent
DATA_ENV = "DISTIL_DATA_DIR"


# Which artefact each setting shapes, declared beside it: the stamps (artefacts.py) are built
# from these declarations, so a new setting lands in the right stamp or fails at import.
RUN = "pretraining"  # every pre-training run: the teacher's adaptation and each distillation
ADAPT = "adapt"  # the teacher's masked-LM adaptation only
DISTILL = "distill"  # one distilled student only
DOWNSTREAM = "downstream"  # fine-tuning and timing: outside every model's stamp
NONE = "nothing"  # where things are, how often they are logged or saved, how fast a step runs
SHAPES = (RUN, ADAPT, DISTILL, DOWNSTREAM, NONE)


def setting(shapes: str, default: Any = None, *, factory: Any = None) -> Any:
    """A `Config` field that declares which artefact it shapes (`shapes`, one of SHAPES)."""
    if shapes not in SHAPES:
        raise ValueError(f"shapes must be one of {SHAPES}, got {shapes!r}")
    if factory is not None:
        return field(default_factory=factory, metadata={"shapes": shapes})
    return field(default=default, metadata={"shapes": shapes})


@dataclass
class Config:
    """Every setting of a run. Field names are what `-p key value` and notebooks override."""

    profile: str = setting(NONE, "smoke")
    seed: int = setting(RUN, 42)
    results_dir: str = setting(NONE, "results")
    # None = the Hugging Face Hub; a directory laid out like ../shared/data = offline copies.
    data_dir: str | None = setting(NONE, None)
    device: str = setting(NONE, "auto")
    # --- teacher / student -------------------------------------------------------------
    # Hub name, local path, or "tiny" (built from config)
    teacher: str = setting(RUN, "bert-base-uncased")
    tokenizer: str | None = setting(RUN, None)  # None = the teacher's own tokenizer
    tiny_layers: int = setting(RUN, 4)  # only for teacher="tiny"
    tiny_hidden: int = setting(RUN, 64)
    tiny_heads: int = setting(RUN, 2)
    tiny_intermediate: int = setting(RUN, 128)
    # None = every other layer (paper)
    student_layers: tuple[int, ...] | None = setting(DISTILL, None)
    # --- teacher MLM adaptation (for an encoder without an MLM head, e.g. MiniLM) ------
    adapt_steps: int = setting(ADAPT, 0)
    adapt_lr: float = setting(ADAPT, 1e-4)
    adapt_head_lr: float = setting(ADAPT, 1e-3)
    # Masking of the adaptation: None = uniform, as BERT was pre-trained and as held-out
    # accuracy is measured; count^-0.7 weights would mask mostly rare tokens, which teaches a
    # fresh MLM head little.
    adapt_mlm_smoothing: float | None = setting(ADAPT, None)
    # --- corpus -------------------------------------------------------------------------
    corpus: tuple[str, ...] = setting(RUN, ("wikipedia", "bookcorpus"))
    corpus_max_docs: int | None = setting(RUN, None)
    heldout_docs: int = setting(RUN, 200)
    max_seq_len: int = setting(RUN, 128)
    min_seq_len: int = setting(RUN, 12)
    # --- distillation (paper defaults) --------------------------------------------------
    batch_size: int = setting(RUN, 32)
    grad_accum: int = setting(RUN, 1)
    # None: derived from `epochs` and the corpus size
    max_steps: int | None = setting(DISTILL, 1000)
    # The paper's recipe as settings (distil_utils/recipe.py): `global_batch` sequences per
    # optimizer step over all processes (grad_accum is then derived from the number of
    # processes and batch_size, the per-device batch); `epochs` passes over the corpus
    # (max_steps then derived from its size once it is tokenised). None: as given.
    global_batch: int | None = setting(RUN, None)
    epochs: float | None = setting(RUN, None)
    lr: float = setting(DISTILL, 5e-4)
    warmup_frac: float = setting(RUN, 0.05)
    weight_decay: float = setting(RUN, 0.0)
    max_grad_norm: float = setting(RUN, 5.0)
    temperature: float = setting(DISTILL, 2.0)
    alpha_ce: float = setting(DISTILL, 5.0)
    alpha_mlm: float = setting(DISTILL, 2.0)
    alpha_cos: float = setting(DISTILL, 1.0)
    ce_on_masked_only: bool = setting(DISTILL, False)
    mlm_prob: float = setting(RUN, 0.15)
    # count^-0.7 masking weights; None = uniform
    mlm_smoothing: float | None = setting(DISTILL, 0.7)
    # How many positions a batch masks: ceil(mlm_prob x real tokens), [CLS]/[SEP] counted as
    # in the reference (True), or ceil(mlm_prob x maskable tokens) (False). Never chosen either way.
    mlm_count_special: bool = setting(RUN, True)
    checkpoint_every: int = setting(NONE, 100)
    log_every: int = setting(NONE, 10)
    # Run tracking every log_every steps, under results/<profile>/runs/: "none", a tracker of
    # TRACKERS, or several ("tensorboard,trackio" or a tuple). Distillation logs through
    # accelerate's trackers, fine-tuning through Trainer's report_to.
    report_to: tuple[str, ...] | str = setting(NONE, "none")  # tuple first: -p parses a list
    eval_batches: int = setting(NONE, 20)
    # --- distillation speed: none changes what a step computes (python -m
    # benchmarks.bench_distill measures each one on and off) ---------------------------
    # Vocabulary logits of student and teacher computed chunk by chunk inside the loss, only
    # for the rows it uses (real or masked tokens), never as (tokens x vocab) tensors; the
    # result equals the plain forward + triple_loss to float rounding. Falls back to the
    # plain path for other model classes and under DDP.
    distill_fused_head: bool = setting(NONE, True)
    # rows per chunk of the fused head (memory vs. speed)
    distill_chunk_rows: int = setting(NONE, 256)
    # Mixed precision of the forward passes: "bf16" (CPU, or GPU) or "fp16" (GPU only);
    # None = float32. It changes the losses slightly, hence off by default.
    distill_autocast: str | None = setting(RUN, None)
    # torch.compile the two encoders; CUDA only, ignored on CPU
    distill_compile: bool = setting(NONE, False)
    # torch.set_num_threads for distillation; None = torch's
    num_threads: int | None = setting(NONE, None)
    # "sdpa" or "eager"; None = the model's (sdpa)
    attn_implementation: str | None = setting(NONE, None)
    # --- devices: one process per device (torchrun / accelerate launch), via accelerate --
    # On CUDA, with distill_autocast None: bf16 autocast where the GPU has it, else fp16 with
    # loss scaling (False: float32, TF32 matmuls). CPU runs follow distill_autocast alone.
    gpu_mixed_precision: bool = setting(RUN, True)
    tf32: bool = setting(RUN, True)  # TF32 matmuls for what stays float32 on GPUs that have them
    # How long a collective waits for the slowest rank (a step, a checkpoint, a compilation):
    # minutes, so a dead rank stops the others soon. The corpus is tokenised before the
    # multi-process run, in one process (`distill --prepare-corpus`), not inside it.
    dist_timeout_s: int = setting(NONE, 15 * 60)
    # Where the tokenised corpus is cached; None: results/<profile>/corpus (multi-node: a
    # folder every node sees).
    corpus_cache: str | None = setting(NONE, None)
    # --- fine-tuning ----------------------------------------------------------------------
    glue_tasks: tuple[str, ...] = setting(DOWNSTREAM, GLUE_TASKS)
    ft_epochs: float = setting(DOWNSTREAM, 3.0)
    ft_lr: float = setting(DOWNSTREAM, 5e-5)
    ft_batch_size: int = setting(DOWNSTREAM, 32)
    ft_max_seq_len: int = setting(DOWNSTREAM, 128)
    # None: ft_max_seq_len (the paper profile: 512)
    imdb_max_seq_len: int | None = setting(DOWNSTREAM, None)
    # Batches of similar length (transformers' LengthGroupedSampler): short sentences in
    # random batches pad to the longest one, wasting compute.
    ft_group_by_length: bool = setting(DOWNSTREAM, True)
    # Trainer checkpoint every N optimizer steps, so a killed task resumes (distil_utils.ft_runs)
    ft_checkpoint_every: int = setting(DOWNSTREAM, 500)
    ft_max_train: int | None = setting(DOWNSTREAM, None)
    ft_max_eval: int | None = setting(DOWNSTREAM, None)
    ft_seeds: tuple[int, ...] = setting(DOWNSTREAM, (42, 43, 44, 45, 46))
    # Per-GLUE-task changes of the ft_* settings above, e.g. {"sst2": {"ft_max_train": None,
    # "ft_epochs": 1.0}}: the full SST-2 train set, once, while the small tasks stay capped.
    ft_task_overrides: dict[str, dict[str, Any]] = setting(DOWNSTREAM, factory=dict)
    # Table 4 downstream (ft_: outside every model's stamp): the rows fine-tuned on SST-2 (None:
    # all), at the headline SST-2 budget (ft_ablation_full) or the general caps.
    ft_ablation_rows: tuple[str, ...] | None = setting(DOWNSTREAM, None)
    ft_ablation_full: bool = setting(DOWNSTREAM, False)
    imdb_heldout: int = setting(DOWNSTREAM, 2500)
    # None: ft_max_train (IMDb reviews are ~4x SST-2's length)
    imdb_max_train: int | None = setting(DOWNSTREAM, None)
    squad_max_seq_len: int = setting(DOWNSTREAM, 384)
    squad_doc_stride: int = setting(DOWNSTREAM, 128)
    squad_epochs: float = setting(DOWNSTREAM, 2.0)
    squad_max_train: int | None = setting(DOWNSTREAM, None)
    squad_max_eval: int | None = setting(DOWNSTREAM, None)
    squad_kd_alpha: float = setting(DOWNSTREAM, 0.5)
    # --- speed --------------------------------------------------------------------------
    bench_max_examples: int | None = setting(DOWNSTREAM, None)
    bench_repeats: int = setting(DOWNSTREAM, 3)
    # Table 3's batch-1 speed-up is timed in more rounds (up to bench_max_repeats) until its
    # 95% interval is within +-bench_ci_halfwidth; None times bench_repeats rounds only.
    bench_ci_halfwidth: float | None = setting(DOWNSTREAM, 0.05)
    bench_max_repeats: int = setting(DOWNSTREAM, 30)
    # Also time BERT-base and DistilBERT-base shapes (random weights) as the paper's Table 3
    # did: a full dev pass at batch 1 (bench_shape_examples caps it; None = all 1,500 pairs).
    bench_paper_shapes: bool = setting(DOWNSTREAM, True)
    bench_shape_examples: int | None = setting(DOWNSTREAM, None)
    bench_batch_sizes: tuple[int, ...] = setting(DOWNSTREAM, (1, 8, 32))
    bench_seq_lens: tuple[int, ...] = setting(DOWNSTREAM, (32, 128, 512))
    extra: dict[str, Any] = setting(NONE, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def out(self) -> Path:
        """The profile's results directory, `results/<profile>/` by default."""
        base = Path(self.results_dir)
        if not base.is_absolute():
            base = ROOT / base
        return base / self.profile


_UNDECLARED = [f.name for f in dataclasses.fields(Config) if "shapes" not in f.metadata]
if _UNDECLARED:
    raise TypeError(f"Config settings {_UNDECLARED} do not declare what they shape: "
                    "define them with setting(SHAPES_KIND, default)")


def shaped_by(kind: str) -> frozenset[str]:
    """The names of the settings declared to shape `kind` (one of SHAPES)."""
    return frozenset(f.name for f in dataclasses.fields(Config) if f.metadata["shapes"] == kind)


# The paper's Table 4 as settings: row name -> (config changes, student initialisation).
NO_DISTILLATION = "no distillation (layer-skipped init only)"
# row name -> (config changes, initialisation)
ABLATIONS: dict[str, tuple[dict[str, Any], str]] = {
    "triple loss": ({}, "skip"),
    "without L_cos": ({"alpha_cos": 0.0}, "skip"),
    "without L_mlm": ({"alpha_mlm": 0.0}, "skip"),
    "without L_ce": ({"alpha_ce": 0.0}, "skip"),
    "triple loss, random init": ({}, "random"),
    NO_DISTILLATION: ({"max_steps": 0}, "skip"),
}


# The trackers `report_to` may name (both write locally, offline), and the package each needs.
TRACKERS = {"tensorboard": "tensorboard", "trackio": "trackio"}


def trackers(cfg: Config) -> tuple[str, ...]:
    """`cfg.report_to` as tracker names: a comma-separated string or a tuple; "none" is none."""
    items = [cfg.report_to] if isinstance(cfg.report_to, str) else list(cfg.report_to)
    names = [n.strip().lower() for item in items for n in str(item).split(",")]
    return tuple(dict.fromkeys(n for n in names if n and n != "none"))


def runs_dir(cfg: Config) -> Path:
    """Where tracked runs log: `results/<profile>/runs/<run>` (`tensorboard --logdir` it)."""
    return cfg.out / "runs"


def point_trackio_at_runs(cfg: Config) -> None:
    """trackio logs under `runs_dir(cfg)/trackio`; it reads TRACKIO_DIR once, when imported,
    so the first run of the process decides (a value the user set is kept)."""
    if "trackio" in trackers(cfg):
        os.environ.setdefault("TRACKIO_DIR", str(runs_dir(cfg) / "trackio"))


def check_trackers(cfg: Config) -> None:
    """Unknown tracker names, and trackers whose package is missing, before any work."""
    unknown = [n for n in trackers(cfg) if n not in TRACKERS]
    if unknown:
        raise SettingError(f"setting report_to names {unknown}, which it does not know: use "
                           f"'none' or any of {list(TRACKERS)}, comma-separated, e.g. "
                           "-p report_to tensorboard")
    missing = [TRACKERS[n] for n in trackers(cfg) if importlib.util.find_spec(TRACKERS[n]) is None]
    if missing:
        raise SettingError(f"setting report_to {cfg.report_to!r} needs {missing}, not installed: "
                           f"pip install {' '.join(missing)} (or -p report_to none)")


def default_data_dir() -> str | None:
    """`$DISTIL_DATA_DIR`, else `../shared/data` beside the repository if it exists."""
    env = os.environ.get(DATA_ENV)
    if env:
        return env
    guess = ROOT.parent / "shared" / "data"
    return str(guess) if guess.is_dir() else None


PROFILES: dict[str, dict[str, Any]] = {
    "smoke": dict(
        teacher="tiny", tokenizer="minilm", corpus=("wikitext",),
        corpus_max_docs=400, heldout_docs=40, max_seq_len=64, min_seq_len=8, adapt_steps=40,
        adapt_lr=2e-3, adapt_head_lr=2e-3,
        batch_size=8, max_steps=12, checkpoint_every=6, log_every=2, eval_batches=2,
        glue_tasks=("sst2", "stsb", "rte"), ft_epochs=1.0, ft_lr=1e-3, ft_batch_size=16,
        ft_max_seq_len=64, ft_max_train=64, ft_max_eval=64, ft_seeds=(42,), imdb_heldout=64,
        ft_task_overrides={"sst2": {"ft_max_train": 96}},  # the cpu profile's code path
        ft_ablation_full=True,
        squad_max_seq_len=128, squad_doc_stride=64, squad_epochs=1.0, squad_max_train=32,
        squad_max_eval=32, bench_max_examples=20, bench_repeats=2, bench_max_repeats=2,
        bench_shape_examples=4,
        bench_batch_sizes=(1, 4), bench_seq_lens=(16, 64),
    ),
    # A 2-core laptop CPU in about two hours (README: "The cpu profile, measured"): 120
    # distillation steps for the main run and each ablation row. Uniform masking: at this
    # budget count^-0.7 weights mask mostly rare words the small student cannot yet predict.
    # STS-B runs six epochs (a regression head sits at the label mean for hundreds of steps);
    # CoLA three on its full train set (on a few thousand sentences the student predicts one
    # class). Table 4's SST-2 column: three rows on the full SST-2 train set.
    "cpu": dict(
        teacher="minilm", tokenizer=None, corpus=("imdb", "wikitext"),
        corpus_max_docs=20000, heldout_docs=300, max_seq_len=128, min_seq_len=12,
        adapt_steps=150, batch_size=16, max_steps=120, lr=3e-4, mlm_smoothing=None,
        checkpoint_every=40, log_every=10, eval_batches=20,
        glue_tasks=("sst2", "cola", "mrpc", "stsb", "rte"), ft_epochs=2.0, ft_lr=1e-4,
        ft_batch_size=32, ft_max_seq_len=128, ft_max_train=3000, ft_max_eval=None,
        ft_task_overrides={"sst2": {"ft_max_train": None, "ft_epochs": 1.0},
                           "stsb": {"ft_max_train": None, "ft_epochs": 6.0},
                           "cola": {"ft_max_train": None, "ft_epochs": 3.0}},
        ft_ablation_full=True, ft_ablation_rows=("triple loss", "without L_ce",
                                                 "no distillation (layer-skipped init only)"),
        ft_seeds=(42,), imdb_heldout=1000, imdb_max_train=1000, squad_max_seq_len=256,
        squad_doc_stride=128, squad_epochs=1.0, squad_max_train=800, squad_max_eval=300,
        bench_max_examples=300, bench_seq_lens=(32, 128, 256),
    ),
    "paper": dict(
        # The paper's recipe whatever the hardware: ~4,000 sequences per optimizer step
        # (grad_accum derived from the number of processes), 3 epochs of the corpus, lr 5e-4
        # with 5% warm-up, the reference's layer map (0, 2, 4, 7, 9, 11) (student.py).
        # `python -m distil_utils.distill --profile paper --plan` prints what a run would do.
        teacher="bert-base-uncased", corpus=("wikipedia", "bookcorpus"), max_seq_len=512,
        batch_size=16, grad_accum=1, global_batch=4000,
        epochs=3.0, max_steps=None, checkpoint_every=200, log_every=10, imdb_max_seq_len=512,
        glue_tasks=GLUE_TASKS, ft_epochs=3.0, ft_seeds=(42, 43, 44, 45, 46),
        bench_max_examples=None, bench_repeats=5,
        bench_batch_sizes=(1, 8, 32), bench_seq_lens=(32, 128, 512), data_dir=None,
    ),
    # One free Colab GPU (a T4, 16 GB) for about an hour (estimated from FLOP counts), online:
    # the real bert-base-uncased teacher and the paper's 6-of-12 student, on a corpus that
    # downloads in minutes (IMDb unsupervised + WikiText-2); GLUE on the five small tasks.
    "colab": dict(
        teacher="bert-base-uncased", tokenizer=None, corpus=("imdb", "wikitext"),
        corpus_max_docs=60000, heldout_docs=500, max_seq_len=128, min_seq_len=12,
        student_layers=(0, 2, 4, 7, 9, 11), adapt_steps=0, batch_size=32, max_steps=800,
        lr=5e-4, mlm_smoothing=None, checkpoint_every=200, log_every=50, eval_batches=30,
        glue_tasks=("sst2", "cola", "mrpc", "stsb", "rte"), ft_epochs=3.0, ft_lr=5e-5,
        ft_batch_size=32, ft_max_seq_len=128, ft_max_train=None, ft_max_eval=None,
        ft_task_overrides={"sst2": {"ft_max_train": 20000, "ft_epochs": 1.0}},
        ft_seeds=(42,), imdb_max_train=5000, ft_group_by_length=True, squad_max_seq_len=384,
        squad_doc_stride=128, squad_epochs=1.0, squad_max_train=8000, squad_max_eval=2000,
        bench_max_examples=300, bench_repeats=3, bench_shape_examples=300,
        bench_batch_sizes=(1, 8, 32), bench_seq_lens=(32, 128, 256), data_dir=None,
    ),
    # mybinder.org (2 GB of RAM, no GPU): the smoke settings, a little larger. The tiny
    # teacher must be adapted (adapt_steps > 0) to be saved under results/binder/teacher,
    # where notebooks 04-06 find it; otherwise "tiny" would reach from_pretrained as a name.
    "binder": dict(
        teacher="tiny", tokenizer="minilm", corpus=("wikitext",), tiny_hidden=128,
        tiny_intermediate=256, corpus_max_docs=1500, heldout_docs=60, max_seq_len=64,
        min_seq_len=8, adapt_steps=150, adapt_lr=2e-3, adapt_head_lr=2e-3, batch_size=8,
        max_steps=60, checkpoint_every=20, log_every=10, eval_batches=4,
        glue_tasks=("sst2", "stsb"), ft_epochs=1.0, ft_lr=5e-4, ft_batch_size=16,
        ft_max_seq_len=64, ft_max_train=400, ft_max_eval=200, ft_seeds=(42,),
        imdb_heldout=100, imdb_max_train=200, squad_max_seq_len=128, squad_doc_stride=64,
        squad_epochs=1.0, squad_max_train=48, squad_max_eval=48, bench_max_examples=40,
        bench_repeats=2, bench_max_repeats=2, bench_shape_examples=4,
        bench_batch_sizes=(1, 8), bench_seq_lens=(16, 64),
    ),
}

# what ft_task_overrides may change per task
FT_FIELDS = {f.name for f in dataclasses.fields(Config) if f.name.startswith("ft_")
             and f.name not in ("ft_task_overrides", "ft_ablation_rows", "ft_ablation_full")}


def get_config(profile: str = "smoke", *, explicit_none: tuple[str, ...] = (),
               **overrides: Any) -> Config:
    """The profile's settings with `overrides` applied; unknown keys are an error.

    `None` overrides are ignored so that a notebook's parameters cell can leave a setting to
    the profile by writing `None`; the settings named in `explicit_none` are set to None
    instead (the command line's `-p mlm_smoothing None`).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    names = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} for profile {profile!r}; "
                         f"known settings: {sorted(names)}")
    values: dict[str, Any] = {"profile": profile}
    if profile != "paper":
        values["data_dir"] = default_data_dir()
    values.update(PROFILES[profile])
    if os.environ.get(DATA_ENV):
        values["data_dir"] = os.environ[DATA_ENV]
    values.update({k: v for k, v in overrides.items() if v is not None or k in explicit_none})
    cfg = Config(**coerce_all(values, Config))  # types first: a bad -p value names itself
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Reject settings that would give silently wrong numbers, or no run at all."""
    check_values(cfg)
    if cfg.temperature <= 0:
        raise ValueError(f"temperature must be > 0 (got {cfg.temperature}); the paper uses 2.0")
    for name in ("alpha_ce", "alpha_mlm", "alpha_cos"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name} must be >= 0 (got {getattr(cfg, name)}); "
                             "set it to 0 to switch that loss term off")
    if not 0 < cfg.mlm_prob < 1:
        raise ValueError(f"mlm_prob must be in (0, 1) (got {cfg.mlm_prob}); the paper uses 0.15")
    for task in cfg.glue_tasks:
        check_glue_task(task, "glue_tasks")
    if cfg.batch_size < 1 or cfg.grad_accum < 1:
        raise ValueError("batch_size and grad_accum must be >= 1")
    if cfg.distill_autocast not in (None, "bf16", "fp16"):
        raise ValueError(f"distill_autocast must be None, 'bf16' or 'fp16' "
                         f"(got {cfg.distill_autocast!r})")
    for task, changes in cfg.ft_task_overrides.items():
        if task not in GLUE_TASKS:
            raise ValueError(f"ft_task_overrides names {task!r}, which is not a GLUE task; "
                             f"GLUE tasks are {list(GLUE_TASKS)}")
        bad = sorted(set(changes) - FT_FIELDS)
        if bad:
            raise ValueError(f"ft_task_overrides[{task!r}] may only change fine-tuning settings "
                             f"({sorted(FT_FIELDS)}); got {bad}")
    if cfg.distill_chunk_rows < 1:
        raise ValueError(f"distill_chunk_rows must be >= 1 (got {cfg.distill_chunk_rows})")
    if cfg.ft_ablation_rows is not None:
        unknown = [r for r in cfg.ft_ablation_rows if r not in ABLATIONS]
        if unknown or "triple loss" not in cfg.ft_ablation_rows:
            raise SettingError(f"ft_ablation_rows {cfg.ft_ablation_rows}: every name must "
                               f"be one of {list(ABLATIONS)}, 'triple loss' (the reference of "
                               "every difference) among them; None fine-tunes every row")
    check_trackers(cfg)
    check_recipe(cfg)  # steps, global batch, devices
