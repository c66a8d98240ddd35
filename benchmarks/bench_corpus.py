"""Corpus benchmark: stream + tokenize a Pile-format file, platform vs the original's loop.

The original (misc/create_pile_canonical.py) read every document and tokenized them one at a
time with the Hugging Face tokenizer. The platform streams the file in constant memory and
tokenizes in parallel batches. Prints documents/s, tokens/s, peak RSS and the ratio.

    .venv/bin/python benchmarks/bench_corpus.py [--documents 20000]
"""

import argparse
import resource
import tempfile
import time
from itertools import cycle, islice
from pathlib import Path

from quanta_core.corpus.canonical import build_canonical
from quanta_core.corpus.minipile import minipile_documents
from quanta_core.corpus.pile import read_pile, write_pile
from quanta_core.corpus.tokenizer import MAX_TOKENS, load_tokenizer


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def original_loop(path: Path, tokenizer, num_documents: int) -> int:
    """One document at a time, as the original script did."""
    tokens = 0
    for doc in read_pile(path, num_documents):
        tokens += len(tokenizer.encode(doc.text, add_special_tokens=False).ids[:MAX_TOKENS])
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=20_000)
    args = parser.parse_args()
    tokenizer = load_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synthetic.jsonl.zst"
        write_pile(path, islice(cycle(minipile_documents()), args.documents))
        print(f"synthetic Pile file: {args.documents:,} documents, {path.stat().st_size / 2**20:.1f} MiB compressed")

        rss0 = peak_rss_mib()
        t = time.perf_counter()
        n_read = sum(1 for _ in read_pile(path))
        read_s = time.perf_counter() - t
        print(f"stream only: {n_read / read_s:,.0f} docs/s; peak RSS grew {peak_rss_mib() - rss0:.0f} MiB")

        t = time.perf_counter()
        corpus = build_canonical(read_pile(path), tokenizer)
        ours = time.perf_counter() - t
        tokens = len(corpus.ids)
        print(f"platform:  {ours:6.2f} s  {tokens / ours:10,.0f} tokens/s  "
              f"({corpus.num_documents:,} docs, {tokens:,} tokens)")

        t = time.perf_counter()
        assert original_loop(path, tokenizer, args.documents) == tokens
        orig = time.perf_counter() - t
        print(f"original:  {orig:6.2f} s  {tokens / orig:10,.0f} tokens/s")
        print(f"speed-up:  {orig / ours:.2f}x")


if __name__ == "__main__":
    main()
