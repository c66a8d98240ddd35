"""``pile_losses`` (per checkpoint: the model's loss on every predictable token of the first N
documents) and ``induction_filters`` (once: present-trigram / present-bigram flags), with their
asset checks."""

import math
import time
import warnings
from typing import Optional

import dagster as dg
import numpy as np

from quanta_core.canonical import CanonicalCorpus
from quanta_core.filters import induction_filters as compute_induction_filters
from quanta_core.losses import default_batching, token_losses
from quanta_assets.model_loader import ModelLoader
from quanta_assets.partitions import DEMO_MODEL, checkpoint_partitions, model_and_step
from quanta_assets.resources import QuantaCache

PYTHIA_NUM_DOCUMENTS = 20_000  # the original's run (README: --num_documents 20000)
DEMO_NUM_DOCUMENTS = 400
"""The demo suite's loss tables cover the first 400 mini-Pile documents (~124k predictable tokens):
a loss table is computed for each of its 11 checkpoints, and the tiny model runs at only ~2k
tokens/s on two CPU cores (the whole 2,000-document mini-Pile would take ~5 minutes per step)."""
PYTHIA_VOCAB = 50_304  # Pythia's padded vocabulary; the tokenizer has 50,277 entries (ln differs by 5e-4)
LOW_LOSS_NATS = 0.1  # the original's selection threshold, 0.1442695 bits
HISTOGRAM_EDGES = [0.0, 0.01, 0.1, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, math.inf]  # nats


class LossSettings(dg.ConfigurableResource):
    """Settings of ``pile_losses`` (the original's ``evaluate_pile_losses.py``).

    ``num_documents``: losses are computed for the first N documents of ``pile_canonical``;
    ``None`` = the model's default: 20,000 for Pythia (the original's run; capped at the corpus size
    with a warning), the first 400 documents for the demo suite (``DEMO_NUM_DOCUMENTS``). ``batch_tokens``: padded tokens per
    forward pass (documents are batched by length). ``logits_chunk``: positions per
    unembedding + cross-entropy chunk (bounds the float32 logits block to logits_chunk × vocab).
    Both ``None`` = by device: 16,384 / 256 on a CPU, 65,536 / 8,192 on a GPU.
    ``step0_tolerance_nats``: the step-0 check warns when the mean loss is further than this from
    ln(vocab). Device and dtype are the ``models`` resource's.
    """

    num_documents: Optional[int] = None
    batch_tokens: Optional[int] = None
    logits_chunk: Optional[int] = None
    step0_tolerance_nats: float = 1.0

    def documents_for(self, model: str, corpus_documents: int) -> int:
        """Documents to evaluate for ``model`` on a corpus of ``corpus_documents`` documents."""
        if self.num_documents is not None:
            if not 0 <= self.num_documents <= corpus_documents:
                raise ValueError(
                    f"loss_settings.num_documents = {self.num_documents}, but pile_canonical has "
                    f"{corpus_documents} documents"
                )
            return int(self.num_documents)
        if model == DEMO_MODEL:
            return min(DEMO_NUM_DOCUMENTS, corpus_documents)
        return min(PYTHIA_NUM_DOCUMENTS, corpus_documents)


RESOURCES = {"loss_settings": LossSettings()}

# per-partition checks are what we want (one verdict per checkpoint); Dagster marks them preview
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning)


def loss_histogram_markdown(losses: np.ndarray) -> str:
    """A Markdown table of the loss distribution (bins in nats, counts, shares, a text bar)."""
    counts, _ = np.histogram(losses, bins=HISTOGRAM_EDGES)
    total = max(int(counts.sum()), 1)
    rows = ["| loss (nats) | tokens | share | |", "|---|---:|---:|---|"]
    for lo, hi, n in zip(HISTOGRAM_EDGES[:-1], HISTOGRAM_EDGES[1:], counts):
        share = n / total
        label = f"[{lo:g}, {hi:g})" if math.isfinite(hi) else f"≥ {lo:g}"
        rows.append(f"| {label} | {n:,} | {share:.1%} | {'█' * round(40 * share)} |")
    return "\n".join(rows)


def _corpus(pile_canonical: dict) -> CanonicalCorpus:
    return CanonicalCorpus.from_arrays(pile_canonical)


