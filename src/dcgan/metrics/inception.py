"""The standard Inception-v3 FID network, through torchmetrics (torch-fidelity's port).

The network is torchmetrics' `NoTrainInceptionV3` (torch-fidelity's `FeatureExtractorInceptionV3`
with the TensorFlow FID weights, bilinear resize to 299x299 with antialiasing): exactly the
one `torchmetrics.image.fid.FrechetInceptionDistance` uses, so `fid` here equals that
library's FID for the same images. Pool features (2048) give FID, KID and precision/recall;
the logits (1008, bias-free "logits_unbiased" as in torch-fidelity) give the Inception Score.

Weights: torch-fidelity downloads them on first use where there is internet. Offline, point
`--inception-weights FILE` or the environment variable DCGAN_INCEPTION_WEIGHTS at the file
torch-fidelity downloads (weights-inception-2015-12-05-6726825d.pth: a plain PyTorch state
dict of FeatureExtractorInceptionV3).

Loading runs no code: torch-fidelity would `torch.load(weights_only=False)` the file (a crafted
pickle executes), so the weights are loaded here with `weights_only=True`, checked to be a dict
of tensors, and handed to the network from memory.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DCGANError

ENV_WEIGHTS = "DCGAN_INCEPTION_WEIGHTS"
WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"  # what torch-fidelity downloads
POOL, LOGITS = "2048", "logits_unbiased"


def resolve_weights(path: str | None = None) -> str | None:
    """The local weights file to use: the argument, else $DCGAN_INCEPTION_WEIGHTS, else None
    (download). A path that does not exist is an error, not a silent download."""
    path = path or os.environ.get(ENV_WEIGHTS) or None
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_file():
        raise DCGANError(f"Inception weights file {str(p)!r} not found; pass the {WEIGHTS_FILE} file that "
                         f"torch-fidelity downloads via --inception-weights or ${ENV_WEIGHTS}")
    return str(p)


def weights_id(path: str | None) -> str:
    """A short name for the feature network, for cache keys and reports."""
    if path is None:
        return "inception-v3-tf2015"
    h = hashlib.sha1()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise DCGANError(f"cannot read the Inception weights {path!r} ({e.strerror or type(e).__name__}); "
                         "check the file and its permissions") from None
    return f"inception-v3-{h.hexdigest()[:10]}"


def load_weights(path: str | None) -> dict[str, torch.Tensor]:
    """The network's state dict, loaded without running code: `torch.load(weights_only=True)` for
    a local file (a pickle that would run code is refused), the same for the download."""
    if path is None:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

        try:
            state = torch.hub.load_state_dict_from_url(URL_INCEPTION_V3, map_location="cpu", progress=False,
                                                       weights_only=True)
        except OSError as e:  # URLError is an OSError
            reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
            raise DCGANError(f"could not download the Inception-v3 FID weights ({reason}); offline, get "
                             f"{WEIGHTS_FILE} elsewhere and pass --inception-weights FILE or set "
                             f"${ENV_WEIGHTS}") from None
        except Exception as e:  # a corrupt or hostile file in torch's hub cache
            raise DCGANError(f"the cached Inception-v3 FID weights in torch's hub cache are not a plain "
                             f"state dict ({type(e).__name__}); delete {WEIGHTS_FILE} from "
                             f"{torch.hub.get_dir()}/checkpoints and try again") from None
        where = f"the downloaded {WEIGHTS_FILE}"
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except OSError as e:
            raise DCGANError(f"cannot read the Inception weights {path!r} ({e.strerror or type(e).__name__}); "
                             "check the file and its permissions") from None
        except Exception as e:  # UnpicklingError for a pickle that would run code, others for junk
            raise DCGANError(f"Inception weights {path!r} are not a plain tensor file ({type(e).__name__}), so "
                             f"they were not loaded (a file that runs code when loaded is refused); pass "
                             f"torch-fidelity's {WEIGHTS_FILE}") from None
        where = repr(path)
    if not (isinstance(state, dict) and state and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                      for k, v in state.items())):
        raise DCGANError(f"{where} is not torch-fidelity's Inception-v3 state dict (not a dict of tensors); "
                         f"pass the {WEIGHTS_FILE} file")
    return state


def _as_file(state: dict[str, torch.Tensor]) -> io.BytesIO:
    """The checked state dict re-serialised in memory: torch-fidelity only takes a path or a
    download and unpickles it fully, so it gets bytes written here from plain tensors."""
    buf = io.BytesIO()
    torch.save({k: v.detach().clone() for k, v in state.items()}, buf)
    buf.seek(0)
    return buf


class InceptionFeatures:
    """uint8 images (N, C, S, S) -> {"pool": (N, 2048), "logits": (N, 1008)} float64 arrays."""

    def __init__(self, weights: str | None = None, device: torch.device | str = "cpu",
                 batch_size: int = 64, pool: str = POOL, logits: bool = True) -> None:
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3
        except ImportError:  # pragma: no cover - torchmetrics is a dependency
            raise DCGANError("Inception metrics need torchmetrics; run `pip install torchmetrics torch-fidelity`") from None
        try:
            import torch_fidelity  # noqa: F401
        except ImportError:
            raise DCGANError("Inception metrics need torch-fidelity; run `pip install torch-fidelity`") from None
        self.weights = resolve_weights(weights)
        self.name = weights_id(self.weights)
        state = load_weights(self.weights)
        try:
            # `pool` other than 2048 (64, 192, 768) only for quick tests: FID is defined on 2048.
            self.features_list = [pool, LOGITS] if logits else [pool]
            self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=self.features_list,
                                          feature_extractor_weights_path=_as_file(state))
        except RuntimeError as e:  # load_state_dict: missing or mis-shaped tensors
            reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
            raise DCGANError(f"{self.weights or WEIGHTS_FILE!r} is not torch-fidelity's Inception-v3 state dict "
                             f"({reason}); pass the {WEIGHTS_FILE} file") from None
        self.net.to(device)
        self.device, self.batch_size = torch.device(device), batch_size

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        pools, logits = [], []
        for i in range(0, images.shape[0], self.batch_size):
            x = images[i:i + self.batch_size].to(self.device)
            if x.shape[1] == 1:  # grayscale -> the RGB the network expects
                x = x.expand(-1, 3, -1, -1)
            # The tuple of requested features (torchmetrics' forward keeps only the first).
            out = self.net._torch_fidelity_forward(x)
            pools.append(out[0].double().cpu())
            if len(out) > 1:
                logits.append(out[1].double().cpu())
        feats = {"pool": torch.cat(pools).numpy()}
        if logits:
            feats["logits"] = torch.cat(logits).numpy()
        return feats


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))) (Salimans et al. 2016): (mean, std) over `splits` splits.

    Works for any classifier's logits (`is_clf` uses the project's classifier)."""
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    log_p = logits.log_softmax(1)
    scores = []
    for lp in log_p.chunk(splits, dim=0):
        p = lp.exp()
        log_py = p.mean(0, keepdim=True).log()
        scores.append((p * (lp - log_py)).sum(1).mean().exp().item())
    return float(np.mean(scores)), float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0
