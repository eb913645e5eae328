"""Tiny image datasets and a tiny CLIP, written in the real Hugging Face formats."""

from __future__ import annotations

import json
from pathlib import Path

import torch

IMAGE_SIZE = 32


def class_colour(label: int) -> tuple[int, int, int]:
    """A distinct solid colour per class, so a few steps can already separate them."""
    return ((53 * label + 40) % 256, (97 * label + 200) % 256, (151 * label + 90) % 256)


def make_image(label: int, index: int, size: tuple[int, int] = (40, 36)):
    """A class-coloured RGB image with a per-image stripe; not square, so the crop matters."""
    from PIL import Image

    image = Image.new("RGB", size, class_colour(label))
    for x in range(size[0]):
        image.putpixel((x, index % size[1]), (255, 255, 255))
    return image


def labelled_rows(classes: int, per_class: int) -> list[int]:
    return [label for _ in range(per_class) for label in range(classes)]


def _dataset(names: list[str], labels: list[int], image_column: str, label_column: str):
    import datasets

    features = datasets.Features(
        {image_column: datasets.Image(), label_column: datasets.ClassLabel(names=names)}
    )
    images = [make_image(y, i) for i, y in enumerate(labels)]
    return datasets.Dataset.from_dict({image_column: images, label_column: labels}, features)


def write_hub_dataset(
    root: Path,
    *,
    names: list[str],
    splits: dict[str, int],
    config: str = "default",
    image_column: str = "image",
    label_column: str = "label",
) -> Path:
    """A folder laid out like a hub image dataset: one parquet per split under the config's
    folder (data/ for "default"), README front matter with dataset_info and configs."""
    folder = "data" if config == "default" else config
    (root / folder).mkdir(parents=True)
    split_rows = ""
    for split, per_class in splits.items():
        labels = labelled_rows(len(names), per_class)
        dataset = _dataset(names, labels, image_column, label_column)
        path = root / folder / f"{split}-00000-of-00001.parquet"
        dataset.to_parquet(str(path))
        split_rows += (
            f"  - name: {split}\n    num_bytes: {path.stat().st_size}\n"
            f"    num_examples: {len(labels)}\n"
        )
    class_names = "".join(f"          '{i}': {json.dumps(n)}\n" for i, n in enumerate(names))
    data_files = "".join(f"  - split: {split}\n    path: {folder}/{split}-*\n" for split in splits)
    (root / "README.md").write_text(
        "---\ndataset_info:\n"
        f"- config_name: {config}\n  features:\n"
        f"  - name: {image_column}\n    dtype: image\n"
        f"  - name: {label_column}\n    dtype:\n      class_label:\n        names:\n"
        f"{class_names}  splits:\n{split_rows}"
        f"configs:\n- config_name: {config}\n  data_files:\n{data_files}---\n"
    )
    return root


def write_imagefolder(root: Path, *, names: list[str], splits: dict[str, int]) -> Path:
    """<root>/<split>/<class>/<n>.png, the layout datasets reads as `imagefolder`."""
    for split, per_class in splits.items():
        for label, name in enumerate(names):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                make_image(label, i).save(root / split / name / f"{i}.png")
    return root


def _tokenizer(words: list[str]):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<|startoftext|>", "<|endoftext|>", "[UNK]"]
    vocab = {token: i for i, token in enumerate(specials + sorted(set(words)))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", 1)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="[UNK]",
    )


def write_tiny_clip(folder: Path, *, words: list[str], vision_only: bool = False) -> Path:
    """A random 2-layer CLIP (32 px, 8 px patches) saved with save_pretrained, with its image
    processor and a word-level tokenizer beside it; `vision_only` saves CLIPVisionModel."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "vocab_size": 3 + len(set(words)),
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": 8,
        },
        projection_dim=8,
    )
    clip = CLIPModel(config)
    (clip.vision_model if vision_only else clip).save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    ).save_pretrained(folder)
    if not vision_only:
        _tokenizer(words).save_pretrained(folder)
    return folder
