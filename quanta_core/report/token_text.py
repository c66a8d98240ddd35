"""The raw bytes behind each token of a byte-level BPE tokenizer (GPT-2 / GPT-NeoX-20B).

Byte-level BPE vocabularies spell every byte as a printable character (GPT-2's
``bytes_to_unicode`` table: ``Ġ`` is the space byte 0x20, ``Ċ`` the newline 0x0A, …). A token can
hold part of a multi-byte UTF-8 character, so text must be decoded from the bytes of a *run* of
tokens, never token by token. Added tokens (``<|endoftext|>``, GPT-NeoX's runs of spaces) are
stored as plain text and are encoded as UTF-8.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character table (256 entries)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    """Inverse of :func:`bytes_to_unicode`."""
    return {c: b for b, c in bytes_to_unicode().items()}


def vocab_string_to_bytes(token: str) -> bytes:
    """The bytes a byte-level BPE vocabulary string stands for (``"Ġthe"`` → ``b" the"``)."""
    table = unicode_to_bytes()
    try:
        return bytes(table[c] for c in token)
    except KeyError as e:
        raise ValueError(f"{token!r} is not a byte-level BPE vocabulary string (char {e.args[0]!r})") from None


def token_bytes_table(tokenizer) -> list[bytes]:
    """Raw bytes of every token id of a Hugging Face ``tokenizers.Tokenizer`` (index = id;
    ``b""`` for ids the tokenizer does not define)."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    added = {t.content for t in tokenizer.get_added_tokens_decoder().values()}
    table = [b""] * (max(vocab.values()) + 1)
    for text, i in vocab.items():
        table[i] = text.encode("utf-8") if text in added else vocab_string_to_bytes(text)
    return table


WHITESPACE_MARKS = {"\n": "↵", "\t": "→", "\r": "␍", "\f": "␌", "\v": "␋", " ": "·", "\u00a0": "⍽"}
"""How the report shows whitespace in a token's label (``report.js.j2``'s ``appendText``, spaces shown)."""


def visible_text(text: str) -> str:
    """``text`` as the report labels a token: whitespace as :data:`WHITESPACE_MARKS` (space ·,
    newline ↵, tab →, no-break space ⍽), other control characters as ``\\uXXXX``. Still untrusted
    text: the page escapes it."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in WHITESPACE_MARKS:
            out.append(WHITESPACE_MARKS[ch])
        elif code < 0x20 or 0x7F <= code < 0xA0 or ch in "\u2028\u2029":
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)
