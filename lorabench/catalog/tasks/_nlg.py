"""Declarations shared by the generation tasks (GSM8K, HumanEval): their params bases and the
paper's NLG defaults (implemented in `lorabench.tasks.nlg`)."""

from __future__ import annotations

from pydantic import Field

from lorabench.catalog.task import HubDataset, TaskDefaults, TaskParams

# Every projection of a Llama block, as the LoRA-GA and PiSSA MetaMathQA recipes adapt.
LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# The paper's NLG setting: Llama-3.1-8B-Base, 100k training rows, batch 64, length 1024, cosine.
PAPER_NLG_DEFAULTS = TaskDefaults(
    model="meta-llama/Llama-3.1-8B",
    targets=LLAMA_TARGETS,
    max_length=1024,
    batch_size=64,
    epochs=1,
    schedule="cosine",
    train_size=100_000,
    eval_size=None,
)


class GenerationParams(TaskParams):
    """Settings every generation task has."""

    max_new_tokens: int = Field(512, gt=0)
    eval_batch_size: int = Field(16, gt=0)
    # A JSONL file that each evaluation appends its prompts, completions and scores to.
    dump_generations: str | None = None
    # Loss batches without padding where the model keeps packed examples apart, else padded
    # rows in length groups; false: padded rows as before. The loss is the same either way
    # (to rounding). Jobs that leave it unset keep their hash (task_params hash as given).
    padding_free: bool = True


class InstructionDataParams(GenerationParams):
    """A training source with one instruction and one response field per row.

    `data` is a hub name or a local JSON/JSONL/Parquet/CSV file, hub-layout folder or
    `save_to_disk` folder (see `lorabench.tasks.sources.load_split`).
    """

    data: str
    data_config: str | None = None
    data_split: str = "train"
    query_field: str = "query"
    response_field: str = "response"

    def hub_datasets(self, task: str) -> tuple[HubDataset, ...]:
        return (HubDataset(self.data, self.data_config),)
