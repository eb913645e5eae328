"""Load a dataset split from a Hugging Face name or a local path, through one code path.

A local folder laid out like a hub repository (data files plus a README with `configs`)
goes through the same `datasets.load_dataset` call as the hub name, so a tiny fixture in
the real format exercises the real loader. Also accepted: a single JSON/JSONL/Parquet/CSV
file (all of it is the split asked for) and a folder written by `save_to_disk`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorabench.errors import DataSourceError

_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def is_local(source: str) -> bool:
    return Path(source).expanduser().exists()


def load_split(source: str, split: str, *, config: str | None = None) -> Any:
    """The `datasets.Dataset` for `split` of `source` (hub name, file or folder)."""
    import datasets

    path = Path(source).expanduser()
    try:
        if path.is_file():
            builder = _FILE_BUILDERS.get(path.suffix.lower())
            if builder is None:
                known = ", ".join(sorted(_FILE_BUILDERS))
                raise DataSourceError(f"{source}: unsupported file type; expected one of {known}")
            return datasets.load_dataset(builder, data_files=str(path), split="train")
        if path.is_dir() and _saved_to_disk(path):
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise DataSourceError(
                        f"{source}: no split {split!r}; it has {', '.join(loaded)}"
                    )
                return loaded[split]
            return loaded
        return datasets.load_dataset(str(path) if path.is_dir() else source, config, split=split)
    except DataSourceError:
        raise
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as error:
        where = f" (config {config!r})" if config else ""
        message = f"cannot load split {split!r} of {source!r}{where}: {error}"
        raise DataSourceError(message) from None


def _saved_to_disk(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()
