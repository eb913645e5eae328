"""The shipped paper tables: shapes, and a dozen cells checked against the paper's text."""

import pytest

from lorabench.report.reference import PAPER_TABLES, paper_table
from lorabench.variants import variant_names


def test_table_shapes_match_the_papers_design():
    glue = paper_table("glue")
    assert len(glue) == 7 * 20 * 10  # 7 learning rates x 20 variants x (9 tasks + AVG)
    assert glue.groupby(["task", "variant", "lr"]).size().max() == 1
    assert sorted(glue["lr"].unique()) == [1e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3]
    assert len(paper_table("highrank")) == 5 * 2 * 6  # 5 settings x 2 tasks x 6 lrs
    assert len(paper_table("overhead")) == 19
    for name in PAPER_TABLES:
        assert set(paper_table(name)["variant"]) <= set(variant_names())


@pytest.mark.parametrize(
    ("task", "variant", "lr", "value"),
    [
        ("glue-sst2", "lora", 1e-6, 89.45),  # Table IV, first cell
        ("glue-avg", "lora", 1e-6, 55.23),  # the text: "a relatively modest value of 55.23"
        ("glue-avg", "lora", 1e-4, 79.66),  # the text: "increasing to 79.66"
        ("glue-avg", "rasa", 5e-4, 81.37),  # the text: "RaSA ... achieving 81.37"
        ("glue-cola", "rasa", 5e-4, 60.32),  # Table VIII
        ("glue-qqp", "lora", 1e-3, 0.00),  # Table IX: LoRA's QQP collapses at 1e-3
        ("glue-wnli", "lora", 5e-3, 56.34),  # Table X
        ("glue-avg", "lora", 5e-3, 34.18),  # Table X
    ],
)
def test_glue_cells(task, variant, lr, value):
    glue = paper_table("glue")
    cell = glue[(glue.task == task) & (glue.variant == variant) & (glue.lr == lr)]
    assert cell["value"].tolist() == [value]


def test_high_rank_and_overhead_cells():
    high = paper_table("highrank")
    # The text: LoRA (alpha=256) 76.57 on GSM8K at 1e-4; LoRA (alpha=16) 76.12 at 5e-4;
    # LoRA-GA 51.30 on HumanEval at 5e-5.
    assert high.query("task == 'gsm8k' and alpha == 256 and lr == 1e-4")["value"].item() == 76.57
    lora16 = high.query("task == 'gsm8k' and label == 'LoRA‡' and lr == 5e-4")
    assert lora16["value"].item() == 76.12
    ga = high.query("task == 'humaneval' and variant == 'lora-ga' and lr == 5e-5")
    assert ga["value"].item() == 51.30
    overhead = paper_table("overhead").set_index("label")
    assert overhead.loc["LoRA", "time_min"] == 4 * 60 + 42  # 4h42min
    assert overhead.loc["DoRA", "memory_mb"] == 52847  # the text: "52,847 MB, +75%"
    assert bool(overhead.loc["DoRA†", "adapter_checkpointing"]) is True


def test_unknown_tables_are_refused_with_the_list():
    with pytest.raises(ValueError, match="overhead, highrank, glue"):
        paper_table("table-xi")
