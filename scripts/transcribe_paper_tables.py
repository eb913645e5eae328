"""Write lorabench/report/paper/*.csv from the HTML tables in the paper's text (run once).

    python scripts/transcribe_paper_tables.py PAPER.txt lorabench/report/paper

The paper's text (LoRAFactory, "A Unified Study of LoRA Variants") carries Tables II-X as
HTML; this reads them with the standard library's HTML parser, so no number is typed by hand.
Tables XI-XIX (IC) and the NLG learning-rate results (Fig. 7) are not in the text as numbers.
"""

from __future__ import annotations

import csv
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

# The paper's method labels -> lorabench variant names.
VARIANTS = {
    "LoRA": "lora", "HiRA": "hira", "RaSA": "rasa", "RASA": "rasa", "AdaLoRA": "adalora",
    "MELoRA": "melora", "DenseLoRA": "denselora", "DENSELoRA": "denselora",
    "RandLoRA": "randlora", "RANDLoRA": "randlora", "ReLoRA": "relora", "DoRA": "dora",
    "RsLoRA": "rslora", "LoRA+": "lora-plus", "DeLoRA": "delora", "EVA": "eva",
    "PiSSA": "pissa", "LoRAGA": "lora-ga", "LoRA-GA": "lora-ga", "LoRA-One": "lora-one",
    "NZLoRA": "nzlora", "GOAT": "goat", "MoSLoRA": "moslora", "LoRAMoE": "loramoe",
    "AURORA": "aurora", "LoHA": "loha", "LoKr": "lokr", "LORAN": "loran",
}  # fmt: skip
GLUE_TASKS = {
    "SST-2": "glue-sst2", "CoLA": "glue-cola", "MNLI": "glue-mnli", "MRPC": "glue-mrpc",
    "QNLI": "glue-qnli", "QQP": "glue-qqp", "RTE": "glue-rte", "STS-B": "glue-stsb",
    "WNLI": "glue-wnli", "AVG": "glue-avg",
}  # fmt: skip
GLUE_LRS = (1e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3)  # Tables IV-X, in order


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell += data


def _write(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def overhead(table: list[list[str]]) -> list[list]:
    rows = []
    for label, params, time, memory in table[1:]:
        name = re.sub(r"\s*\[\d+\]$", "", label)
        checkpointing = "dagger" in name
        base = re.sub(r"\^\\dagger|_\{.*\}", "", name)
        setting = re.search(r"_\{(.*)\}", name)
        hours, minutes = re.fullmatch(r"(\d+)h(\d+)min", time).groups()
        pretty = base + ("†" if checkpointing else "") + (f" ({setting[1]})" if setting else "")
        rows.append([
            VARIANTS[base], pretty, str(checkpointing).lower(), setting[1] if setting else "",
            params.removesuffix("M"), int(hours) * 60 + int(minutes), memory.removesuffix("MB"),
        ])  # fmt: skip
    return rows


def highrank(table: list[list[str]]) -> list[list]:
    lrs = [float(x) for x in table[1]]
    rows = []
    for label, *values in table[2:]:
        alpha = {"LoRA†": 256, "LoRA‡": 16}.get(label, 16)
        variant = VARIANTS[label.rstrip("†‡")]
        for i, value in enumerate(values):
            task = "gsm8k" if i < 6 else "humaneval"
            rows.append([task, variant, label, 128, alpha, lrs[i], value])
    return rows


def glue(tables: list[list[list[str]]]) -> list[list]:
    rows = []
    for lr, table in zip(GLUE_LRS, tables, strict=True):
        header = table[0][1:]
        for label, *values in table[1:]:
            if not values:  # a family heading row
                continue
            for column, value in zip(header, values, strict=True):
                rows.append([GLUE_TASKS[column], VARIANTS[label], lr, value])
    return rows


def main(paper: Path, out: Path) -> None:
    parser = _Tables()
    parser.feed(paper.read_text())
    tables = parser.tables  # [0] is Table I (notation)
    _write(out / "overhead.csv",
           ["variant", "label", "adapter_checkpointing", "setting", "params_m", "time_min",
            "memory_mb"], overhead(tables[1]))  # fmt: skip
    _write(out / "highrank.csv", ["task", "variant", "label", "rank", "alpha", "lr", "value"],
           highrank(tables[2]))  # fmt: skip
    _write(out / "glue.csv", ["task", "variant", "lr", "value"], glue(tables[3:10]))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
