"""A small CNN classifier trained on the real training split: the offline feature network.

Where the Inception-v3 weights cannot be downloaded, a classifier the project trains itself
gives features for a Frechet distance (`fd_clf`, never called FID: its numbers are not
comparable with published FIDs), and predictions for class coverage and a classifier IS.

The trained network is cached on disk, keyed by dataset, split, image size, channels, seed
(and epochs / image count; for a prepared dataset, whose name does not say which images,
also its content fingerprint), with its test accuracy recorded in the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import load_cache, save_cache
from ..config import DataConfig
from ..data import data_fingerprint, dataset_spec, load_images
from ..errors import DCGANError
from ..pixels import to_model_range

log = logging.getLogger(__name__)

FEATURE_DIM = 128


class Classifier(nn.Module):
    """uint8-derived images (B, C, S, S) in [-1, 1] -> logits (B, K); `features` -> (B, 128)."""

    def __init__(self, channels: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int) -> nn.Sequential:
            # Strided convs, no pooling (as DCGAN's D, §3): 8x cheaper than conv + max-pool on a CPU.
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.body = nn.Sequential(
            block(channels, w),  # (B, w, S/2, S/2)
            block(w, 2 * w),  # (B, 2w, S/4, S/4)
            block(2 * w, 4 * w),  # (B, 4w, S/8, S/8)
            nn.AdaptiveAvgPool2d(4),  # (B, 4w, 4, 4) for any image size
            nn.Flatten(),
            nn.Linear(4 * w * 16, FEATURE_DIM),
            nn.ReLU(inplace=True),  # (B, 128): the penultimate features behind fd_clf
        )
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def weights_digest(net: nn.Module) -> str:
    """A short hash of a network's weights (names and bytes)."""
    h = hashlib.sha1()
    for key, t in net.state_dict().items():
        h.update(key.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:8]


@dataclass
class TrainedClassifier:
    """A classifier with what it was trained on."""

    net: Classifier
    info: dict[str, Any]  # dataset, split, image_size, channels, seed, epochs, num_train, test_accuracy, ...
    path: Path | None = None

    @property
    def name(self) -> str:
        """The feature network's name in reports and cache keys (the cache file's stem)."""
        return self.path.stem if self.path is not None else classifier_key(**{
            k: self.info[k] for k in ("dataset", "split", "image_size", "channels", "seed", "epochs", "num_train")})

    @property
    def digest(self) -> str:
        """A short hash of the weights (for cache keys: retraining keeps the name, not the weights)."""
        return weights_digest(self.net)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 500) -> dict[str, np.ndarray]:
        """uint8 images (N, C, S, S) -> {"features": (N, 128), "logits": (N, K)} float64 arrays."""
        self.net.eval()
        device = next(self.net.parameters()).device
        feats, logits = [], []
        for i in range(0, images.shape[0], batch_size):
            x = to_model_range(images[i:i + batch_size].to(device))
            f = self.net.features(x)
            feats.append(f.double().cpu())
            logits.append(self.net.head(f).double().cpu())
        return {"features": torch.cat(feats).numpy(), "logits": torch.cat(logits).numpy()}


def classifier_key(dataset: str, split: str, image_size: int, channels: int, seed: int, epochs: int,
                   num_train: int = 0) -> str:
    n = f"-n{num_train}" if num_train else ""
    return f"clf-{dataset}-{split}-{image_size}px-{channels}ch-seed{seed}-e{epochs}{n}"


def classifier_path(data_cfg: DataConfig, *, split: str = "train", seed: int = 0, epochs: int = 2) -> Path:
    key = classifier_key(data_cfg.name, split, data_cfg.image_size, data_cfg.channels, seed, epochs,
                         data_cfg.subset)
    if dataset_spec(data_cfg.name).arrays is not None:
        # Prepared data: the name `prepared` does not say which images and labels it holds (two
        # prepared datasets with labels must not share one classifier), so its content is in the key.
        # (A folder has no labels: no classifier is ever trained for one.)
        key += f"-{data_fingerprint(data_cfg, split)}"
    return Path(data_cfg.cache_dir).expanduser() / "classifiers" / f"{key}.pt"


