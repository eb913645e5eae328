"""bbc-news: offline text classification on a model and data that PyPI packages ship
(implemented in `lorabench.tasks.embedded`)."""

from lorabench.catalog.task import TaskDefaults, TaskInfo
from lorabench.catalog.tasks._models import MINILM

BBC_NEWS = TaskInfo(
    name="bbc-news",
    family="nlu",
    primary_metric="accuracy",
    metrics=("accuracy", "macro_f1"),
    defaults=TaskDefaults(
        model=MINILM,
        targets=("query", "key", "value", "dense"),
        max_length=128,
        batch_size=16,
        epochs=2,
        schedule="linear",
        train_size=400,
        eval_size=300,
    ),
    needs_download=False,
    summary="5-class BBC News topics on all-MiniLM-L6-v2 (embedded, offline; a GLUE-like task)",
    implementation="lorabench.tasks.embedded",
    train_rows=1_780,  # the 80% of 2,225 documents that is not test (select is carved from it)
)

TASKS = (BBC_NEWS,)
