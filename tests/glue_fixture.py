"""Tiny GLUE data in the real nyu-mll/glue hub layout, and a tiny random RoBERTa beside it.

The folder holds what the hub repository holds: a README whose YAML lists `dataset_info`
(features, ClassLabel names) and `configs` (data files per split), and parquet files
`<config>/<split>-00000-of-00001.parquet` with the real column names and dtypes (`idx`
int32, ClassLabel int labels, STS-B float32 labels, -1 on the hidden test splits).
"""

from __future__ import annotations

import random
from pathlib import Path

from lorabench.tasks.glue import SPECS, GlueSpec

# fmt: off
WORDS = ("the", "cat", "dog", "sat", "ran", "on", "a", "mat", "big", "small", "red", "blue",
         "house", "tree", "is", "not", "very", "good", "bad", "film", "plot", "what", "why",
         "how", "when", "did", "it", "rain", "today", "man", "woman")
# fmt: on
# Rows per split; MNLI's two validation sets differ in size so a mix-up shows.
SIZES = {
    "train": 24,
    "validation": 8,
    "validation_matched": 8,
    "validation_mismatched": 6,
    "test": 4,
    "test_matched": 4,
    "test_mismatched": 4,
}


def splits(spec: GlueSpec) -> list[str]:
    if spec.config == "mnli":
        return ["train", "validation_matched", "validation_mismatched", "test_matched",
                "test_mismatched"]  # fmt: skip
    return ["train", "validation", "test"]


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))


def rows(spec: GlueSpec, split: str) -> dict[str, list]:
    """Columns of one split, in the hub's column order."""
    rng = random.Random(f"{spec.config}/{split}")
    n = SIZES[split]
    columns: dict[str, list] = {f: [_sentence(rng) for _ in range(n)] for f in spec.text_fields}
    if split.startswith("test"):
        columns["label"] = [-1.0 if spec.regression else -1] * n
    elif spec.regression:
        columns["label"] = [round(rng.uniform(0, 5), 2) for _ in range(n)]
    else:  # every class present, so metrics are defined
        columns["label"] = [i % spec.num_labels for i in range(n)]
        rng.shuffle(columns["label"])
    columns["idx"] = list(range(n))
    return columns


def features(spec: GlueSpec):  # noqa: ANN201
    import datasets

    label = (datasets.Value("float32") if spec.regression
             else datasets.ClassLabel(names=list(spec.label_names)))  # fmt: skip
    return datasets.Features(
        {**{f: datasets.Value("string") for f in spec.text_fields},
         "label": label, "idx": datasets.Value("int32")}
    )  # fmt: skip


def _readme(specs: tuple[GlueSpec, ...], num_bytes: dict[tuple[str, str], int]) -> str:
    info, configs = ["dataset_info:"], ["configs:"]
    for spec in specs:
        info += [f"- config_name: {spec.config}", "  features:"]
        for field in spec.text_fields:
            info += [f"  - name: {field}", "    dtype: string"]
        info.append("  - name: label")
        if spec.regression:
            info.append("    dtype: float32")
        else:
            info += ["    dtype:", "      class_label:", "        names:"]
            info += [f"          '{i}': {name}" for i, name in enumerate(spec.label_names)]
        info += ["  - name: idx", "    dtype: int32", "  splits:"]
        for split in splits(spec):
            info += [f"  - name: {split}", f"    num_bytes: {num_bytes[spec.config, split]}",
                     f"    num_examples: {SIZES[split]}"]  # fmt: skip
        configs += [f"- config_name: {spec.config}", "  data_files:"]
        for split in splits(spec):
            configs += [f"  - split: {split}", f"    path: {spec.config}/{split}-*"]
    return "---\n" + "\n".join(info + configs) + "\n---\n\n# GLUE (test fixture)\n"


def write_glue(root: Path, specs: tuple[GlueSpec, ...] = SPECS) -> Path:
    """Every config of `specs` in the hub layout under `root`; returns `root`."""
    import datasets

    num_bytes = {}
    for spec in specs:
        (root / spec.config).mkdir(parents=True, exist_ok=True)
        for split in splits(spec):
            table = datasets.Dataset.from_dict(rows(spec, split), features=features(spec))
            table.to_parquet(root / spec.config / f"{split}-00000-of-00001.parquet")
            num_bytes[spec.config, split] = table.data.nbytes
    (root / "README.md").write_text(_readme(specs, num_bytes))
    return root


def all_texts(specs: tuple[GlueSpec, ...] = SPECS) -> list[str]:
    return [t for spec in specs for split in splits(spec)
            for f in spec.text_fields for t in rows(spec, split)[f]]  # fmt: skip


def write_tiny_roberta(folder: Path, texts: list[str]) -> Path:
    """A random 2-layer RoBERTa (masked-LM checkpoint, like roberta-base) with a byte-level
    BPE tokenizer trained on `texts`, saved as `from_pretrained` expects a local folder."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=400, min_frequency=1, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])  # fmt: skip
    vocab_dir = folder / "bpe"
    vocab_dir.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(vocab_dir))
    tokenizer = RobertaTokenizerFast(
        vocab=str(vocab_dir / "vocab.json"), merges=str(vocab_dir / "merges.txt")
    )
    config = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=514, type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model_dir = folder / "roberta"
    RobertaForMaskedLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir
