"""Read a W&B offline run back from its `.wandb` file, with W&B's own record definitions.

The file is W&B's transaction log: a 7-byte header (":W&B", a magic number, a version), then
LevelDB's log format (32 KiB blocks; each chunk a 7-byte header of checksum, length and type
FULL/FIRST/MIDDLE/LAST), each record a `wandb_internal_pb2.Record` protobuf. W&B ships no
Python reader for it any more (`wandb sync` reads it in its Go service), so the tests read it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    folder: Path
    run_id: str = ""
    name: str = ""
    group: str = ""
    project: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per step, "_step" in it
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None


def records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, _magic, _version = struct.unpack("<4sHB", data[:HEADER])
    assert ident == b":W&B", ident
    found, index, parts = [], HEADER, b""
    while index + HEADER <= len(data):
        left = BLOCK - index % BLOCK
        if left < HEADER:  # the rest of a block too short for a header is padding
            index += left
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[index : index + HEADER])
        chunk = data[index + HEADER : index + HEADER + length]
        index += HEADER + length
        if kind == 0 and length == 0:  # zero padding at the end of a block
            index += BLOCK - index % BLOCK if index % BLOCK else 0
            continue
        if kind in (FULL, FIRST):
            parts = chunk
        else:
            parts += chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            found.append(record)
    return found


def _value(item: Any) -> Any:
    key = ".".join(item.nested_key) if item.nested_key else item.key
    return key, json.loads(item.value_json)


def read_run(folder: Path) -> OfflineRun:
    """The run in one offline run folder (`offline-run-<time>-<id>`)."""
    (path,) = folder.glob("run-*.wandb")
    run = OfflineRun(folder=folder)
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.name = record.run.run_id, record.run.display_name
            run.group, run.project = record.run.run_group, record.run.project
            run.config.update(dict(_value(i) for i in record.run.config.update))
        elif kind == "config":
            run.config.update(dict(_value(i) for i in record.config.update))
        elif kind == "history":
            run.history.append(dict(_value(i) for i in record.history.item))
        elif kind == "summary":
            run.summary.update(dict(_value(i) for i in record.summary.update))
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def offline_runs(wandb_dir: Path) -> list[OfflineRun]:
    """Every offline run under a W&B folder, oldest first."""
    return [read_run(f) for f in sorted(wandb_dir.glob("wandb/offline-run-*")) if f.is_dir()]
