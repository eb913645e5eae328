"""The README.md model card every export writes: what was trained, how to load it, its scores.

Only what the user gave appears in it (the model name as planned, task parameters, the export's
own folder as a placeholder), never where lorabench resolved things on this machine.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from lorabench import __version__
from lorabench.catalog.task import get_task_info
from lorabench.config import JobConfig

FOLDER = "path/to/export"  # the card cannot know where the folder will live
EXPORT_RECORD = "lorabench_export.json"

PIPELINES = {"SEQ_CLS": "text-classification", "CAUSAL_LM": "text-generation"}
AUTO_CLASSES = {"SEQ_CLS": "ForSequenceClassification", "CAUSAL_LM": "ForCausalLM"}


@dataclass(frozen=True)
class CardScores:
    """A job's metrics at its best epoch, as `report` scores it by default."""

    epoch: int
    chosen_by: str  # "select": best on the held-out select split; "test": no select rows
    metric: str  # the metric that chose the epoch
    test: dict[str, float]
    select: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class JobRecord:
    """What the database knows about the exported job beyond its config."""

    job_id: int | None = None
    sweep: str | None = None
    state: str = "done"
    scores: CardScores | None = None


@dataclass(frozen=True)
class ExportFacts:
    """What one export wrote, for the card and `lorabench_export.json`."""

    format: str  # "peft" | "merged" | "native"
    step: int
    task_type: str | None  # PEFT's: "SEQ_CLS", "CAUSAL_LM", or None (another kind of model)
    labels: dict[str, Any] | None  # num_labels, id2label, label2id (classifiers only)


def export_record(cfg: JobConfig, facts: ExportFacts, job: JobRecord) -> dict[str, Any]:
    """The machine-readable twin of the card (`lorabench_export.json`)."""
    scores = job.scores
    return {
        "lorabench_version": __version__,
        "format": facts.format,
        "base_model": cfg.model,
        "task_type": facts.task_type,
        "labels": facts.labels,
        "job_id": job.job_id,
        "sweep": job.sweep,
        "state": job.state,
        "step": facts.step,
        "job": cfg.model_dump(mode="json"),
        "scores": None if scores is None else asdict(scores),
    }


def render_card(cfg: JobConfig, facts: ExportFacts, job: JobRecord) -> str:
    return "\n".join(
        [
            *_front_matter(cfg, facts),
            f"# {cfg.variant} on {cfg.task} ({cfg.model})",
            "",
            _provenance(cfg, facts, job),
            "",
            "## Load",
            "",
            *_load(cfg, facts),
            "",
            "## Scores",
            "",
            *_scores(cfg, job),
            "",
            "## Training configuration",
            "",
            f"Every field of the job (config hash `{cfg.config_hash}`):",
            "",
            "| field | value |",
            "|---|---|",
            *(
                f"| {name} | {_cell(value)} |"
                for name, value in cfg.model_dump(mode="json").items()
            ),
            "",
        ]
    )


def _front_matter(cfg: JobConfig, facts: ExportFacts) -> list[str]:
    lines = ["---"]
    if facts.format in ("peft", "merged"):
        lines.append(f"library_name: {'peft' if facts.format == 'peft' else 'transformers'}")
    lines += [f"base_model: {json.dumps(cfg.model)}", "tags:", "- lorabench", f"- {cfg.variant}"]
    if facts.task_type in PIPELINES and facts.format != "native":  # native needs lorabench
        lines.append(f"pipeline_tag: {PIPELINES[facts.task_type]}")
    return [*lines, "---", ""]


def _provenance(cfg: JobConfig, facts: ExportFacts, job: JobRecord) -> str:
    which = f"job {job.job_id} of sweep `{job.sweep}`" if job.job_id is not None else "a job"
    what = {
        "peft": "its adapter in PEFT's format",
        "merged": "the base model with the adapter merged into its weights",
        "native": "its adapter in lorabench's native format",
    }[facts.format]
    state = "" if job.state == "done" else f" The job was {job.state}: this is its last checkpoint."
    return (
        f"Trained by lorabench {__version__}, {which}; "
        f"this folder holds {what}, at step {facts.step}.{state}"
    )


