"""The project's name -> implementation tables that the config names, each declared once.

    LOSSES         train.loss        dcgan.losses.objectives (a Loss class per entry)
    AUGMENTATIONS  train.augment     dcgan.augment (a function (images, generator) -> images)
    D_NORMS        model.d_norm      dcgan.models (a DNorm: BN in D or not, and what wraps each conv)
    DATASETS       data.name         a DatasetSpec: the facts, and a loader in dcgan.datasets

Config validation, `dcgan train --help` and the tests read these tables, and nothing else names
their entries: adding one is an implementation and one `register` line here (or, from outside the
package, `TABLE.register(...)` before the config is loaded). Targets are "module:attribute"
strings, imported on first use, so the config reads the tables without importing torch. The
evaluation metrics have their own table of the same kind, `dcgan.metrics.registry.METRICS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .registry import Entry, Registry

LOSSES: Registry = Registry("loss")
_L = "dcgan.losses.objectives"
LOSSES.register("bce", f"{_L}:NonSaturating", "the paper: BCE on logits, G non-saturating; Goodfellow et al. 2014")
LOSSES.register("hinge", f"{_L}:Hinge", "Lim & Ye 2017; Miyato et al. 2018")
LOSSES.register("lsgan", f"{_L}:LeastSquares", "least squares, 0-1 coding; Mao et al. 2017")
LOSSES.register("rpgan", f"{_L}:RelativisticPairing",
                "relativistic pairing softplus(D(fake) - D(real)); Jolicoeur-Martineau 2018, R3GAN 2024")
LOSSES.register("wgan_gp", f"{_L}:WassersteinGP",
                "Wasserstein loss + gradient penalty 10 on interpolates; Gulrajani et al. 2017")

AUGMENTATIONS: Registry = Registry("augmentation")
_A = "dcgan.augment"
AUGMENTATIONS.register("color", f"{_A}:color", "brightness, saturation, contrast; DiffAugment, Zhao et al. 2020")
AUGMENTATIONS.register("translation", f"{_A}:translation", "shift by up to 1/8 of the size, zero-padded")
AUGMENTATIONS.register("cutout", f"{_A}:cutout", "zero a square of half the size")

D_NORMS: Registry = Registry("D normalisation")
_M = "dcgan.models"
D_NORMS.register("batch", f"{_M}:BATCH_NORM", "the paper: BatchNorm after every conv but the first")
D_NORMS.register("spectral", f"{_M}:SPECTRAL_NORM", "spectral norm of every conv, no BN; Miyato et al. 2018")
D_NORMS.register("none", f"{_M}:NO_NORM", "no normalisation in D (an ablation; WGAN-GP's D)")



@dataclass(frozen=True)
class DatasetSpec:
    """Everything the project knows about one dataset; nothing else names it. Functions are given
    as objects or as "module:function" strings (imported on first use, so reading the facts
    imports nothing heavy)."""

    build: Any  # (DataConfig, split) -> Dataset of (uint8 tensor (C, S, S), class label or -1)
    # The data.split values it has, checked first. (): the same images under any split name (an image
    # folder, LSUN: the split is in its class names), or a loader that checks the split (prepared).
    splits: tuple[str, ...] = ()
    labelled: bool = False  # class labels the classifier metric can learn (then eval.metrics auto is *_clf)
    how_to_get: str = ""  # the fix named, in one line, when its loader fails; "" = its loader's own errors
    # What keys its decoded cache (with the settings): the paths under data.root its loader reads,
    # "{split}" filled in and a list option such as "{lsun_classes}" giving one path per item; "" = data.root.
    files: tuple[str, ...] = ("",)
    content: Any = None  # or (DataConfig, split) -> iterable of str: the content key instead of `files`
    options: tuple[str, ...] = ()  # further data.* keys that choose its images (part of every cache key)
    # (DataConfig, split, mode) -> prepared.Prepared: images stored as uint8 at the training size,
    # memory-mapped, never decoded or cached (what `dcgan prepare` writes); None = decoded by `build`
    arrays: Any = None

    def function(self, field: str) -> Callable[..., Any]:
        """The function a field names (importing its module on first use)."""
        return Entry(field, getattr(self, field)).load()


DATASETS: Registry[DatasetSpec] = Registry("dataset")
_D = "dcgan.datasets"
_DOWNLOAD = "set data.download=true on a machine with internet, or put {} in data.root"
DATASETS.register("cifar10", DatasetSpec(
    f"{_D}:cifar10", ("train", "test"), labelled=True, how_to_get=_DOWNLOAD.format("cifar-10-batches-py/"),
    files=("cifar-10-batches-py",)), "50k + 10k 32 px photos of 10 classes; Krizhevsky 2009")
DATASETS.register("cifar100", DatasetSpec(
    f"{_D}:cifar100", ("train", "test"), labelled=True, how_to_get=_DOWNLOAD.format("cifar-100-python/"),
    files=("cifar-100-python",)), "CIFAR-10's size, 100 classes")
DATASETS.register("mnist", DatasetSpec(
    f"{_D}:mnist", ("train", "test"), labelled=True, how_to_get=_DOWNLOAD.format("MNIST/raw/"),
    files=("MNIST",)), "60k + 10k 28 px handwritten digits; LeCun et al. 1998")  # raw/ (processed/: old torchvision)
DATASETS.register("fashion_mnist", DatasetSpec(
    f"{_D}:fashion_mnist", ("train", "test"), labelled=True,
    how_to_get="run `apt-get install dataset-fashion-mnist`, set data.download=true with internet, "
               "or put FashionMNIST/raw/ in data.root",
    files=("FashionMNIST",)),  # also where Debian's idx files are unpacked
    "MNIST's format, 10 kinds of clothing; Xiao et al. 2017; Debian's copy is used when installed")
DATASETS.register("svhn", DatasetSpec(
    f"{_D}:svhn", ("train", "test", "extra"), labelled=True, how_to_get=_DOWNLOAD.format("train_32x32.mat etc."),
    files=("{split}_32x32.mat",)), "32 px house-number digits; Netzer et al. 2011")
DATASETS.register("celeba", DatasetSpec(
    f"{_D}:celeba", ("train", "valid", "test", "all"),
    how_to_get="download CelebA (img_align_celeba/ and list_eval_partition.txt) into data.root/celeba/",
    files=("celeba",)), "202k aligned celebrity faces; Liu et al. 2015")
DATASETS.register("lsun", DatasetSpec(
    f"{_D}:lsun", how_to_get="download LSUN with its download.py into data.root (e.g. bedroom_train_lmdb/) "
                             "and pip install lmdb",
    files=("{lsun_classes}_lmdb",), options=("lsun_classes",)),
    "the lmdb folders named by data.lsun_classes, e.g. the paper's bedroom_train; Yu et al. 2015")
DATASETS.register("folder", DatasetSpec(f"{_D}:folder", content=f"{_D}:folder_content"),
                  "every image file under data.root, recursively, e.g. the reference blog post's anime faces")
DATASETS.register("prepared", DatasetSpec(f"{_D}:prepared", content=f"{_D}:prepared_content",
                                          arrays="dcgan.prepared:open_prepared"),
                  "the memory-mapped uint8 arrays that `dcgan prepare --out` wrote to data.root")

# config key -> the table its values come from (a list-valued key takes any of the entries)
CONFIG_TABLES: dict[str, Registry] = {"train.loss": LOSSES, "train.augment": AUGMENTATIONS,
                                      "model.d_norm": D_NORMS, "data.name": DATASETS}
