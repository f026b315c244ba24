"""The embedding model's transformer run by OpenVINO with int8 weights and activations.

Why: on a CPU the fp32 transformer is bound by its matrix products (torch and OpenVINO fp32 run it at
the same speed here), and embedding is the whole cost of indexing. Quantized to int8 (NNCF
post-training quantization, transformer preset), it runs 2.3-2.6x faster on CPUs with VNNI, with
vectors at cosine ~0.996 to fp32 and retrieval unchanged (``benchmarks/README.md``).

Only the transformer is swapped: tokenisation, batching, pooling and normalisation stay the
sentence-transformers model's own. The converted, quantized model is made once per model, OpenVINO
and NNCF version (~20 s), calibrated on text that ships with every Python (its own documentation,
in ``pydoc_data``), and cached as OpenVINO IR under :func:`cache_dir`; later loads take ~0.3 s.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.metadata
import inspect
import io
import logging
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

__all__ = ["cache_dir", "quantized_transformer", "use_openvino"]

log = logging.getLogger("streamrag.embedding")
_RECIPE = "nncf-transformer-ptq-pydoc128-v1"  # change when the conversion or calibration changes
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def cache_dir() -> Path:
    """Where converted models are kept: ``$STREAMRAG_CACHE``, else ``$XDG_CACHE_HOME/streamrag``,
    else ``~/.cache/streamrag``."""
    if os.environ.get("STREAMRAG_CACHE"):
        return Path(os.environ["STREAMRAG_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "streamrag"


def _calibration_texts(n: int = 128, words: int = 150) -> list[str]:
    """English prose with code and symbols, present wherever Python is: the activation ranges the
    int8 model is calibrated on (measured as good as PDF text for retrieval, ``benchmarks/README.md``)."""
    from pydoc_data.topics import topics

    stream = " ".join(topics[k] for k in sorted(topics)).split()
    return [" ".join(stream[i : i + words]) for i in range(0, len(stream), words)][:n]


def _key(hf_model: Any) -> str:
    """A digest of the weights, the config and the tools that trace, convert and quantize them."""
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in sorted(hf_model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype
    digest.update(hf_model.config.to_json_string().encode())
    for tool in ("openvino", "nncf", "torch", "transformers"):
        digest.update(importlib.metadata.version(tool).encode())
    digest.update(_RECIPE.encode())
    return digest.hexdigest()


def quantized_transformer(st_model: Any) -> Path:
    """The int8 OpenVINO IR of ``st_model``'s transformer, converted and quantized on first use."""
    hf_model = st_model[0].auto_model
    name = f"{type(hf_model).__name__}-{_key(hf_model)}"
    target = cache_dir() / "openvino" / name
    xml = target / "model.xml"
    if xml.is_file():
        return xml
    lock = FileLock(f"{target}.lock")  # processes starting together quantize once
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as exc:  # an unwritable cache (read-only home, a file in the way): this process only
        scratch = Path(tempfile.mkdtemp(prefix="streamrag-model-"))
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        log.warning(
            "cannot keep the int8 model in %s (%s); making it for this process only. "
            "Set STREAMRAG_CACHE to a writable directory to make it once.",
            target.parent,
            exc,
        )
        _quantize(st_model, scratch / name)
        return scratch / name / "model.xml"
    try:
        if not xml.is_file():
            _quantize(st_model, target)
    finally:
        lock.release()
    return xml


def _quantize(st_model: Any, target: Path) -> None:
    log.info("making the int8 model (once, ~20 s) in %s", target.parent)
    logging.getLogger("nncf").setLevel(logging.ERROR)
    # quiet: NNCF draws progress bars on stdout (a command's --json output) and tracing warns; both
    # are process-wide, so another thread's prints are swallowed too, for these ~20 s, once
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        _convert_and_quantize(st_model, target)


def _convert_and_quantize(st_model: Any, target: Path) -> None:
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)

    module = st_model[0]
    accepted = inspect.signature(module.auto_model.forward).parameters

    def inputs(texts: list[str]) -> dict[str, Any]:
        features = module.preprocess(texts)
        return {k: features[k] for k in _INPUTS if k in features and k in accepted}

    with torch.inference_mode():
        model = ov.convert_model(module.auto_model.eval(), example_input=inputs(["a b c", "d"]))
    dataset = nncf.Dataset(_calibration_texts(), lambda text: {k: v.numpy() for k, v in inputs([text]).items()})
    quantized = nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=128)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        ov.save_model(quantized, scratch / "model.xml")
        scratch.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
        os.replace(scratch, target)  # atomic: a crash leaves no half-written model behind
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _OpenVINOTransformer(torch.nn.Module):
    """Stands in for the Hugging Face model inside sentence-transformers' ``Transformer`` module:
    called with the tokenised batch, returns ``last_hidden_state`` computed by OpenVINO."""

    def __init__(self, xml: Path, config: Any, threads: int) -> None:
        import openvino as ov

        super().__init__()
        core = ov.Core()
        model = core.read_model(xml)
        settings: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        try:  # OpenVINO keeps the model compiled for this CPU there: a load takes 0.1 s, not 0.45
            self.compiled = core.compile_model(model, "CPU", {**settings, "CACHE_DIR": str(xml.parent / "compiled")})
        except RuntimeError:  # a cache this user cannot write
            self.compiled = core.compile_model(model, "CPU", settings)
        self.names = [port.get_any_name() for port in self.compiled.inputs]
        self.config = config
        self._local = threading.local()  # one infer request per thread: requests are not thread-safe

    def forward(self, **features: Any) -> dict[str, torch.Tensor]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        if "token_type_ids" in self.names and "token_type_ids" not in features:  # one segment: all zeros
            features["token_type_ids"] = torch.zeros_like(features["input_ids"])
        feed = {n: features[n].numpy() for n in self.names}
        hidden = request.infer(feed)[self.compiled.output(0)]
        return {"last_hidden_state": torch.from_numpy(hidden.copy())}


def use_openvino(st_model: Any, *, threads: int | None = None) -> None:
    """Swap ``st_model``'s transformer for its int8 OpenVINO twin (in place; the fp32 weights are
    released). Everything else in the model is untouched."""
    module = st_model[0]
    xml = quantized_transformer(st_model)
    twin = _OpenVINOTransformer(xml, module.auto_model.config, threads or torch.get_num_threads())
    module.model = twin
    if module.auto_model is not twin:  # sentence-transformers >= 6: auto_model is the module's model
        raise RuntimeError("this sentence-transformers version does not let streamrag swap the transformer")
