"""`dcgan export`: a checkpoint -> a self-describing folder in the Hugging Face Hub layout.

The folder (see `hub`) holds the weights as safetensors, the architecture as config.json, the
run's facts as training.json, a sample grid and a model card (README.md) that states the data,
the training length and config, the run's scores with their protocol, and how to load it.
Export formats are declared once, in `dcgan.formats.EXPORT_FORMATS`: each writes its files and
its section of the model card. The `onnx` format's code is here: G as model.onnx (z -> image,
any batch size).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from ..atomic import write_bytes, write_text
from ..checkpoint import load_models, resolve_checkpoint
from ..config import Config
from ..errors import DCGANError
from ..formats import (
    CARD_FILE,
    CARD_SAMPLES,
    CARD_SEED,
    CONFIG_FILE,
    EXPORT_FORMATS,
    ONNX_FILE,
    SAMPLES_FILE,
    WEIGHTS_FILE,
    export_files,
    export_format,
    reader,
    to_write,
)
from ..metrics import registry
from ..models import Discriminator, Generator
from ..sampling import generate, noise, save_grid
from . import hub
from .folder import clean_facts, marked

PROTOCOL_KEYS = ("features", "split", "n_real", "n_gen", "image_size", "clf_test_accuracy", "clf_weights")


# --- the run's facts ---------------------------------------------------------------------------


def run_facts(source: str | Path, cfg: Config, ckpt: dict[str, Any]) -> dict[str, Any]:
    """What the model card and the explorer say about a model: data, length, config, scores.

    From an export, its training.json (checked when the export was loaded: `ckpt` holds it);
    from a checkpoint, the checkpoint and its run's metrics.jsonl (every evaluation record, the
    latest per step). Either way in one shape (`folder.clean_facts`) and with the evaluations
    at or before the weights' step only.
    """
    from ..runlog import METRICS_FILE, read_metrics

    if "export" in ckpt:
        facts = {k: v for k, v in ckpt.items() if k != "export"}
        facts.setdefault("config", cfg.to_dict())
        return facts
    path = resolve_checkpoint(source)
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else {}
    step = ckpt.get("step", 0)
    per_rank, world = meta.get("per_rank_batch", cfg.train.batch_size), meta.get("world", 1)
    evals = read_metrics(run_dir / METRICS_FILE, "eval") if run_dir else []
    raw = {
        "source": f"{run_dir.name}/checkpoints/{path.name}" if run_dir else path.name,
        "step": step, "epoch": ckpt.get("epoch", 0),
        "images_shown": step * per_rank * world if all(isinstance(v, int) for v in (step, per_rank, world)) else None,
        "config": cfg.to_dict(), "best": ckpt.get("best"),
        "evals": [{k: v for k, v in r.items() if k != "kind"} for r in evals],
        "meta": meta, "generator": "ema" if "G_ema" in ckpt else "raw",
    }
    return clean_facts(raw, path, strict=False)


def pick_checkpoint(source: str | Path) -> tuple[Path | str, str]:
    """The checkpoint `dcgan export` takes, and why, in one line for the user and training.json.

    A run directory: its `checkpoints/best.pt` when the run has one (the best evaluation score),
    else its newest checkpoint (`resolve_checkpoint`). A checkpoint file or an earlier export:
    as given.
    """
    p = Path(source).expanduser()
    if reader(p) is not None:
        return source, "an earlier export, as given"
    if not p.is_dir():
        return source, "the checkpoint file, as given"
    best = p / "checkpoints" / "best.pt"
    if best.is_file():
        return best, (f"the run's best evaluation: a run directory exports its best.pt; pass "
                      f"{p.name}/checkpoints/last.pt for the newest weights")
    return resolve_checkpoint(p), "the run's newest checkpoint: the run has no best.pt"


# --- the model card ----------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def scores_markdown(facts: dict[str, Any]) -> str:
    """The run's evaluations as a table, the best marked, and the protocol they were scored with."""
    evals = list(facts.get("evals") or [])
    best = facts.get("best")
    if not evals and best:
        evals = [best]
    if not evals:
        return ("No evaluation was recorded for this run (it trained with `eval.every=0`). Score the "
                "export with `dcgan eval --checkpoint DIR` (see the project's docs/evaluation.md).\n")
    keys = [k for k in registry.ranked_keys() if any(k in r for r in evals)]
    best_step = best.get("step") if isinstance(best, dict) else None
    rows = ["| step | " + " | ".join(f"{k} ({'lower' if registry.lower_is_better(k) else 'higher'} is better)"
                                     for k in keys) + " |",
            "|---:|" + "---:|" * len(keys)]
    for r in evals:
        mark = " (best)" if r.get("step") == best_step else ""
        rows.append(f"| {r.get('step')}{mark} | " + " | ".join(_fmt(r.get(k, "")) for k in keys) + " |")
    last = evals[-1]
    proto = ", ".join(f"{k}={last[k]}" for k in PROTOCOL_KEYS if k in last)
    docs = "; ".join(f"`{m.name}`: {m.doc}" for m in registry.METRICS.values()
                     if any(k in keys for k in m.keys) and m.doc)
    ev = facts.get("config", {}).get("eval", {})
    this = facts.get("step")
    note = ("These weights are from step {} ({}).".format(
        this, "the best evaluation" if this == best_step else "not an evaluated step" if
        all(r.get("step") != this for r in evals) else "an evaluated step"))
    return ("\n".join(rows) + "\n\n"
            f"Protocol: {ev.get('num_samples', '?')} samples per evaluation from noise seed {ev.get('seed', '?')}, "
            f"compared with every image of the real `{ev.get('split', '?')}` split ({proto}). {docs}. {note}\n")


