"""The Hub layout (`dcgan export --format safetensors`, always written): writing it, loading it.

    config.json        G's (and D's) constructor arguments, as `PyTorchModelHubMixin` writes them:
                       {"cfg": {nz, ngf, ndf, ...}, "image_size": S, "channels": C}, plus
                       "with_discriminator", "generator" (ema or raw), the files of the export,
                       and the format marker and version (the proof that a folder is an export)
    model.safetensors  G's state dict; D's under `discriminator.` with --with-discriminator
    training.json      the run's facts: full training config, step, evaluation records, versions
    README.md          the model card (written by `export`), samples.png its sample grid

Other formats add their files beside these (`dcgan.formats.EXPORT_FORMATS`). This module is the
Hub layout's entry in that table: `write_weights`, `card` (the card's "How to load"),
`load_export` (every command's `--checkpoint DIR`, through `checkpoint.load_models`) and
`from_pretrained` (`Generator.from_pretrained`, a local folder or a Hub repository). Both loaders
check the folder first (`share.folder.open_export`) and build through `from_export`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_bytes, write_text
from ..config import Config
from ..errors import CheckpointError, ConfigError
from ..formats import CONFIG_FILE, TRAINING_FILE, WEIGHTS_FILE, export_files
from ..models import Discriminator, Generator, load_weights
from .folder import D_PREFIX, FORMAT, FORMAT_VERSION, Export, open_export


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


def write_weights(folder: Path, G: Generator, D: Discriminator | None, cfg: Config, facts: dict[str, Any]) -> None:
    """model.safetensors and training.json (config.json comes last: `write_config`). The weights'
    header holds one metadata entry: safetensors writes several in a random order, and the same
    checkpoint should give the same bytes (the version is in training.json's `meta`)."""
    write_bytes(folder / WEIGHTS_FILE, weights_bytes(G, D, {}))
    write_text(folder / TRAINING_FILE, json.dumps(facts, indent=2, allow_nan=False) + "\n")


def write_config(folder: Path, cfg: Config, *, with_discriminator: bool, generator: str) -> None:
    """config.json, the export's last file: it lists every file written before it and carries
    the marker, so a folder without it (or missing a listed file) is an incomplete export."""
    files = sorted(p.name for p in folder.iterdir() if p.name in export_files() and p.name != CONFIG_FILE)
    arch = architecture(cfg, with_discriminator=with_discriminator, generator=generator, files=files + [CONFIG_FILE])
    write_text(folder / CONFIG_FILE, json.dumps(arch, indent=2) + "\n")


def card(facts: dict[str, Any]) -> str:
    """The model card's section for the Hub layout: loading it with `from_pretrained` or `--checkpoint`."""
    cfg = facts.get("config", {})
    model, data = cfg.get("model", {}), cfg.get("data", {})
    S, C = data.get("image_size", "?"), data.get("channels", "?")
    return f"""## How to load

```python
from dcgan import Generator
from dcgan.sampling import generate, noise

G = Generator.from_pretrained("DIR")  # a local folder loads offline; a Hub repo id downloads
z = noise(16, G.nz, "{model.get('z_dist')}", seed=0)
images = generate(G, z)  # (16, {C}, {S}, {S}) in [-1, 1]
```

Every `dcgan` command that takes `--checkpoint` takes this folder too, and draws the same images
as the run's checkpoint for the same seed: `dcgan sample --checkpoint DIR --out grid.png`,
`dcgan serve --checkpoint DIR` (the latent-space explorer).
"""


def load_export(path: str | Path, device: str | torch.device = "cpu", cfg: Config | None = None, *,
                ema: bool = True) -> tuple[Generator, Discriminator | None, Config, dict[str, Any]]:
    """(G, D or None, config, facts) of an exported folder, like `checkpoint.load_models`.

    The folder is checked first (`open_export`), the weights as every loader's are
    (`from_export`). `ema=False` (`dcgan sample --no-ema`) is refused for an export of
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


# --- the networks ----------------------------------------------------------------------------------


def from_export(cls: type, ex: Export, device: str | torch.device = "cpu") -> Any:
    """`cls` (Generator or Discriminator) of a checked export folder, in eval mode: names and
    shapes checked against a weightless (meta) build first, then built, loaded strictly and
    checked finite (`models.load_weights`, as for checkpoints). D's tensors are under `D_PREFIX`."""
    size, channels = ex.cfg.data.image_size, ex.cfg.data.channels
    if channels not in (1, 3):
        raise ConfigError(f"data.channels={channels} is not supported; use 1 or 3")
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in cls(ex.cfg.model, size, channels).state_dict().items()}
    is_d = issubclass(cls, Discriminator)
    what = "D" if is_d else "G"
    state = ex.read_weights(D_PREFIX if is_d else "", shapes, what)
    net = cls(ex.cfg.model, size, channels)
    load_weights(net, state, what, ex.path / WEIGHTS_FILE)
    return net.to(device).eval()


def from_pretrained(cls: type, name_or_path: str | Path, *, force_download: bool = False, token: Any = None,
                    cache_dir: Any = None, local_files_only: bool = False, revision: str | None = None,
                    map_location: str | torch.device = "cpu") -> Any:
    """`Generator.from_pretrained(DIR or REPO_ID)`: `cls` from an exported folder (offline) or a
    Hub repository of one (its config.json and weights, into huggingface_hub's cache; the options
    are `hf_hub_download`'s).

    Unlike `PyTorchModelHubMixin.from_pretrained`, whose folder layout this reads, it checks the
    folder before building anything (`open_export`: config.json through the project's config
    validation, an incomplete export refused), checks the weights' names and shapes from the
    safetensors header before allocating them, loads strictly, refuses non-finite weights, prints
    nothing, and reads G and D from one file: G's tensors under their own names, D's under
    `discriminator.` (present when exported with --with-discriminator).
    """
    model_id = str(name_or_path)
    complete = os.path.isdir(model_id)
    if not complete:  # a Hub repository: its config.json and weights, into the local cache
        from huggingface_hub import hf_hub_download

        paths = [hf_hub_download(repo_id=model_id, filename=name, revision=revision, cache_dir=cache_dir,
                                 force_download=force_download, token=token, local_files_only=local_files_only)
                 for name in (CONFIG_FILE, WEIGHTS_FILE)]
        model_id = os.path.dirname(paths[0])
    return from_export(cls, open_export(model_id, complete=complete), map_location)
