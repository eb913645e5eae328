"""The torch-free task catalog matches the implementations, and stays torch-free."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import lorabench.tasks
from lorabench.catalog import task as catalog
from lorabench.catalog.task import (
    TaskInfo,
    build_task_params,
    get_task_info,
    task_infos,
    task_names,
)
from lorabench.errors import InvalidTaskParams, UnknownTaskError
from lorabench.tasks import base

NAMES = task_names()


def test_catalog_names_are_the_registered_implementations():
    assert sorted(NAMES) == NAMES and len(NAMES) == len(set(NAMES)) > 0
    assert lorabench.tasks.task_names() == NAMES
    assert sorted(base._REGISTRY) == NAMES
    # The families the paper's tables read, and the test task.
    assert {"bbc-news", "noop", "digits", "gsm8k", "humaneval", "glue-mnli", "ic-svhn"} <= set(
        NAMES
    )
    assert sum(name.startswith("glue-") for name in NAMES) == 9
    assert sum(name.startswith("ic-") for name in NAMES) == 7


@pytest.mark.parametrize("name", NAMES)
def test_registered_info_is_the_catalogs(name: str):
    info = get_task_info(name)
    registered, _ = base._REGISTRY[name]
    assert registered is info and info.name == name
    assert lorabench.tasks.get_task_info(name) is info
    assert info.implementation.startswith("lorabench.tasks.")
    assert info.implementation in sys.modules
    assert info.primary_metric in info.metrics
    for metric in info.metrics:
        assert info.metric_spec(metric).name == metric


def test_implementations_reexport_the_catalogs_names():
    from lorabench.catalog.tasks import digits, embedded, glue, gsm8k, humaneval, noop, vision
    from lorabench.tasks import digits as digits_impl
    from lorabench.tasks import embedded as embedded_impl
    from lorabench.tasks import glue as glue_impl
    from lorabench.tasks import gsm8k as gsm8k_impl
    from lorabench.tasks import humaneval as humaneval_impl
    from lorabench.tasks import models
    from lorabench.tasks import noop as noop_impl
    from lorabench.tasks import vision as vision_impl

    for name in ("SPLITS", "TaskDefaults", "TaskInfo", "TaskParams", "MetricSpec", "METRIC_SPECS"):
        assert getattr(base, name) is getattr(catalog, name)
    for name in ("split_name", "task_names", "get_task_info", "build_task_params"):
        assert getattr(base, name) is getattr(catalog, name)
        assert getattr(lorabench.tasks, name) is getattr(catalog, name)
    assert noop_impl.NOOP is noop.NOOP and noop_impl.NOOP_MODEL == noop.NOOP_MODEL
    assert noop_impl.Noop(_settings("noop")).info is get_task_info("noop")
    assert embedded_impl.BBC_NEWS is embedded.BBC_NEWS is get_task_info("bbc-news")
    assert digits_impl.EFFICIENTNET_LITE0 == digits.EFFICIENTNET_LITE0 == "efficientnet-lite0"
    assert digits_impl.DigitsParams is digits.DigitsParams
    assert glue_impl.SPECS is glue.SPECS and glue_impl.GlueSpec is glue.GlueSpec
    assert gsm8k_impl.Gsm8k.info is gsm8k.GSM8K is get_task_info("gsm8k")
    assert humaneval_impl.HumanEvalMini.info is humaneval.HUMANEVAL_MINI
    assert vision_impl.IC_DATASETS is vision.IC_DATASETS
    assert {info.name: info for info in vision.TASKS} == vision_impl.IC_TASKS
    assert get_task_info("bbc-news").defaults.model == models.MINILM
    assert get_task_info("gsm8k-mini").defaults.model == models.SMOLLM2


def _settings(name: str, **params) -> base.TaskSettings:
    defaults = get_task_info(name).defaults
    return base.TaskSettings(
        model=defaults.model,
        max_length=defaults.max_length,
        seed=0,
        train_size=defaults.train_size,
        eval_size=defaults.eval_size,
        params=build_task_params(name, params),
    )


@pytest.mark.parametrize("name", NAMES)
def test_build_task_params_defaults(name: str):
    params = build_task_params(name)
    cls = get_task_info(name).params_cls
    assert type(params) is cls and params == cls() == build_task_params(name, {})
    assert lorabench.tasks.build_task_params(name) == params


def test_build_task_params_values_and_messages():
    noop = build_task_params("noop")
    assert (noop.sleep_s, noop.fault, noop.fault_step) == (0.0, "none", 1)
    assert build_task_params("noop", {"fault": "nan", "fault_step": 3}).fault_step == 3
    assert build_task_params("digits").image_size == 48
    assert build_task_params("gsm8k").eval_batch_size == 32
    assert build_task_params("humaneval").n == 8 and build_task_params("humaneval-mini").n == 1
    assert build_task_params("ic-svhn").config == "cropped_digits"
    with pytest.raises(InvalidTaskParams) as unknown:
        build_task_params("noop", {"foo": 1})
    assert str(unknown.value) == (
        "task 'noop': unknown parameter 'foo'; allowed: sleep_s, fault, fault_step"
    )
    with pytest.raises(InvalidTaskParams, match=r"task 'digits': parameter image_size=8: "):
        build_task_params("digits", {"image_size": 8})
    with pytest.raises(InvalidTaskParams, match="greedy decoding"):
        build_task_params("humaneval", {"temperature": 0, "samples": 4})
    with pytest.raises(InvalidTaskParams, match="must contain"):
        build_task_params("ic-dtd", {"prompt": "no slot"})


def test_unknown_task_message():
    with pytest.raises(UnknownTaskError) as error:
        get_task_info("bogus")
    assert str(error.value) == f"unknown task 'bogus'; lorabench tasks lists all {len(NAMES)}"
    with pytest.raises(UnknownTaskError) as close:
        get_task_info("glue-sst")
    assert str(close.value) == (
        f"unknown task 'glue-sst'; did you mean 'glue-sst2'? (lorabench tasks lists all "
        f"{len(NAMES)})"
    )
    with pytest.raises(UnknownTaskError):
        build_task_params("bogus")
    with pytest.raises(UnknownTaskError):
        base.build_task("bogus", _settings("noop"))


def test_declarations_are_discovered_once_and_read_only():
    assert task_infos() is task_infos()
    assert all(isinstance(info, TaskInfo) for info in task_infos().values())
    with pytest.raises(TypeError):
        task_infos()["new"] = get_task_info("noop")  # type: ignore[index]
    assert catalog.DECLARATIONS == "lorabench.catalog.tasks"


def test_register_task_requires_the_catalog_info():
    info, factory = base._REGISTRY["noop"]
    saved = base._REGISTRY.pop("noop")
    try:
        with pytest.raises(ValueError, match="catalog"):
            base.register_task(dataclasses.replace(info, summary="another"), factory)
        with pytest.raises(UnknownTaskError):
            base.register_task(dataclasses.replace(info, name="undeclared"), factory)
        assert "noop" not in base._REGISTRY
    finally:
        base._REGISTRY["noop"] = saved
    with pytest.raises(ValueError, match="already registered"):
        base.register_task(info, factory)


def test_build_task_imports_the_implementation(monkeypatch):
    task = base.build_task("noop", _settings("noop", fault_step=2))
    assert task.info is get_task_info("noop") and task.params.fault_step == 2
    # A declaration whose module registers nothing is named in the error.
    stray = dataclasses.replace(
        get_task_info("noop"), name="stray", implementation="lorabench.tasks.metrics"
    )
    monkeypatch.setattr(catalog, "task_infos", lambda: {**task_infos(), "stray": stray})
    with pytest.raises(ValueError, match="lorabench.tasks.metrics does not register task 'stray'"):
        base.build_task("stray", _settings("noop"))


def _declarations(tmp_path, monkeypatch, modules: dict[str, str]):
    package = tmp_path / "fake_task_declarations"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in modules.items():
        (package / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(catalog, "DECLARATIONS", package.name)
    for module in [m for m in sys.modules if m.startswith(package.name)]:
        monkeypatch.delitem(sys.modules, module)
    importlib.invalidate_caches()
    return catalog.task_infos.__wrapped__  # discovery itself, bypassing the cache


DECLARE = """
    import dataclasses
    from lorabench.catalog.tasks.noop import NOOP
    TASKS = (dataclasses.replace(NOOP, name={name!r}, implementation={impl!r}),)