def card_files(formats: list[str], *, with_discriminator: bool) -> dict[str, str]:
    """The card's Files table: every file of the formats written, and what it holds."""
    files = {f: what for name in formats for f, what in export_format(name).files.items()}
    if with_discriminator:
        files[WEIGHTS_FILE] += " and D's (under `discriminator.`)"
    return files


def model_card(facts: dict[str, Any], formats: list[str], *, with_discriminator: bool = False) -> str:
    """README.md of an export: Hub metadata, then data, training, scores, samples, then each
    format's section (how to load it) and the files."""
    cfg = facts.get("config", {})
    data, model, train = cfg.get("data", {}), cfg.get("model", {}), cfg.get("train", {})
    name, S, C = data.get("name", "?"), data.get("image_size", "?"), data.get("channels", "?")
    front = {"library_name": "dcgan", "license": "mit", "pipeline_tag": "unconditional-image-generation",
             "tags": ["dcgan", "gan", "unconditional-image-generation", "model_hub_mixin",
                      "pytorch_model_hub_mixin"], "datasets": [name]}
    subset = f"the first {data['subset']} images of " if data.get("subset") else ""
    picked = f" ({facts['picked']})" if facts.get("picked") else ""
    shown = f"{facts['images_shown']:,}" if isinstance(facts.get("images_shown"), int) else "?"
    sections = "".join(export_format(n).code("card")(facts) for n in formats if export_format(n).card is not None)
    files = card_files(formats, with_discriminator=with_discriminator)
    file_rows = "\n".join(f"| `{f}` | {what} |" for f, what in files.items())
    return f"""---
{yaml.safe_dump(front, sort_keys=False).strip()}
---

# DCGAN generator: {name}, {S}x{S}, {C} channel(s), step {facts.get('step', '?')}

A DCGAN generator (Radford, Metz and Chintala 2016, [arXiv:1511.06434](https://arxiv.org/abs/1511.06434))
trained with the `dcgan` package: z, {model.get('nz')} numbers drawn {model.get('z_dist')}ly
({'U[-1, 1]' if model.get('z_dist') == 'uniform' else 'N(0, 1)'}), -> a ({C}, {S}, {S}) image in [-1, 1].

![{CARD_SAMPLES} samples, noise seed {CARD_SEED}]({SAMPLES_FILE})

{CARD_SAMPLES} samples from noise seed {CARD_SEED} (BatchNorm in eval mode):
`dcgan sample --checkpoint DIR --num {CARD_SAMPLES} --seed {CARD_SEED} --out {SAMPLES_FILE}` draws this grid again.

## Data

{subset}`{name}`, split `{data.get('split')}`, resized to {S}x{S} with {C} channel(s).

## Training

{facts.get('step', '?')} steps ({shown} images shown),
batch {train.get('batch_size')}, Adam (lr G {train.get('lr_g')}, lr D {train.get('lr_d')}, beta1 {train.get('beta1')}),
seed {train.get('seed')}, {train.get('precision')}; exported from `{facts.get('source', '?')}`{picked}
(dcgan {(facts.get('meta') or {}).get('version', '?')}, torch {(facts.get('meta') or {}).get('torch', '?')}).
The full training config (`dcgan train --config` takes it as it is):

```yaml
{yaml.safe_dump(cfg, sort_keys=False).strip()}
```

## Scores

{scores_markdown(facts)}
{sections}
## Files

| file | contents |
|---|---|
{file_rows}
"""


