"""The exported folder: Hugging Face Hub layout, no pickle files.

    config.json        G's (and D's) constructor arguments, as `PyTorchModelHubMixin` writes them:
                       {"cfg": {nz, ngf, ndf, ...}, "image_size": S, "channels": C}, plus
                       "with_discriminator" and the format version
    model.safetensors  G's state dict; D's under `discriminator.` with --with-discriminator
    training.json      the run's facts: full training config, step, evaluation records, versions
    README.md          the model card (written by `export`), samples.png its sample grid
    model.onnx         G alone, z -> image, with `--format onnx`

`Generator.from_pretrained(DIR)` reads config.json and model.safetensors; `load_export` also
reads training.json so every command that takes `--checkpoint` takes the folder too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_bytes, write_text
from ..config import Config, DataConfig, ModelConfig, from_dict
from ..errors import CheckpointError, DCGANError
from ..models import D_PREFIX, WEIGHTS_FILE, Discriminator, Generator, select_weights

CONFIG_FILE, TRAINING_FILE = "config.json", "training.json"
CARD_FILE, SAMPLES_FILE, ONNX_FILE = "README.md", "samples.png", "model.onnx"
FORMAT = "dcgan-export"
FORMAT_VERSION = 1


def is_export(path: str | Path) -> bool:
    """Whether `path` is a folder in the exported layout (config.json + model.safetensors)."""
    p = Path(path).expanduser()
    return p.is_dir() and (p / CONFIG_FILE).is_file() and (p / WEIGHTS_FILE).is_file()


def architecture(cfg: Config, *, with_discriminator: bool) -> dict[str, Any]:
    """config.json: the constructor arguments of G and D (the mixin's encoding) + format facts."""
    return {"cfg": asdict(cfg.model), "image_size": cfg.data.image_size, "channels": cfg.data.channels,
            "with_discriminator": with_discriminator, "format": FORMAT, "format_version": FORMAT_VERSION}


def weights_bytes(G: Generator, D: Discriminator | None, metadata: dict[str, str]) -> bytes:
    """G's (and D's, prefixed) tensors as one safetensors blob."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()}
    if D is not None:
        state.update({D_PREFIX + k: v.detach().cpu().contiguous() for k, v in D.state_dict().items()})
    return save(state, metadata={"format": "pt", **metadata})


def write_model(folder: Path, G: Generator, D: Discriminator | None, cfg: Config,
                facts: dict[str, Any]) -> None:
    """model.safetensors, config.json and training.json, each written atomically."""
    from .. import __version__

    write_bytes(folder / WEIGHTS_FILE, weights_bytes(G, D, {"dcgan_version": __version__}))
    write_text(folder / CONFIG_FILE, json.dumps(architecture(cfg, with_discriminator=D is not None), indent=2) + "\n")
    write_text(folder / TRAINING_FILE, json.dumps(facts, indent=2) + "\n")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{str(path)!r} is not readable JSON ({type(e).__name__}); "
                              "re-export the model with `dcgan export`") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{str(path)!r} is not a JSON object; re-export the model with `dcgan export`")
    return data


def read_facts(folder: str | Path) -> dict[str, Any]:
    """training.json of an export ({} for a folder written by plain `save_pretrained`)."""
    p = Path(folder).expanduser() / TRAINING_FILE
    return _read_json(p) if p.is_file() else {}


def export_config(folder: Path) -> Config:
    """The training config of an export; from config.json alone when training.json is absent."""
    facts = read_facts(folder)
    try:
        if "config" in facts:
            return from_dict(facts["config"])
        arch = _read_json(folder / CONFIG_FILE)
        names = {f.name for f in fields(ModelConfig)}
        model = ModelConfig(**{k: v for k, v in dict(arch.get("cfg") or {}).items() if k in names})
        data = DataConfig(image_size=int(arch["image_size"]), channels=int(arch["channels"]))
        return from_dict(asdict(Config(model=model, data=data)))
    except (DCGANError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"the config in {str(folder)!r} is not valid for this version ({e}); "
                              "re-export the model with `dcgan export`") from None


def load_export(path: str | Path, device: str | torch.device = "cpu", cfg: Config | None = None
                ) -> tuple[Generator, Discriminator | None, Config, dict[str, Any]]:
    """(G, D or None, config, facts) of an exported folder, like `checkpoint.load_models`.

    The nets come back in train mode, as from a checkpoint (sampling sets eval mode itself).
    `facts` stands in for the checkpoint dict: it has `step`, `epoch`, `config`, `best`, `meta`.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..models import build_models, load_state

    folder = Path(path).expanduser()
    cfg = cfg or export_config(folder)
    try:
        state = load_file(folder / WEIGHTS_FILE)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{str(folder / WEIGHTS_FILE)!r} is not readable safetensors ({e}); "
                              "re-export the model with `dcgan export`") from None
    G, D = build_models(cfg.model, cfg.data.image_size, cfg.data.channels)
    load_state(G, select_weights(state, "", str(folder)), "G", folder / WEIGHTS_FILE)
    if any(k.startswith(D_PREFIX) for k in state):
        load_state(D, select_weights(state, D_PREFIX, str(folder)), "D", folder / WEIGHTS_FILE)
    else:
        D = None
    facts = {"step": 0, "epoch": 0, "best": None, "meta": {}, **read_facts(folder), "export": str(folder)}
    facts["config"] = cfg.to_dict()
    return G.to(device), None if D is None else D.to(device), cfg, facts

