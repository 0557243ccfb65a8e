"""The real CLIP BPE vocabulary, offline: find it and convert it to Hugging Face files.

OpenAI's CLIP tokenizer (used by every Stable Diffusion 1.x/2.x text encoder and every
CLIP model) is a byte-level BPE whose merges ship as ``bpe_simple_vocab_16e6.txt.gz``.
No model hub is reachable here, but the ``open_clip`` package carries that file; it is
installed with ``pip install --no-deps open-clip-torch`` only for that file, so this
module locates the package *without importing it* (its dependencies are absent) and
converts the merges the way CLIP's ``SimpleTokenizer`` does:

* ``merges = lines[1 : 49152 - 256 - 2 + 1]`` (48 894 merges; line 0 is a header),
* ``vocab = bytes_to_unicode() values`` (256) ``+ the same with "</w>"`` (256)
  ``+ "".join(merge) for each merge + ["<|startoftext|>", "<|endoftext|>"]``,

49 408 tokens in all, written as ``vocab.json`` (token -> id) and ``merges.txt``
(``#version: 0.2`` header, one ``"a b"`` pair a line), which is what
``transformers.CLIPTokenizer`` reads. The result reproduces the well-known ids, e.g.
``"a photo of a dog"`` -> ``[49406, 320, 1125, 539, 320, 1929, 49407]``.

>>> vocab, merges = clip_vocab_and_merges()
>>> len(vocab), len(merges), vocab["<|startoftext|>"], vocab["<|endoftext|>"], vocab["dog</w>"]
(49408, 48894, 49406, 49407, 1929)
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from functools import lru_cache
from pathlib import Path

#: File name of CLIP's BPE merges inside the ``open_clip`` package.
BPE_FILENAME = "bpe_simple_vocab_16e6.txt.gz"

#: Vocabulary size of the CLIP tokenizer (256 bytes x 2 + 48 894 merges + 2 special tokens).
CLIP_VOCAB_SIZE = 49408

#: Context length of CLIP's text encoder (also the tokenizer's ``model_max_length``).
CLIP_MAX_LENGTH = 77

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"

_INSTALL_HINT = (
    "the CLIP BPE vocabulary ships with the open_clip package; install it without its "
    "dependencies: pip install --no-deps open-clip-torch"
)


def find_clip_bpe() -> Path:
    """Path of ``bpe_simple_vocab_16e6.txt.gz`` inside the installed ``open_clip`` package.

    The package is located with :func:`importlib.util.find_spec` and never imported
    (importing it would need torchvision, timm, ... which are not installed).
    Raises :class:`FileNotFoundError` naming ``pip install --no-deps open-clip-torch``
    when the package or the file is absent.
    """
    try:
        spec = importlib.util.find_spec("open_clip")
    except (ImportError, ValueError):  # pragma: no cover - broken installs
        spec = None
    dirs: list[Path] = []
    if spec is not None:
        if spec.submodule_search_locations:
            dirs.extend(Path(p) for p in spec.submodule_search_locations)
        elif spec.origin:  # pragma: no cover - a package always has search locations
            dirs.append(Path(spec.origin).parent)
    for d in dirs:
        candidate = d / BPE_FILENAME
        if candidate.is_file():
            return candidate
    where = f" (open_clip found at {', '.join(map(str, dirs))}, but without {BPE_FILENAME})" if dirs else ""
    raise FileNotFoundError(f"CLIP BPE vocabulary {BPE_FILENAME} not found{where}: {_INSTALL_HINT}")


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible map from the 256 byte values to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


@lru_cache(maxsize=4)
def _convert(bpe_path: str) -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    with gzip.open(bpe_path, "rb") as fh:
        lines = fh.read().decode("utf-8").split("\n")
    merges = tuple(tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1])
    if len(merges) != 49152 - 256 - 2 or any(len(m) != 2 for m in merges):
        raise ValueError(f"{bpe_path} does not look like CLIP's BPE merges file ({len(merges)} merge lines)")
    base = list(bytes_to_unicode().values())
    tokens = base + [v + "</w>" for v in base] + ["".join(m) for m in merges] + [BOS_TOKEN, EOS_TOKEN]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE:  # pragma: no cover - guards a corrupted file
        raise ValueError(f"{bpe_path} gives {len(vocab)} distinct tokens, expected {CLIP_VOCAB_SIZE}")
    return vocab, merges  # type: ignore[return-value]


def clip_vocab_and_merges(bpe_path: str | Path | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's ``(vocab token -> id, merges)`` converted from the BPE file (default: :func:`find_clip_bpe`)."""
    path = Path(bpe_path) if bpe_path is not None else find_clip_bpe()
    vocab, merges = _convert(str(path))
    return dict(vocab), list(merges)


def write_clip_vocab(out_dir: str | Path, bpe_path: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``vocab.json`` and ``merges.txt`` (Hugging Face layout) into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocab_and_merges(bpe_path)
    vocab_path, merges_path = out / "vocab.json", out / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")
    return vocab_path, merges_path


def build_clip_tokenizer(work_dir: str | Path, bpe_path: str | Path | None = None):
    """A real ``transformers.CLIPTokenizer`` read from ``vocab.json``/``merges.txt`` written into ``work_dir``.

    ``model_max_length`` is CLIP's 77-token context, as in the released tokenizers.
    """
    from transformers import CLIPTokenizer

    vocab_path, merges_path = write_clip_vocab(work_dir, bpe_path)
    return CLIPTokenizer(
        vocab=str(vocab_path),
        merges=str(merges_path),
        model_max_length=CLIP_MAX_LENGTH,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
    )


__all__ = [
    "BPE_FILENAME",
    "CLIP_MAX_LENGTH",
    "CLIP_VOCAB_SIZE",
    "build_clip_tokenizer",
    "bytes_to_unicode",
    "clip_vocab_and_merges",
    "find_clip_bpe",
    "write_clip_vocab",
]