@dg.asset(
    partitions_def=checkpoint_partitions,
    deps=["model_checkpoint"],
    group_name="losses",
    code_version="2",
    description=(
        "The checkpoint's cross-entropy loss, in nats, on every predictable token of the first N "
        "documents of pile_canonical (N = 20,000 for Pythia as in the original; the first 400 "
        "mini-Pile documents for the demo suite). File `<cache>/<model>/<step>/pile_losses.npy`: float32 [G], G = "
        "predictable tokens of those documents, aligned to the canonical index (entry g is the loss "
        "of predicting token pos of document doc from the tokens before it, see "
        "quanta_core.canonical). Since the canonical index is a prefix, induction_filters[:G] lines "
        "up with it."
    ),
)
def pile_losses(
    context: dg.AssetExecutionContext,
    pile_canonical: dict,
    models: ModelLoader,
    cache: QuantaCache,
    loss_settings: LossSettings,
) -> np.ndarray:
    model_name, step = model_and_step(context)
    settings = loss_settings
    corpus = _corpus(pile_canonical)
    num_documents = settings.documents_for(model_name, corpus.num_documents)
    if settings.num_documents is None and model_name != DEMO_MODEL and num_documents < PYTHIA_NUM_DOCUMENTS:
        context.log.warning(f"pile_canonical has only {corpus.num_documents} documents: evaluating all of them "
                            f"instead of the original's {PYTHIA_NUM_DOCUMENTS:,}")
    total = int(corpus.starts[num_documents])

    loaded = models.load(model_name, step, cache.path, log=context.log)
    default_tokens, default_chunk = default_batching(loaded.device)
    batch_tokens = settings.batch_tokens or default_tokens
    logits_chunk = settings.logits_chunk or default_chunk
    context.log.info(f"{model_name} {step}: losses of {total:,} predictable tokens in {num_documents:,} documents "
                     f"on {loaded.device} ({loaded.dtype}), batch_tokens {batch_tokens}, logits_chunk {logits_chunk}")
    started = time.perf_counter()
    last_log = [started]

    def progress(done: int) -> None:
        now = time.perf_counter()
        if now - last_log[0] >= 10 or done == total:
            last_log[0] = now
            rate = done / max(now - started, 1e-9)
            context.log.info(f"{done:,}/{total:,} tokens ({done / max(total, 1):.0%}), {rate:,.0f} tokens/s, "
                             f"~{(total - done) / max(rate, 1e-9):.0f} s left")

    losses = token_losses(
        loaded.model, corpus, num_documents=num_documents, batch_tokens=batch_tokens,
        logits_chunk=logits_chunk, device=loaded.device, dtype=loaded.dtype, progress=progress,
    )
    seconds = time.perf_counter() - started
    config = getattr(loaded.model, "config", None)
    checkpoint = {
        "device": str(loaded.device),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "vocab_size": int(getattr(config, "vocab_size", 0)) or None,
        "repo_id": str(getattr(loaded, "repo_id", "")),
        "revision": str(getattr(loaded, "revision", "")),
        "commit": str(getattr(loaded, "commit", "")),
    }
    del loaded
    _free_accelerator_memory()

    finite = losses[np.isfinite(losses)]
    context.add_output_metadata(
        {
            "num_documents": num_documents,
            "num_tokens": len(losses),
            "mean_loss_nats": float(finite.mean()) if len(finite) else float("nan"),
            "median_loss_nats": float(np.median(finite)) if len(finite) else float("nan"),
            "fraction_below_0.1_nats": float((finite < LOW_LOSS_NATS).mean()) if len(finite) else 0.0,
            "loss_histogram": dg.MetadataValue.md(loss_histogram_markdown(finite)),
            "tokens_per_second": round(len(losses) / max(seconds, 1e-9)),
            "seconds": round(seconds, 2),
            **checkpoint,
            "batch_tokens": batch_tokens,
            "logits_chunk": logits_chunk,
            "num_documents_setting": settings.num_documents,
        }
    )
    return losses


def _free_accelerator_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- checks ------------------------------------------------------------------------------------


def _expected_tokens(context, pile_canonical: dict, settings: LossSettings) -> tuple[int, int]:
    model_name, _ = model_and_step(context)
    corpus = _corpus(pile_canonical)
    num_documents = settings.documents_for(model_name, corpus.num_documents)
    return num_documents, int(corpus.starts[num_documents])


@dg.asset_check(
    asset=pile_losses,
    partitions_def=checkpoint_partitions,
    additional_ins={"pile_canonical": dg.AssetIn("pile_canonical")},
    required_resource_keys={"loss_settings"},
    blocking=True,
    description="The loss table has one float32 entry per predictable token of the first N documents "
    "(N from loss_settings), so canonical indices line up.",
)
def pile_losses_length(context: dg.AssetCheckExecutionContext, pile_losses: np.ndarray, pile_canonical: dict):
    num_documents, expected = _expected_tokens(context, pile_canonical, context.resources.loss_settings)
    passed = pile_losses.ndim == 1 and len(pile_losses) == expected and pile_losses.dtype == np.float32
    return dg.AssetCheckResult(
        passed=bool(passed),
        metadata={"length": int(pile_losses.shape[0]) if pile_losses.ndim else 0, "expected_length": expected,
                  "num_documents": num_documents, "dtype": str(pile_losses.dtype), "ndim": int(pile_losses.ndim)},
        description=None if passed else (
            f"pile_losses has shape {pile_losses.shape} {pile_losses.dtype}; expected float32 [{expected}] "
            f"(predictable tokens of the first {num_documents} documents)"),
    )


