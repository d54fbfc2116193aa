"""The exported folder: Hugging Face Hub layout, no pickle files.

    config.json        G's (and D's) constructor arguments, as `PyTorchModelHubMixin` writes them:
                       {"cfg": {nz, ngf, ndf, ...}, "image_size": S, "channels": C}, plus
                       "with_discriminator", "generator" (ema or raw), the files of the export,
                       and the format marker and version (the proof that a folder is an export)
    model.safetensors  G's state dict; D's under `discriminator.` with --with-discriminator
    training.json      the run's facts: full training config, step, evaluation records, versions
    README.md          the model card (written by `export`), samples.png its sample grid
    model.onnx         G alone, z -> image, with `--format onnx`

`share.folder.open_export` checks a folder before anything is built from it;
`Generator.from_pretrained(DIR)` and `load_export` (every command's `--checkpoint DIR`) both
go through it and through `models.from_export`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_bytes, write_text
from ..config import Config
from ..errors import CheckpointError
from ..models import Discriminator, Generator, from_export
from .folder import (  # noqa: F401 (the format's names, re-exported)
    CARD_FILE,
    CONFIG_FILE,
    D_PREFIX,
    EXPORT_FILES,
    FORMAT,
    FORMAT_VERSION,
    ONNX_FILE,
    SAMPLES_FILE,
    TRAINING_FILE,
    WEIGHTS_FILE,
    marked,
    open_export,
)


def is_export(path: str | Path) -> bool:
    """Whether a `--checkpoint` path is meant as an export: a folder with config.json or
    model.safetensors (not a run directory). Complete or not: `open_export` then says which."""
    p = Path(path).expanduser()
    return p.is_dir() and not (p / "checkpoints").is_dir() and (
        (p / CONFIG_FILE).is_file() or (p / WEIGHTS_FILE).is_file())


def architecture(cfg: Config, *, with_discriminator: bool, generator: str = "raw",
                 files: list[str] | None = None) -> dict[str, Any]:
    """config.json: the constructor arguments of G and D (the mixin's encoding) + format facts."""
    return {"cfg": asdict(cfg.model), "image_size": cfg.data.image_size, "channels": cfg.data.channels,
            "with_discriminator": with_discriminator, "generator": generator, "files": files or [WEIGHTS_FILE],
            "format": FORMAT, "format_version": FORMAT_VERSION}


def weights_bytes(G: Generator, D: Discriminator | None, metadata: dict[str, str]) -> bytes:
    """G's (and D's, prefixed) tensors as one safetensors blob."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()}
    if D is not None:
        state.update({D_PREFIX + k: v.detach().cpu().contiguous() for k, v in D.state_dict().items()})
    return save(state, metadata={"format": "pt", **metadata})


def write_weights(folder: Path, G: Generator, D: Discriminator | None, facts: dict[str, Any]) -> None:
    """model.safetensors and training.json (config.json comes last: `write_config`). The weights'
    header holds one metadata entry: safetensors writes several in a random order, and the same
    checkpoint should give the same bytes (the version is in training.json's `meta`)."""
    write_bytes(folder / WEIGHTS_FILE, weights_bytes(G, D, {}))
    write_text(folder / TRAINING_FILE, json.dumps(facts, indent=2, allow_nan=False) + "\n")


def write_config(folder: Path, cfg: Config, *, with_discriminator: bool, generator: str) -> None:
    """config.json, the export's last file: it lists every file written before it and carries
    the marker, so a folder without it (or missing a listed file) is an incomplete export."""
    files = sorted(p.name for p in folder.iterdir() if p.name in EXPORT_FILES and p.name != CONFIG_FILE)
    arch = architecture(cfg, with_discriminator=with_discriminator, generator=generator, files=files + [CONFIG_FILE])
    write_text(folder / CONFIG_FILE, json.dumps(arch, indent=2) + "\n")


def load_export(path: str | Path, device: str | torch.device = "cpu", cfg: Config | None = None, *,
                ema: bool = True) -> tuple[Generator, Discriminator | None, Config, dict[str, Any]]:
    """(G, D or None, config, facts) of an exported folder, like `checkpoint.load_models`.

    The folder is checked first (`open_export`), the weights as every loader's are
    (`models.from_export`). `ema=False` (`dcgan sample --no-ema`) is refused for an export of
    the averaged G: the raw G is not in it. The nets come back in train mode, as from a
    checkpoint (sampling sets eval mode itself). `facts` stands in for the checkpoint dict: it
    has `step`, `epoch`, `config`, `best`, `meta`, `evals`, `generator`.
    """
    ex = open_export(path)
    if cfg is not None:
        ex.cfg = cfg
    if not ema and ex.generator == "ema":
        raise CheckpointError(f"{str(ex.path)!r} holds only the averaged G (its run kept an EMA of G), so "
                              "--no-ema has no raw G to sample; pass the run's checkpoint for the raw G, or drop "
                              "--no-ema")
    G = from_export(Generator, ex).train()
    D = from_export(Discriminator, ex).train() if ex.has_discriminator() else None
    facts = {**ex.facts, "generator": ex.generator, "export": str(ex.path), "config": ex.cfg.to_dict()}
    return G.to(device), None if D is None else D.to(device), ex.cfg, facts