def _load(cfg: JobConfig, facts: ExportFacts) -> list[str]:
    kind = facts.task_type
    if facts.format == "native":
        return [
            "```python",
            "import json, torch",
            "from lorabench.config import JobConfig",
            "from lorabench.train.loop import build_model",
            "from lorabench.variants.peft_export import load_native",
            f'saved = json.load(open("{FOLDER}/lorabench_adapter.json"))',
            'cfg = JobConfig(**saved["job"])',
            "torch.manual_seed(cfg.seed)  # frozen random bases come from the job's seed",
            "_, model, _ = build_model(cfg)",
            f'load_native(model, "{FOLDER}")',
            "```",
        ]
    if facts.format == "merged":
        auto = f"AutoModel{AUTO_CLASSES.get(kind, '')}"
        return [
            "A plain transformers model: no lorabench or PEFT needed.",
            "",
            "```python",
            f"from transformers import {auto}, AutoTokenizer",
            f'model = {auto}.from_pretrained("{FOLDER}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{FOLDER}")',
            "```",
        ]
    if kind == "SEQ_CLS":
        count = facts.labels["num_labels"] if facts.labels else "its"
        lines = [
            "PEFT builds the base from the base model's own config, which knows nothing of this "
            f"task's {count} labels: pass them (they are in `{EXPORT_RECORD}`), or loading fails "
            "with a size mismatch of the classifier.",
            "",
            "```python",
            "import json",
            "from peft import AutoPeftModelForSequenceClassification",
            f'labels = json.load(open("{FOLDER}/{EXPORT_RECORD}"))["labels"]',
            "# JSON keys are strings; transformers wants int ids here (config.json is converted)",
            'labels["id2label"] = {int(i): name for i, name in labels["id2label"].items()}',
            f'model = AutoPeftModelForSequenceClassification.from_pretrained("{FOLDER}", **labels)',
            "```",
        ]
    elif kind == "CAUSAL_LM":
        lines = [
            "```python",
            "from peft import AutoPeftModelForCausalLM",
            "from transformers import AutoTokenizer",
            f'model = AutoPeftModelForCausalLM.from_pretrained("{FOLDER}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{FOLDER}")',
            "```",
        ]
    else:
        lines = [
            "Build the base model as the task does, then:",
            "",
            "```python",
            "from peft import PeftModel",
            f'model = PeftModel.from_pretrained(base, "{FOLDER}")',
            "```",
        ]
    return [
        *lines,
        "",
        f"The base model is recorded as `{cfg.model}`, as the job named it: AutoPeftModel* "
        "loads it from the Hugging Face hub or cache (or that folder, for a local path). "
        "Where it is elsewhere, load it yourself and use "
        f'`PeftModel.from_pretrained(base, "{FOLDER}")`.',
    ]


def _scores(cfg: JobConfig, job: JobRecord) -> list[str]:
    scores = job.scores
    if scores is None:
        return [f"No scores: the job is {job.state} and wrote no metrics."]
    how = (
        f"chosen by `{scores.metric}` on the held-out select split"
        if scores.chosen_by == "select"
        else f"chosen by `{scores.metric}` on the test split (the job has no select split)"
    )
    lines = [
        f"Epoch {scores.epoch}, {how}; task `{cfg.task}`, primary metric "
        f"`{get_task_info(cfg.task).primary_metric}`.",
        "",
        "| metric | test | select |",
        "|---|---:|---:|",
    ]
    for name in sorted(set(scores.test) | set(scores.select)):
        lines.append(
            f"| {name} | {_number(scores.test.get(name))} | {_number(scores.select.get(name))} |"
        )
    return lines


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text.replace("|", "\\|")