@dg.asset_check(
    asset=pile_losses,
    partitions_def=checkpoint_partitions,
    blocking=True,
    description="Every loss is finite and ≥ 0 (a cross-entropy can be neither NaN, infinite nor negative).",
)
def pile_losses_finite(context: dg.AssetCheckExecutionContext, pile_losses: np.ndarray):
    values = np.asarray(pile_losses, dtype=np.float64)
    bad = ~np.isfinite(values) | (values < 0)
    num_bad = int(bad.sum())
    first = int(np.flatnonzero(bad)[0]) if num_bad else None
    return dg.AssetCheckResult(
        passed=num_bad == 0,
        metadata={"bad_values": num_bad, "nan": int(np.isnan(values).sum()), "first_bad_index": first},
        description=None if num_bad == 0 else f"{num_bad:,} losses are NaN, infinite or negative (first at canonical index {first})",
    )


@dg.asset_check(
    asset=pile_losses,
    partitions_def=checkpoint_partitions,
    required_resource_keys={"loss_settings"},
    blocking=False,
    description="At step0 (random initialization) the mean loss should be about ln(vocab) ≈ 10.83 nats; "
    "a large difference suggests the hub served other weights for this revision (a known Pythia issue). "
    "Warns; other steps pass trivially.",
)
def pile_losses_step0_sanity(context: dg.AssetCheckExecutionContext, pile_losses: np.ndarray):
    _, step = model_and_step(context)
    expected = math.log(PYTHIA_VOCAB)
    if step != "step0":
        return dg.AssetCheckResult(passed=True, metadata={"applies": False, "step": step})
    values = np.asarray(pile_losses, dtype=np.float64)
    values = values[np.isfinite(values)]
    mean = float(values.mean()) if len(values) else float("nan")
    tolerance = context.resources.loss_settings.step0_tolerance_nats
    passed = bool(abs(mean - expected) <= tolerance)
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"applies": True, "mean_loss_nats": mean, "expected_nats": expected, "tolerance_nats": tolerance},
        description=None if passed else (
            f"step0 mean loss {mean:.3f} nats is not within {tolerance} of ln({PYTHIA_VOCAB}) = {expected:.3f}: "
            "these may not be the initialization weights"),
    )


# -- induction filters -------------------------------------------------------------------------


@dg.asset(
    group_name="losses",
    code_version="1",
    description=(
        "Induction filters: per predictable token of the whole pile_canonical, whether plain copying "
        "could predict it (the original's evaluate_pile_present_*_filter.py). `present_trigram` (the "
        "paper's filter): token i ≥ 2 of a document whose trigram (t[i−2], t[i−1], t[i]) already "
        "occurred earlier in the same document; `present_bigram`: same with (t[i−1], t[i]). The first "
        "predictable token of a document is never flagged. Directory "
        "`<cache>/corpus/induction_filters/`: `present_trigram.npy`, `present_bigram.npy`, bool [G] "
        "over the canonical index; their first entries line up with any pile_losses table."
    ),
)
def induction_filters(context: dg.AssetExecutionContext, pile_canonical: dict) -> dict:
    corpus = _corpus(pile_canonical)
    total = len(corpus.ids)
    context.log.info(f"induction filters over {total:,} tokens, {corpus.num_documents:,} documents")
    started = time.perf_counter()
    last_log = [started]

    def progress(done: int) -> None:
        now = time.perf_counter()
        if now - last_log[0] >= 10:
            last_log[0] = now
            context.log.info(f"filters: {done:,}/{total:,} tokens of the current pass")

    flags = compute_induction_filters(corpus, progress=progress)
    seconds = time.perf_counter() - started
    context.add_output_metadata(
        {
            "num_tokens": corpus.num_predictable,
            "num_documents": corpus.num_documents,
            "fraction_present_trigram": float(flags["present_trigram"].mean()) if corpus.num_predictable else 0.0,
            "fraction_present_bigram": float(flags["present_bigram"].mean()) if corpus.num_predictable else 0.0,
            "seconds": round(seconds, 2),
            "tokens_per_second": round(total / max(seconds, 1e-9)),
        }
    )
    return flags


@dg.asset_check(
    asset=induction_filters,
    additional_ins={"pile_canonical": dg.AssetIn("pile_canonical")},
    blocking=True,
    description="Both flag arrays are bool with one entry per predictable token of pile_canonical.",
)
def induction_filters_length(context: dg.AssetCheckExecutionContext, induction_filters: dict, pile_canonical: dict):
    expected = _corpus(pile_canonical).num_predictable
    problems = []
    for name in ("present_trigram", "present_bigram"):
        flags = induction_filters.get(name)
        if flags is None:
            problems.append(f"{name} is missing")
        elif flags.ndim != 1 or len(flags) != expected or flags.dtype != np.bool_:
            problems.append(f"{name} has shape {flags.shape} {flags.dtype}, expected bool [{expected}]")
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"expected_length": expected,
                  **{f"{k}_length": int(len(v)) for k, v in induction_filters.items() if hasattr(v, "__len__")}},
        description="; ".join(problems) or None,
    )
