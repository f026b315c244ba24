"""The embedder's backends: the int8 OpenVINO transformer (the default) against the fp32 model as
published, and the cache that makes the int8 model once."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamrag import load_embedder

QUANTIZE_ONCE = """
import sys, nncf, numpy as np
real = nncf.quantize
def counted(*args, **kwargs):
    with open(sys.argv[1], "a") as marks:
        marks.write("quantized\\n")
    return real(*args, **kwargs)
nncf.quantize = counted
from streamrag import load_embedder
vector = load_embedder().get_text_embedding("The Causby case was about airplanes over a farm.")
print(np.round(np.asarray(vector), 4).tolist())
"""


@pytest.fixture(scope="module")
def fp32() -> object:
    return load_embedder(backend="torch")


def test_int8_vectors_follow_the_fp32_model_on_real_pages(captures: list[Path], embedder, fp32) -> None:  # type: ignore[no-untyped-def]
    texts = []
    for capture in captures:
        pages = [m.get("text") or "" for m in json.loads((capture / "stream.json").read_text())]
        texts += [p[:1200] for p in pages if p.strip()]
    texts += ["x", "Short line.", "$E=mc^2$"]  # short inputs padded in a batch with long ones
    int8 = np.asarray(embedder.get_text_embedding_batch(texts))
    ref = np.asarray(fp32.get_text_embedding_batch(texts))
    cosine = (int8 * ref).sum(1)
    assert np.allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-4)
    assert cosine.min() > 0.97 and cosine.mean() > 0.99, (cosine.min(), cosine.mean())
    assert cosine.max() < 0.99999  # the int8 model computed these, not the fp32 one
    alone = np.asarray([embedder.get_text_embedding(t) for t in texts[-3:]])  # padding changes nothing
    assert np.allclose(alone, int8[-3:], atol=2e-3)
    # the same nearest page for each page's own opening words, under both
    queries = [t[:80] for t in texts[:-3]]
    q8 = np.asarray([embedder.get_query_embedding(q) for q in queries])
    q32 = np.asarray([fp32.get_query_embedding(q) for q in queries])
    agree = ((q8 @ int8[:-3].T).argmax(1) == (q32 @ ref[:-3].T).argmax(1)).mean()
    assert agree >= 0.95, agree


def test_threads_embedding_at_once_get_the_vectors_they_would_get_alone(captures: list[Path], embedder) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    from streamrag._openvino import _OpenVINOTransformer

    assert isinstance(embedder._model[0].auto_model, _OpenVINOTransformer)
    pages = [m.get("text") or "" for m in json.loads((captures[0] / "stream.json").read_text())]
    batches = [[p[:600] for p in pages[k::4] if p.strip()] for k in range(4)]
    alone = [np.asarray(embedder.get_text_embedding_batch(b)) for b in batches]
    with ThreadPoolExecutor(4) as pool:  # one OpenVINO infer request per thread
        together = list(pool.map(lambda b: np.asarray(embedder.get_text_embedding_batch(b)), batches * 3))
    for k, got in enumerate(together):
        assert np.allclose(got, alone[k % 4], atol=1e-5)


def test_processes_starting_together_quantize_once_and_share_the_cache(tmp_path: Path) -> None:
    env = {**os.environ, "STREAMRAG_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    marks = tmp_path / "marks"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", QUANTIZE_ONCE, str(marks)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert marks.read_text().splitlines() == ["quantized"]
    assert outs[0][0] == outs[1][0]  # the one quantized and the one that waited read the same model
    entries = list((tmp_path / "cache" / "openvino").iterdir())
    models = [e for e in entries if e.is_dir()]
    assert len(models) == 1 and (models[0] / "model.xml").is_file()
    assert not [e for e in entries if e.name.startswith(".tmp-")]  # no half-written model left behind


def test_an_unwritable_cache_makes_the_model_for_the_process_alone(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache would go")
    env = {**os.environ, "STREAMRAG_CACHE": str(blocked), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-c", QUANTIZE_ONCE, str(tmp_path / "marks")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "cannot keep the int8 model in" in run.stderr and "STREAMRAG_CACHE" in run.stderr
    assert (tmp_path / "marks").read_text().splitlines() == ["quantized"]
    assert len(json.loads(run.stdout)) == 384  # the vector, and nothing else, on stdout
    assert blocked.read_text() == "a file where the cache would go"


def test_the_cache_key_follows_the_weights(fp32) -> None:  # type: ignore[no-untyped-def]
    import torch

    from streamrag._openvino import _key

    model = fp32._model[0].auto_model
    changed = copy.deepcopy(model)
    with torch.no_grad():
        next(changed.parameters())[0, 0] += 1e-3
    assert _key(model) == _key(copy.deepcopy(model))
    assert _key(changed) != _key(model)


def test_an_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown embedding backend 'onnx'"):
        load_embedder(backend="onnx")  # type: ignore[arg-type]
