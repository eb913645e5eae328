import json

import pandas as pd
import pytest

from lorabench.tasks.sources import DataSourceError, load_split

ROWS = [{"question": "1+1?", "answer": "#### 2"}, {"question": "2+2?", "answer": "#### 4"}]


def _hub_layout(root, config="main"):
    """A folder laid out like a hub dataset repository: parquet files plus README configs."""
    (root / config).mkdir(parents=True)
    pd.DataFrame(ROWS).to_parquet(root / config / "test-00000-of-00001.parquet")
    pd.DataFrame(ROWS[:1]).to_parquet(root / config / "train-00000-of-00001.parquet")
    (root / "README.md").write_text(
        "---\nconfigs:\n"
        f"- config_name: {config}\n  data_files:\n"
        f"  - split: train\n    path: {config}/train-*\n"
        f"  - split: test\n    path: {config}/test-*\n---\n"
    )
    return root


def test_hub_layout_folder_loads_each_split_of_its_config(tmp_path):
    root = _hub_layout(tmp_path / "gsm8k")
    assert load_split(str(root), "test", config="main").to_list() == ROWS
    assert load_split(str(root), "train", config="main").to_list() == ROWS[:1]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet", ".csv"])
def test_a_single_file_is_the_whole_split(tmp_path, suffix):
    path = tmp_path / f"rows{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    elif suffix == ".json":
        path.write_text(json.dumps(ROWS))
    elif suffix == ".parquet":
        pd.DataFrame(ROWS).to_parquet(path)
    else:
        pd.DataFrame(ROWS).to_csv(path, index=False)
    assert load_split(str(path), "train").to_list() == ROWS


def test_save_to_disk_folders_load_whole_or_by_split(tmp_path):
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "one"))
    datasets.DatasetDict({"test": datasets.Dataset.from_list(ROWS)}).save_to_disk(
        str(tmp_path / "dict")
    )
    assert load_split(str(tmp_path / "one"), "train").to_list() == ROWS
    assert load_split(str(tmp_path / "dict"), "test").to_list() == ROWS
    with pytest.raises(DataSourceError, match="no split 'train'; it has test"):
        load_split(str(tmp_path / "dict"), "train")


def test_user_mistakes_get_a_message_naming_the_source(tmp_path):
    root = _hub_layout(tmp_path / "gsm8k")
    with pytest.raises(DataSourceError, match=r"cannot load split 'validation' of .*gsm8k"):
        load_split(str(root), "validation", config="main")
    (tmp_path / "rows.txt").write_text("x")
    with pytest.raises(DataSourceError, match="unsupported file type"):
        load_split(str(tmp_path / "rows.txt"), "train")
    # Tests run with HF_DATASETS_OFFLINE=1: a hub name fails at once, with a message.
    with pytest.raises(DataSourceError, match="'no-such-org/no-such-dataset'"):
        load_split("no-such-org/no-such-dataset", "train")
