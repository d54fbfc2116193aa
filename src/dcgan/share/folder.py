"""An exported folder, read and checked before anything is built from it (no networks here).

Every loader of an export goes through `open_export`: `Generator.from_pretrained`, `dcgan sample`,
`eval`, `nn`, `serve`, `export` and the paper commands (through `checkpoint.load_models`). It
refuses, in one line naming the file and the fix:

- a folder an interrupted export left (its config.json, written last, is missing, or a file
  config.json lists is absent);
- a config.json that is not a small JSON object, names another format or a newer version, or
  whose settings fail the project's config validation (`config.from_dict`: types, choices,
  ranges and the parameter budget), so a hostile `ngf` cannot allocate gigabytes;
- a training.json that is not a small JSON object of the expected shape (`clean_facts`), or
  whose training config disagrees with config.json's architecture;
- weights whose names or shapes do not fit the architecture, read from the safetensors header
  before a tensor is allocated (`read_weights`). Non-finite weights are refused when they are
  loaded into a network (`models.load_weights`, shared with checkpoints).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config, from_dict
from ..errors import CheckpointError, DCGANError
from ..formats import CONFIG_FILE, TRAINING_FILE, WEIGHTS_FILE, export_files

D_PREFIX = "discriminator."  # D's tensors in an export's model.safetensors (G's have no prefix)
FORMAT = "dcgan-export"  # config.json's marker: the folder was written by `dcgan export`
FORMAT_VERSION = 1
MAX_CONFIG_BYTES = 1_000_000  # config.json is a few hundred bytes
MAX_FACTS_BYTES = 16_000_000  # training.json: a config and the run's evaluation records
MAX_RECORDS = 100_000  # evaluation records in training.json
MAX_TEXT = 500  # characters of a text value in training.json
INT_LIMIT = 2**63 - 1

REEXPORT = "re-export the model with `dcgan export`"


def _bad(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"{str(path)!r} {problem}; {REEXPORT}")


def read_json(path: Path, limit: int) -> dict[str, Any]:
    """A JSON object from a file of at most `limit` bytes, or a one-line CheckpointError."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise _bad(path, f"is {size / 1e6:.1f} MB, not the small JSON file an export holds")
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as e:
        raise _bad(path, f"is not readable JSON ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise _bad(path, "is not a JSON object")
    return data


def marked(path: str | Path) -> bool:
    """Whether `path` holds a config.json written by `dcgan export` (its `format` marker): the
    proof that `dcgan export --out` may rewrite the folder."""
    p = Path(path).expanduser() / CONFIG_FILE
    if not p.is_file():
        return False
    try:
        return read_json(p, MAX_CONFIG_BYTES).get("format") == FORMAT
    except CheckpointError:
        return False


# --- the run's facts (training.json) -------------------------------------------------------------


def _int(value: Any, name: str, where: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT_LIMIT:
        raise _bad(where, f"has {name}={str(value)[:40]!r}, not a whole number >= 0")
    return value


_DROP = object()


def _scalar(value: Any) -> Any:
    """A value of a record: numbers (non-finite or out-of-range ones become null), short text,
    true/false, null; anything else (lists, objects) is dropped."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) <= INT_LIMIT else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value[:MAX_TEXT]
    return _DROP


def _record(rec: Any, name: str, where: Path) -> dict[str, Any]:
    """A flat record (scores, protocol, versions): a JSON object of at most 200 entries whose
    `step`, if any, is a whole number; values that are not numbers or text are dropped."""
    if not isinstance(rec, dict) or len(rec) > 200:
        raise _bad(where, f"has {name} that is not a record (a JSON object of scores)")
    out = {str(k)[:100]: v for k, v in ((k, _scalar(v)) for k, v in rec.items()) if v is not _DROP}
    if "step" in rec:
        out["step"] = _int(rec["step"], f"{name}.step", where)
    return out


def clean_facts(raw: Any, where: Path, *, strict: bool = True) -> dict[str, Any]:
    """The run's facts in the shape the model card and the explorer use, whatever the file held.

    `strict` (training.json): a field of the wrong type is a one-line error. Otherwise (records
    read from a run's metrics.jsonl) malformed records are dropped. Either way evaluations after
    the weights' step are dropped: the card of an early checkpoint lists what was known then.
    """
    if not isinstance(raw, dict):
        raise _bad(where, "is not a JSON object")
    step = _int(raw.get("step", 0), "step", where)
    facts: dict[str, Any] = {"step": step, "epoch": _int(raw.get("epoch", 0), "epoch", where)}
    shown = raw.get("images_shown")
    facts["images_shown"] = None if shown is None else _int(shown, "images_shown", where)
    for key in ("source", "generator", "picked"):
        if key in raw:
            if not isinstance(raw[key], str):
                raise _bad(where, f"has {key} of type {type(raw[key]).__name__}, not text")
            facts[key] = raw[key][:MAX_TEXT]
    if "config" in raw:
        if not isinstance(raw["config"], dict):
            raise _bad(where, "has a config that is not a JSON object")
        facts["config"] = raw["config"]
    meta = raw.get("meta") or {}
    if not isinstance(meta, dict):
        raise _bad(where, "has meta that is not a JSON object")
    facts["meta"] = _record(meta, "meta", where)

    def keep(rec: Any, name: str) -> dict[str, Any] | None:
        try:
            return _record(rec, name, where)
        except CheckpointError:
            if strict:
                raise
            return None

    best = raw.get("best")
    best = None if best is None else keep(best, "best")
    facts["best"] = best if best is not None and best.get("step", 0) <= step else None
    evals = raw.get("evals") or []
    if not isinstance(evals, list) or len(evals) > MAX_RECORDS:
        raise _bad(where, f"has evals that are not a list of at most {MAX_RECORDS} records")
    kept = [keep(r, f"evals[{i}]") for i, r in enumerate(evals)]
    facts["evals"] = [r for r in kept if r is not None and isinstance(r.get("step"), int) and r["step"] <= step]
    return facts


# --- the folder ----------------------------------------------------------------------------------


@dataclass
class Export:
    """A checked export folder: its architecture (validated), its facts, the files it lists."""

    path: Path
    arch: dict[str, Any]
    cfg: Config  # the training config (from training.json) or the architecture alone
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def generator(self) -> str:
        """'ema' when the exported G is the averaged one of a run trained with train.ema."""
        kind = self.arch.get("generator") or self.facts.get("generator")
        if kind in ("ema", "raw"):
            return kind
        return "ema" if self.cfg.train.ema > 0 else "raw"

    def read_weights(self, prefix: str, shapes: dict[str, tuple[int, ...]], what: str) -> dict[str, Any]:
        """The tensors under `prefix` (stripped), after checking from the header alone that their
        names and shapes are `shapes` (those of the network config.json describes)."""
        from safetensors import SafetensorError, safe_open

        path = self.path / WEIGHTS_FILE
        try:
            with safe_open(str(path), framework="pt") as f:
                keys = [k for k in f.keys() if (k.startswith(prefix) if prefix else not k.startswith(D_PREFIX))]
                if not keys and prefix:
                    raise CheckpointError(f"{str(self.path)!r} holds no discriminator; export it with "
                                          "`dcgan export --with-discriminator` or use the run's checkpoint")
                found = {k[len(prefix):]: tuple(f.get_slice(k).get_shape()) for k in keys}
                if found != shapes:
                    raise CheckpointError(f"{str(path)!r} does not fit its {CONFIG_FILE} ({what}: "
                                          f"{_difference(found, shapes)}); {REEXPORT}")
                return {k[len(prefix):]: f.get_tensor(k) for k in keys}
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise _bad(path, f"is not readable safetensors ({str(e).splitlines()[0][:100]})") from None

    def has_discriminator(self) -> bool:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(self.path / WEIGHTS_FILE), framework="pt") as f:
                return any(k.startswith(D_PREFIX) for k in f.keys())
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise _bad(self.path / WEIGHTS_FILE, f"is not readable safetensors ({str(e).splitlines()[0][:100]})"
                       ) from None


def _difference(found: dict[str, tuple], want: dict[str, tuple]) -> str:
    missing = sorted(set(want) - set(found))
    extra = sorted(set(found) - set(want))
    if missing:
        return f"{missing[0]} missing" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
    if extra:
        return f"unexpected {extra[0]}" + (f" and {len(extra) - 1} more" if len(extra) > 1 else "")
    k = next(k for k in want if found[k] != want[k])
    return f"{k} is {list(found[k])}, the architecture needs {list(want[k])}"


def architecture_config(arch: dict[str, Any], where: Path) -> Config:
    """config.json's architecture as a validated Config (ranges, choices, the parameter budget)."""
    model, size, channels = arch.get("cfg"), arch.get("image_size"), arch.get("channels")
    if not isinstance(model, dict) or size is None or channels is None:
        raise _bad(where, "does not hold the model settings (cfg, image_size, channels)")
    try:
        return from_dict({"model": model, "data": {"image_size": size, "channels": channels}})
    except DCGANError as e:
        raise _bad(where, f"holds settings this version cannot build ({e})") from None


def _check_listing(folder: Path, arch: dict[str, Any], where: Path, complete: bool) -> None:
    if "format" in arch and arch["format"] != FORMAT:
        raise _bad(where, f"names the format {str(arch['format'])[:40]!r}, not {FORMAT!r}")
    version = arch.get("format_version", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{str(where)!r} is format version {str(version)[:20]}, newer than this dcgan reads "
                              f"({FORMAT_VERSION}); upgrade dcgan or {REEXPORT}")
    listed = arch.get("files", [WEIGHTS_FILE])
    known = export_files()  # the files of every registered format (`dcgan.formats`)
    if not isinstance(listed, list) or not all(isinstance(f, str) and f in known for f in listed):
        raise _bad(where, "lists files that are not an export's")
    for name in listed if complete else [WEIGHTS_FILE]:
        if not (folder / name).is_file():
            raise CheckpointError(f"{str(folder)!r} is an incomplete export ({name} is missing: the export was "
                                  f"interrupted or the folder copied in part); {REEXPORT}")


def open_export(path: str | Path, *, complete: bool = True) -> Export:
    """Check an exported folder (see the module docstring) and return it; builds nothing.

    `complete`: every file config.json lists must be there (a Hub download of config.json and
    the weights alone passes `False`)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"{str(folder)!r} is not a folder; pass a folder written by `dcgan export`")
    where = folder / CONFIG_FILE
    if not where.is_file():
        raise CheckpointError(f"{str(folder)!r} has no {CONFIG_FILE}: an incomplete export (interrupted before its "
                              f"last file) or not an export; {REEXPORT}")
    arch = read_json(where, MAX_CONFIG_BYTES)
    _check_listing(folder, arch, where, complete)
    if not (folder / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{str(folder)!r} has no {WEIGHTS_FILE}: an incomplete export; {REEXPORT}")
    cfg = architecture_config(arch, where)
    facts_path = folder / TRAINING_FILE
    facts: dict[str, Any] = {}
    if facts_path.is_file():
        facts = clean_facts(read_json(facts_path, MAX_FACTS_BYTES), facts_path)
        if "config" in facts:
            try:
                full = from_dict(facts["config"])
            except DCGANError as e:
                raise _bad(facts_path, f"holds a training config this version cannot read ({e})") from None
            if (asdict(full.model), full.data.image_size, full.data.channels) != \
                    (asdict(cfg.model), cfg.data.image_size, cfg.data.channels):
                raise _bad(facts_path, f"holds a training config of another architecture than {CONFIG_FILE}")
            cfg = full
    return Export(folder, arch, cfg, facts)