"""


def test_discovery_reads_tasks_skips_helpers_and_refuses_mistakes(tmp_path, monkeypatch):
    discover = _declarations(tmp_path, monkeypatch, {
        "one": DECLARE.format(name="b-task", impl="lorabench.tasks.one"),
        "two": DECLARE.format(name="a-task", impl="lorabench.tasks.two"),
        "_helper": "X = 1\n",
    })  # fmt: skip
    assert list(discover()) == ["a-task", "b-task"]
    (tmp_path / "fake_task_declarations" / "three.py").write_text(
        textwrap.dedent(DECLARE.format(name="a-task", impl="lorabench.tasks.three"))
    )
    importlib.invalidate_caches()
    with pytest.raises(ValueError, match="'a-task' is declared twice"):
        discover()


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        ("X = 1\n", TypeError, "must define TASKS"),
        ("TASKS = [1]\n", TypeError, "must define TASKS"),
        (DECLARE.format(name="x", impl="lorabench.tasks.other"), ValueError, "expected"),
    ],
)
def test_discovery_refuses_a_bad_declaration(tmp_path, monkeypatch, source, error, message):
    discover = _declarations(tmp_path, monkeypatch, {"bad": source})
    with pytest.raises(error, match=message):
        discover()


def test_declarations_import_only_the_catalog_errors_suggest_and_pydantic():
    import lorabench.catalog.tasks

    folder = Path(lorabench.catalog.tasks.__file__).parent
    sources = [Path(catalog.__file__), *sorted(folder.glob("*.py"))]
    assert len(sources) > 8
    allowed = ("lorabench.catalog", "lorabench.errors", "lorabench.suggest", "pydantic",
               "__future__")  # fmt: skip
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, path
                names = [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                ok = top in sys.stdlib_module_names or name.startswith(allowed)
                assert ok, f"{path.name} imports {name}"


# In a fresh interpreter: the catalog lists every task, validates its default params and reads
# its metric specs without the deep-learning stack or any task implementation.
PROBE = """
import json, sys
from lorabench.catalog.task import build_task_params, get_task_info, task_names
names = task_names()
defaults = {name: repr(build_task_params(name)) for name in names}
specs = {name: [repr(get_task_info(name).metric_spec(m)) for m in get_task_info(name).metrics]
         for name in names}
heavy = sorted(m for m in sys.modules
               if m.split(".")[0] in ("torch", "transformers", "datasets", "numpy", "sklearn"))
impl = sorted(m for m in sys.modules if m == "lorabench.tasks" or m.startswith("lorabench.tasks."))
print(json.dumps({"names": names, "defaults": defaults, "specs": specs, "heavy": heavy,
                  "impl": impl}))
"""


def test_catalog_loads_without_torch():
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["names"] == NAMES
    assert report["heavy"] == [] and report["impl"] == []
    assert report["defaults"] == {name: repr(build_task_params(name)) for name in NAMES}
    info = get_task_info
    assert report["specs"] == {
        name: [repr(info(name).metric_spec(m)) for m in info(name).metrics] for name in NAMES
    }
