"""`agentrft export`: a trained checkpoint becomes a plain Hugging Face directory that
transformers loads on its own (checked in a child process that never imports agentrft or
peft) and that gives the same logits as the checkpoint loaded through agentrft."""

import json
import subprocess
import sys

import pytest
import torch

from agentrft.cli import main
from agentrft.models.loading import load_model
from tests.serving_fixtures import train_tiny

IDS = [[1, 17, 300, 42, 9, 1000, 5, 77]]

PLAIN_LOAD = r"""
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
tok = AutoTokenizer.from_pretrained(sys.argv[1])
with torch.no_grad():
    logits = model(input_ids=torch.tensor(json.loads(sys.argv[2]))).logits
torch.save(logits, sys.argv[3])
print(json.dumps({"agentrft": any(m.split(".")[0] == "agentrft" for m in sys.modules),
                  "peft": "peft" in sys.modules, "vocab": len(tok),
                  "class": type(model).__name__}))
"""


def logits_of(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=torch.tensor(IDS)).logits


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_export_loads_in_plain_transformers_with_the_checkpoints_logits(tmp_path, tiny_model_dir,
                                                                        finetune, capsys):
    ckpt = train_tiny(tmp_path, tiny_model_dir, finetune=finetune)
    out = tmp_path / "exported"
    assert main(["export", str(ckpt), str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= files
    assert not files & {"adapter_config.json", "optimizer.pt", "rng.pt", "agentrft_checkpoint.json"}

    saved = tmp_path / "plain_logits.pt"
    # The child runs outside the repository, so nothing of agentrft is importable by accident.
    child = subprocess.run([sys.executable, "-c", PLAIN_LOAD, str(out), json.dumps(IDS), str(saved)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert child.returncode == 0, child.stderr[-2000:]
    info = json.loads(child.stdout.strip().splitlines()[-1])
    assert info == {"agentrft": False, "peft": False, "vocab": info["vocab"],
                    "class": "LlamaForCausalLM"} and info["vocab"] > 1000

    plain = torch.load(saved)
    through_agentrft = logits_of(load_model(str(ckpt)))
    base = logits_of(load_model(str(tiny_model_dir)))
    assert plain.shape == through_agentrft.shape
    assert torch.allclose(plain, through_agentrft, atol=1e-4, rtol=1e-4)
    # ...and training changed the model, so the comparison above could have failed.
    assert (through_agentrft - base).abs().max() > 1e-2
    meta = json.loads((out / "agentrft_export.json").read_text())
    assert meta["checkpoint"]["finetune"] == finetune


def test_export_refuses_to_overwrite_a_non_empty_directory(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", str(tiny_model_dir), str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["export", str(tiny_model_dir), str(out), "--overwrite"]) == 0
    assert (out / "config.json").is_file() and not (out / "keep.txt").exists()


def test_export_of_an_unknown_reference_is_an_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert "neither a bundled model" in capsys.readouterr().err