# --- the onnx format ---------------------------------------------------------------------------


def write_onnx(folder: Path, G: Generator, D: Discriminator | None, cfg: Config, facts: dict[str, Any]) -> None:
    """G alone as ONNX: input `z` (batch, nz), output `image` (batch, C, S, S); batch is dynamic."""
    G = G.cpu().eval()
    z = noise(2, cfg.model.nz, cfg.model.z_dist, 0)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(G, (z,), buf, input_names=["z"], output_names=["image"],
                          dynamic_axes={"z": {0: "batch"}, "image": {0: "batch"}}, dynamo=False)
    write_bytes(folder / ONNX_FILE, buf.getvalue())


def onnx_card(facts: dict[str, Any]) -> str:
    """The model card's section for model.onnx: sampling it with ONNX Runtime alone."""
    cfg = facts.get("config", {})
    model, data = cfg.get("model", {}), cfg.get("data", {})
    S, C = data.get("image_size", "?"), data.get("channels", "?")
    return ("\nWith ONNX Runtime alone (no PyTorch):\n\n```python\nimport numpy as np, onnxruntime as ort\n"
            f"sess = ort.InferenceSession(\"DIR/{ONNX_FILE}\")\n"
            f"z = np.random.uniform(-1, 1, (16, {model.get('nz')})).astype(np.float32)\n"
            f"images = sess.run(None, {{\"z\": z}})[0]  # (16, {C}, {S}, {S}) in [-1, 1]\n```\n")


# --- export ------------------------------------------------------------------------------------
#
# The folder is written whole or not at all: every file goes into a temporary sibling
# (`.NAME.dcgan-partial-PID`), config.json last, and the sibling is then renamed into place
# (swapped with an earlier export atomically where the kernel can: renameat2 RENAME_EXCHANGE).
# A kill at any point leaves the earlier export or none at --out, plus a hidden sibling that
# the next export to the same folder removes. --out is written only when it is absent, empty
# or an earlier export (config.json's marker, and no file an export does not write).

PARTIAL, OLD = ".dcgan-partial-", ".dcgan-old-"


def _check_out(out: Path, source: str | Path) -> None:
    """A one-line error, before anything is written, unless --out is ours to write."""
    if out.exists() and not out.is_dir():
        raise DCGANError(f"--out {str(out)!r} is a file; pass a folder for the export")
    if out.resolve() == Path(source).expanduser().resolve():
        raise DCGANError(f"--out {str(out)!r} is the model being exported; pass another folder")
    if not out.is_dir():
        return
    names = sorted(p.name for p in out.iterdir())
    if not names:
        return
    if not marked(out):
        marker = "its config.json has no dcgan-export marker" if (out / CONFIG_FILE).exists() else "no config.json"
        raise DCGANError(f"--out {str(out)!r} is not empty and not an earlier export ({', '.join(names[:3])}"
                         f"{', ...' if len(names) > 3 else ''}: {marker}), so nothing was written to it; "
                         "pass a new or empty folder")
    known = export_files()
    foreign = [n for n in names if n not in known]
    if foreign or any(not (out / n).is_file() or (out / n).is_symlink() for n in names):
        what = foreign or [n for n in names if not (out / n).is_file() or (out / n).is_symlink()]
        raise DCGANError(f"--out {str(out)!r} is an earlier export that also holds {', '.join(what[:3])}, which "
                         "re-exporting would delete; move it out of the folder or pass a new or empty folder")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _clean_leftovers(out: Path) -> None:
    """Remove the temporary siblings that killed exports to `out` left (their process is gone)."""
    for tag in (PARTIAL, OLD):
        for p in out.parent.glob(f".{glob.escape(out.name)}{tag}*"):
            pid = p.name.rsplit("-", 1)[-1]
            if p.is_dir() and not p.is_symlink() and pid.isdigit() and not _alive(int(pid)):
                _discard(p)


