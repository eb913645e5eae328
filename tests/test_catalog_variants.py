"""The torch-free variant catalog matches the implementations, and stays torch-free."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

import lorabench.variants
from lorabench.catalog import variant as catalog
from lorabench.catalog.variant import (
    VariantInfo,
    build_params,
    get_variant_info,
    variant_infos,
    variant_names,
)
from lorabench.errors import InvalidVariantParams, UnknownVariantError
from lorabench.variants import base

NAMES = variant_names()


def test_catalog_names_are_the_registered_implementations():
    assert sorted(NAMES) == NAMES and len(NAMES) == len(set(NAMES)) > 0
    assert lorabench.variants.variant_names() == NAMES
    assert sorted(base._REGISTRY) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_spec_reads_through_its_catalog_info(name: str):
    info, spec = get_variant_info(name), lorabench.variants.get_variant(name)
    assert spec.info is info and info.name == name
    assert sys.modules[info.implementation].SPEC is spec
    assert (spec.name, spec.family, spec.params_cls, spec.equations, spec.merges) == (
        info.name, info.family, info.params_cls, info.equations, info.merges,
    )  # fmt: skip
    assert (spec.summary, spec.notes, spec.peft) == (info.summary, info.notes, info.peft)
    assert spec.peft == (spec.peft_export is not None)
    assert build_params(name) == lorabench.variants.build_params(name)
    assert isinstance(build_params(name, None), spec.layer_cls.params_cls)


def test_unknown_variant_message_is_the_catalogs():
    with pytest.raises(UnknownVariantError) as from_catalog:
        get_variant_info("dora-ish")
    with pytest.raises(UnknownVariantError) as from_registry:
        lorabench.variants.get_variant("dora-ish")
    assert str(from_catalog.value) == str(from_registry.value)
    assert str(from_catalog.value) == (
        f"unknown variant 'dora-ish'; did you mean 'dora'? (lorabench variants lists all "
        f"{len(NAMES)})"
    )
    with pytest.raises(UnknownVariantError, match=r"^unknown variant 'zzz'; lorabench variants"):
        get_variant_info("zzz")


def test_build_params_validates_without_the_implementation():
    with pytest.raises(InvalidVariantParams, match="unknown parameter"):
        build_params("lora", {"foo": 1})
    with pytest.raises(InvalidVariantParams, match="not a valid int"):
        build_params("melora", {"blocks": 2.5})
    with pytest.raises(InvalidVariantParams, match="blocks must be >= 1"):
        build_params("melora", {"blocks": 0})
    assert build_params("melora", {"blocks": 4}).blocks == 4


def test_variant_info_validates_itself():
    info = get_variant_info("lora")
    with pytest.raises(ValueError, match="family"):
        dataclasses.replace(info, family="misc")
    with pytest.raises(TypeError, match="dataclass"):
        dataclasses.replace(info, params_cls=dict)


def test_spec_must_agree_with_its_info_on_peft():
    spec = lorabench.variants.get_variant("lora")
    with pytest.raises(ValueError, match="peft"):
        dataclasses.replace(spec, peft_export=None)
    with pytest.raises(ValueError, match="peft"):
        dataclasses.replace(spec, info=dataclasses.replace(spec.info, peft=False))


def test_register_requires_the_catalog_info():
    spec = lorabench.variants.get_variant("lora")
    copy = dataclasses.replace(spec.info, summary="another")
    saved = base._REGISTRY.pop("lora")
    try:
        with pytest.raises(ValueError, match="catalog"):
            base.register(dataclasses.replace(spec, info=copy))
    finally:
        base._REGISTRY["lora"] = saved


def test_declarations_are_discovered_once_and_read_only():
    assert variant_infos() is variant_infos()
    assert all(isinstance(info, VariantInfo) for info in variant_infos().values())
    with pytest.raises(TypeError):
        variant_infos()["new"] = get_variant_info("lora")  # type: ignore[index]
    assert catalog.DECLARATIONS == "lorabench.catalog.variants"


# In a fresh interpreter: the catalog lists and validates every variant without torch, numpy
# or any lorabench module outside lorabench.catalog and lorabench.errors.
PROBE = """
import json, sys
from lorabench.catalog.variant import build_params, get_variant_info, variant_names
names = variant_names()
defaults = {name: repr(build_params(name)) for name in names}
infos = [get_variant_info(name).family for name in names]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "numpy"))
impl = sorted(m for m in sys.modules if m.split(".")[0] == "lorabench"
              and m not in ("lorabench", "lorabench.errors", "lorabench.suggest",
                            "lorabench.catalog")
              and not m.startswith("lorabench.catalog."))
print(json.dumps({"names": names, "defaults": defaults, "heavy": heavy, "impl": impl}))
"""


def test_catalog_loads_without_torch():
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["names"] == NAMES
    assert report["heavy"] == [] and report["impl"] == []
    assert report["defaults"] == {name: repr(build_params(name)) for name in NAMES}
