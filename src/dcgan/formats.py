"""The export-format table: what `dcgan export --format` takes, declared once.

    EXPORT_FORMATS   dcgan export --format   dcgan.share.hub (the Hub layout), dcgan.share.export (onnx)

Each entry is an `ExportFormat`: the files it puts in the export folder (with what each holds,
for the model card's Files table), and its code in share/ as "module:attribute" strings imported
on first use: `write` (its files), `card` (its section of the model card) and, for a format that
can be loaded back, `read` (what `checkpoint.load_models` calls for `--checkpoint DIR`) and
`pretrained` (`Generator.from_pretrained`). `dcgan export --help`, its validation, the model card,
the export folder's checks (which files an export may hold) and the loaders read this table, and
nothing else names the formats: adding one is its code in share/ and one `register` line here
(or, from outside the package, `EXPORT_FORMATS.register(...)` before exporting or loading).

This module imports nothing heavy (the table is read by `--help` without torch), and it sits
below `checkpoint` and `models`, which reach share/ only through it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .registry import Registry

# The Hub layout's files (huggingface_hub's names for the weights and the architecture); every
# export holds them. The exporter writes the model card, its sample grid and config.json (last:
# it lists the files written before it) whatever the formats.
WEIGHTS_FILE, CONFIG_FILE, TRAINING_FILE = "model.safetensors", "config.json", "training.json"
SAMPLES_FILE, CARD_FILE = "samples.png", "README.md"
CARD_SAMPLES, CARD_SEED = 64, 0  # the model card's grid: `dcgan sample --num 64 --seed 0`
HUB_LAYOUT = "safetensors"  # the format `Generator.from_pretrained` reads
ONNX_FILE = "model.onnx"

Code = str | Callable[..., Any]  # a function, or "module:attribute" naming it (imported on first use)


@dataclass(frozen=True)
class ExportFormat:
    """One export format: its files and where its code lives."""

    files: dict[str, str]  # file -> what it holds (the model card's Files table)
    write: Code  # write(folder, G, D or None, cfg, facts) -> None: its files into the export folder
    card: Code | None = None  # card(facts) -> str: its section of the model card (markdown), or None
    read: Code | None = None  # read(path, device, cfg, *, ema) -> (G, D or None, cfg, facts), like load_models
    pretrained: Code | None = None  # pretrained(cls, name_or_path, **options) -> a network in eval mode
    marks: tuple[str, ...] = ()  # with `read`: a folder holding one of these files is this format's
    always: bool = False  # written in every export (the Hub layout), whatever --format says

    def code(self, part: str) -> Callable[..., Any]:
        """The function named by `part` ("write", "card", "read", "pretrained"), imported now."""
        target = getattr(self, part)
        if not isinstance(target, str):
            return target
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)


EXPORT_FORMATS: Registry = Registry("export format")
EXPORT_FORMATS.register(HUB_LAYOUT, ExportFormat(
    files={WEIGHTS_FILE: "G's weights",
           CONFIG_FILE: "the architecture: G's constructor arguments",
           TRAINING_FILE: "the run's facts: training config, step, evaluation records, versions",
           SAMPLES_FILE: f"{CARD_SAMPLES} samples, noise seed {CARD_SEED}", CARD_FILE: "this model card"},
    write="dcgan.share.hub:write_weights", card="dcgan.share.hub:card", read="dcgan.share.hub:load_export",
    pretrained="dcgan.share.hub:from_pretrained", marks=(CONFIG_FILE, WEIGHTS_FILE), always=True,
), "the default, always written: the Hugging Face Hub layout")
EXPORT_FORMATS.register("onnx", ExportFormat(
    files={ONNX_FILE: "G for ONNX Runtime: input `z` (batch, nz), output `image`, dynamic batch"},
    write="dcgan.share.export:write_onnx", card="dcgan.share.export:onnx_card",
), "adds model.onnx: G with input z and a dynamic batch")


def export_format(name: str) -> ExportFormat:
    return EXPORT_FORMATS.load(name)


def to_write(names: tuple[str, ...]) -> list[str]:
    """The formats an export with `--format names` writes: those always written first, then the
    named ones, each once (an unknown name is the caller's to refuse)."""
    always = [n for n in EXPORT_FORMATS if export_format(n).always]
    return always + [n for n in dict.fromkeys(names) if n not in always]


def export_files() -> tuple[str, ...]:
    """Every file an export folder may hold: the files of every registered format."""
    return tuple(dict.fromkeys(f for n in EXPORT_FORMATS for f in export_format(n).files))


def reader(path: str | Path) -> ExportFormat | None:
    """The format that loads `--checkpoint PATH`, or None when PATH is not an export (a
    checkpoint file, or a run directory: it has checkpoints/). A folder holding one of a
    format's `marks` is that format's; formats written on top of the Hub layout are asked
    first, since their folders hold its files too. Complete or not: the reader says which."""
    p = Path(path).expanduser()
    if not p.is_dir() or (p / "checkpoints").is_dir():
        return None
    readable = [export_format(n) for n in EXPORT_FORMATS if export_format(n).read is not None]
    for fmt in sorted(readable, key=lambda f: f.always):
        if any((p / mark).is_file() for mark in fmt.marks):
            return fmt
    return None


def from_pretrained(cls: type, name_or_path: str | Path, **options: Any) -> Any:
    """`Generator.from_pretrained` / `Discriminator.from_pretrained`: the Hub layout's reader."""
    return export_format(HUB_LAYOUT).code("pretrained")(cls, name_or_path, **options)