def _discard(folder: Path) -> None:
    """Delete a folder of ours: the files an export writes, then the folder if that empties it."""
    for name in export_files():
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            (folder / name).unlink()
    for tmp in folder.glob(".*.tmp*"):  # atomic_write's temp files of a killed export
        with contextlib.suppress(OSError):
            tmp.unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder to --out: over an absent or empty folder directly, with an
    earlier export by an atomic swap (else two renames), then discard the earlier one."""
    if out.is_dir() and any(out.iterdir()):
        old = out.parent / f".{out.name}{OLD}{os.getpid()}"
        if _exchange(tmp, out):
            old = tmp
        else:
            os.rename(out, old)
            os.rename(tmp, out)
        _discard(old)
    else:
        os.rename(tmp, out)  # replaces an empty folder
    with contextlib.suppress(OSError):  # the rename itself on disk
        fd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write(folder: Path, G: Generator, D: Discriminator | None, cfg: Config, facts: dict[str, Any],
           formats: list[str]) -> None:
    """Each format's files, the card's sample grid, the model card, then config.json (last)."""
    for name in formats:
        export_format(name).code("write")(folder, G, D, cfg, facts)
    # The card's sample grid: exactly what `dcgan sample --num 64 --seed 0` writes.
    z = noise(CARD_SAMPLES, cfg.model.nz, cfg.model.z_dist, CARD_SEED)
    save_grid(generate(G, z), folder / SAMPLES_FILE)
    write_text(folder / CARD_FILE, model_card(facts, formats, with_discriminator=D is not None))
    hub.write_config(folder, cfg, with_discriminator=D is not None, generator=facts.get("generator", "raw"))


def export_model(checkpoint: str | Path, out: str | Path, *, with_discriminator: bool = False,
                 formats: tuple[str, ...] = (), log: Callable[[str], Any] | None = None) -> Path:
    """Write the export folder for a checkpoint (file or run directory: its best.pt if any, see
    `pick_checkpoint`) or an earlier export, in the formats always written and `formats`
    (`dcgan.formats.EXPORT_FORMATS`); `log` gets the line saying which checkpoint."""
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown:
        raise DCGANError(f"--format {','.join(unknown)} is not supported; use {', '.join(EXPORT_FORMATS)}")
    out = Path(out).expanduser()
    if out.is_symlink():  # write where it points (renaming over the link would replace the link)
        out = out.resolve()
    _check_out(out, checkpoint)
    source, why = pick_checkpoint(checkpoint)
    if log is not None:
        log(f"exporting {source} ({why})")
    G, D, cfg, ckpt = load_models(source, "cpu")
    if with_discriminator and D is None:
        raise DCGANError(f"{str(checkpoint)!r} was exported without the discriminator; "
                         "--with-discriminator needs the run's checkpoint")
    facts = run_facts(source, cfg, ckpt)
    if "export" not in ckpt:  # re-exporting an export keeps the choice it recorded
        facts["picked"] = why
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(out)
    tmp = out.parent / f".{out.name}{PARTIAL}{os.getpid()}"
    _discard(tmp)
    tmp.mkdir()
    try:
        _write(tmp, G, D if with_discriminator else None, cfg, facts, to_write(formats))
        _check_out(out, checkpoint)  # still ours (nothing was added to it meanwhile)
        _move_into_place(tmp, out)
    finally:
        if tmp.exists():
            _discard(tmp)
    return out


def describe(out: Path) -> str:
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    size = sum((out / f).stat().st_size for f in files)
    return f"exported to {out}/ ({', '.join(files)}; {size / 1e6:.1f} MB)"