def _labelled(data_cfg: DataConfig, split: str):
    data = load_images(data_cfg, split)
    if data.labels is None or (data.labels < 0).all():
        raise DCGANError(f"{data_cfg.name} ({split}) has no class labels, so there is no classifier for it; "
                         "use the Inception metrics (fid, kid, is, pr) instead")
    return data


def accuracy(clf: TrainedClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    pred = clf(images)["logits"].argmax(1)
    return float((torch.from_numpy(pred) == labels).float().mean())


def train_classifier(data_cfg: DataConfig, *, split: str = "train", test_split: str = "test", epochs: int = 2,
                     seed: int = 0, batch_size: int = 128, lr: float = 2e-3,
                     device: torch.device | str = "cpu", save: bool = True) -> TrainedClassifier:
    """Train the classifier on `split` (Adam, one-cycle schedule), measure it on `test_split`."""
    device = torch.device(device)
    train = _labelled(data_cfg, split)
    num_classes = int(train.labels.max()) + 1
    torch.manual_seed(seed)
    net = Classifier(data_cfg.channels, num_classes).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps_per_epoch = max(1, len(train) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    net.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(train), generator=g)
        total = 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            x = to_model_range(train.images[idx].to(device))
            y = train.labels[idx].to(device)
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        log.info("classifier epoch %d/%d: train loss %.3f", epoch + 1, epochs, total / steps_per_epoch)
    seconds = time.perf_counter() - start
    info: dict[str, Any] = {
        "dataset": data_cfg.name, "split": split, "image_size": data_cfg.image_size,
        "channels": data_cfg.channels, "seed": seed, "epochs": epochs, "num_train": data_cfg.subset,
        "num_train_images": len(train), "num_classes": num_classes, "train_seconds": round(seconds, 1),
        "train_class_freq": torch.bincount(train.labels, minlength=num_classes).double().div(len(train)).tolist(),
    }
    clf = TrainedClassifier(net.eval(), info)
    test = _labelled(dataclasses.replace(data_cfg, subset=0), test_split)
    info.update(test_split=test_split, num_test=len(test), test_accuracy=accuracy(clf, test.images, test.labels))
    log.info("classifier: test accuracy %.4f on %d %s images (%.0f s training)",
             info["test_accuracy"], len(test), test_split, seconds)
    if save:
        clf.path = save_cache({"state": net.state_dict(), "info": info},
                              classifier_path(data_cfg, split=split, seed=seed, epochs=epochs), "classifier")
    return clf


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> TrainedClassifier:
    """A classifier file written by `dcgan classifier`, loaded without running code (weights_only)."""
    path = Path(path)
    try:
        blob = load_cache(path)
        info = blob["info"]
        net = Classifier(info["channels"], info["num_classes"])
        net.load_state_dict(blob["state"])
        info["test_accuracy"] = float(info["test_accuracy"])
    except Exception as e:  # unreadable, torn, another format, or a pickle that would run code
        raise DCGANError(f"{str(path)!r} is not a classifier written by `dcgan classifier` "
                         f"({type(e).__name__}); pass such a file, or delete it and run `dcgan classifier` "
                         "again") from None
    return TrainedClassifier(net.to(device).eval(), info, path)


def get_classifier(data_cfg: DataConfig, *, split: str = "train", seed: int = 0, epochs: int = 2,
                   device: torch.device | str = "cpu", train_if_missing: bool = True,
                   force: bool = False) -> TrainedClassifier:
    """The cached classifier for this dataset/split/size/channels/seed, trained first if missing
    (or unreadable: a corrupt cache file is replaced, with a warning), or always with `force`."""
    path = classifier_path(data_cfg, split=split, seed=seed, epochs=epochs)
    if path.is_file() and not force:
        try:
            return load_classifier(path, device)
        except DCGANError:
            if not train_if_missing:
                raise
            log.warning("the cached classifier %s is unreadable; training it again", path)
    elif not train_if_missing and not force:
        raise DCGANError(f"no classifier for {data_cfg.name} at {data_cfg.image_size}px ({path} is missing); "
                         f"run `dcgan classifier --dataset {data_cfg.name} --image-size {data_cfg.image_size}`")
    log.info("training the evaluation classifier on %s %s (%dpx, once; cached at %s)",
             data_cfg.name, split, data_cfg.image_size, path)
    return train_classifier(data_cfg, split=split, epochs=epochs, seed=seed, device=device)
