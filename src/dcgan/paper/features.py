"""D as a fixed feature extractor + a linear L2-SVM (paper §5.1, Table 1 and Table 2).

The protocol, as the paper states it for CIFAR-10: "we use the discriminator's convolutional
features from all layers, maxpooling each layer's representation to produce a 4 x 4 spatial grid.
These features are then flattened and concatenated [...] and then a regularized linear L2-SVM
classifier is trained on top of them." For SVHN (Table 2) the same features are used with 1000
labels (100 per class) and the authors' script re-estimated BN statistics on the training data
and repeated over random label draws. The baselines computed on the same data here:

- raw pixels in [-1, 1] with the same SVM;
- single-layer K-means features in the style of Coates & Ng (2011): 6x6 patches, per-patch
  brightness/contrast normalisation, ZCA whitening, K-means centroids, the "triangle" encoding
  max(0, mean_k(d) - d_k), sum-pooled over the four image quadrants (4K features);
- the same D architecture at random init (BN statistics re-estimated the same way).

D features and pixels go to the SVM as they are (the paper mentions no rescaling; per-dimension
standardisation was tried and hurt the trained D: it amplifies its many near-constant dims);
K-means features are standardised with training-pool statistics, as in Coates & Ng's pipeline.
The SVM is `sklearn.svm.LinearSVC(loss="squared_hinge")` (the L2-SVM) with C picked on a
validation split held out from the training data.
"""

from __future__ import annotations

import copy
import json
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..atomic import write_text
from ..data import ImageData
from ..errors import DCGANError
from ..models import Discriminator
from ..pixels import to_model_range
from .constants import DEFAULT_CS, FEATURE_MODES, METHOD_TITLES, METHODS

log = logging.getLogger(__name__)

Extractor = Callable[[torch.Tensor], np.ndarray]  # uint8 images (N, C, S, S) -> features (N, F)

# --- D features --------------------------------------------------------------------------------


@torch.no_grad()
def reestimate_bn(D: nn.Module, images: torch.Tensor, *, batch_size: int = 256,
                  device: torch.device | str = "cpu") -> nn.Module:
    """A copy of D whose BN running statistics are the average over `images` (uint8) batches.

    As the authors' SVHN script did: D's training-time statistics came from separate real and
    fake batches, so they are recomputed on real training data before D is used as a feature
    extractor. The copy is returned in eval mode; D itself is untouched.
    """
    D = copy.deepcopy(D).to(device)
    bns = [m for m in D.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return D.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = the exact mean over all batches
    D.train()
    for i in range(0, images.shape[0], batch_size):
        D(to_model_range(images[i:i + batch_size].to(device)))
    return D.eval()


@torch.no_grad()
def d_features(D: Discriminator, images: torch.Tensor, *, grid: int = 4, batch_size: int = 256,
               device: torch.device | str = "cpu", layers: Sequence[int] | None = None) -> np.ndarray:
    """§5.1: every D conv stage's output max-pooled to a grid x grid map, flattened, concatenated.

    images: uint8 (N, C, S, S) -> float32 (N, sum_l C_l * min(grid, H_l)^2). For the default
    32x32 D with ndf=64: 64*16 + 128*16 + 256*16 = 7168 dims. `layers` keeps only those stages
    (0 = the first, highest-resolution one; default all, the paper's choice). Runs D as it is
    (call `reestimate_bn` first for the paper's protocol).
    """
    keep = _check_layers(D, layers)
    was_training = D.training
    D.eval()
    out = []
    try:
        for i in range(0, images.shape[0], batch_size):
            x = to_model_range(images[i:i + batch_size].to(device))
            feats = [F.adaptive_max_pool2d(h, min(grid, h.shape[-1])).flatten(1)
                     for k, h in enumerate(D.features(x)) if k in keep]
            out.append(torch.cat(feats, 1).float().cpu())  # (B, F)
    finally:
        D.train(was_training)
    return torch.cat(out).numpy()


def _check_layers(D: Discriminator, layers: Sequence[int] | None) -> set[int]:
    n = len(D.stages)
    if layers is None:
        return set(range(n))
    bad = [i for i in layers if not 0 <= i < n]
    if bad or not layers:
        raise DCGANError(f"--layers {','.join(map(str, layers))}: this D has conv stages 0..{n - 1}; "
                         f"name some of them, e.g. --layers {n - 1}")
    return set(layers)


def d_feature_dim(D: Discriminator, grid: int = 4, layers: Sequence[int] | None = None) -> int:
    """The length of `d_features` for this D (without running it on data)."""
    keep = _check_layers(D, layers)
    x = torch.zeros(1, D.channels, D.image_size, D.image_size)
    with torch.no_grad():
        was = D.training
        D.eval()
        dims = [h.shape[1] * min(grid, h.shape[-1]) ** 2 for k, h in enumerate(D.features(x)) if k in keep]
        D.train(was)
    return sum(dims)


def pixel_features(images: torch.Tensor) -> np.ndarray:
    """Raw pixels in [-1, 1], flattened: (N, C*S*S)."""
    return to_model_range(images).flatten(1).numpy().astype(np.float32)


# --- K-means baseline (Coates & Ng 2011) ---------------------------------------------------------


class KMeansFeatures:
    """Single-layer K-means features: 6x6 patches -> normalise -> ZCA -> triangle code -> quadrant sums.

    Coates & Ng use every patch at stride 1 and K=1600 (6400 features); the paper quotes their
    4800-feature result. `stride` and `num_centroids` trade accuracy for time on a small CPU.
    """

    def __init__(self, num_centroids: int = 400, patch: int = 6, stride: int = 2,
                 num_patches: int = 50_000, seed: int = 0) -> None:
        self.k, self.patch, self.stride = num_centroids, patch, stride
        self.num_patches, self.seed = num_patches, seed
        self.mean: torch.Tensor | None = None
        self.zca: torch.Tensor | None = None
        self.centroids: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        return 4 * self.k

    def _patches(self, images: torch.Tensor) -> tuple[torch.Tensor, int]:
        """uint8 (N, C, S, S) -> normalised patches (N, L, C*p*p) and the side of the patch grid."""
        x = images.float()
        p = F.unfold(x, self.patch, stride=self.stride).transpose(1, 2)  # (N, L, C*p*p)
        # Per-patch brightness and contrast normalisation (pixel scale 0..255, eps 10 as in C&N).
        p = p - p.mean(-1, keepdim=True)
        p = p / torch.sqrt(p.var(-1, keepdim=True) + 10.0)
        side = (images.shape[-1] - self.patch) // self.stride + 1
        return p, side

    def fit(self, images: torch.Tensor) -> KMeansFeatures:
        from sklearn.cluster import MiniBatchKMeans

        g = torch.Generator().manual_seed(self.seed)
        p, _ = self._patches(images)
        p = p.reshape(-1, p.shape[-1])
        p = p[torch.randperm(p.shape[0], generator=g)[: self.num_patches]].double()
        if p.shape[0] < self.k:
            raise DCGANError(f"--kmeans-centroids {self.k} exceeds the {p.shape[0]} training patches it "
                             "clusters; lower it or raise --num-train")
        # ZCA whitening (eps 0.1 as in C&N).
        self.mean = p.mean(0)
        cov = torch.cov((p - self.mean).T)
        evals, evecs = torch.linalg.eigh(cov)
        self.zca = (evecs @ torch.diag(1.0 / torch.sqrt(evals.clamp(min=0) + 0.1)) @ evecs.T).float()
        self.mean = self.mean.float()
        w = ((p.float() - self.mean) @ self.zca).numpy()
        km = MiniBatchKMeans(n_clusters=self.k, random_state=self.seed, batch_size=4096,
                             n_init=1, max_iter=20).fit(w)
        self.centroids = torch.from_numpy(km.cluster_centers_).float()
        return self

    @torch.no_grad()
    def transform(self, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        if self.centroids is None:
            raise RuntimeError("KMeansFeatures.transform before fit")
        out = []
        c2 = (self.centroids ** 2).sum(1)  # (K,)
        for i in range(0, images.shape[0], batch_size):
            p, side = self._patches(images[i:i + batch_size])
            w = (p - self.mean) @ self.zca  # (B, L, D)
            d2 = (w ** 2).sum(-1, keepdim=True) - 2 * w @ self.centroids.T + c2  # (B, L, K)
            d = d2.clamp(min=0).sqrt()
            f = (d.mean(-1, keepdim=True) - d).clamp(min=0)  # triangle encoding
            f = f.transpose(1, 2).reshape(f.shape[0], self.k, side, side)
            h = side // 2  # sum-pool over the four quadrants
            q = [f[..., :h, :h], f[..., :h, h:], f[..., h:, :h], f[..., h:, h:]]
            out.append(torch.cat([t.sum((-1, -2)) for t in q], 1))  # (B, 4K)
        return torch.cat(out).numpy()


# --- the L2-SVM ----------------------------------------------------------------------------------


def _svm(C: float, seed: int):
    from sklearn.svm import LinearSVC

    # The L2-SVM: squared hinge loss, L2 penalty; one-vs-rest over the classes.
    return LinearSVC(C=C, loss="squared_hinge", penalty="l2", dual=True, max_iter=1000,
                     tol=1e-3, random_state=seed)


def fit_svm(X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
            Cs: Sequence[float] = DEFAULT_CS, seed: int = 0, search_size: int = 2000
            ) -> tuple[object, float, float]:
    """Pick C on the validation split, then fit the L2-SVM -> (svm, C, validation accuracy).

    With more than `search_size` training examples the C search fits on a seeded subset of that
    size and only the chosen C is refitted on all of them (liblinear is single-threaded and a
    7168-dim fit on 10k examples takes about a minute on this 2-core machine).
    """
    search = np.arange(len(y_train))
    if len(search) > search_size:
        search = np.sort(np.random.default_rng(seed).choice(len(search), search_size, replace=False))
    best = (None, 0.0, -1.0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*converge.*")  # max_iter bounds the time
        for C in Cs:
            svm = _svm(C, seed).fit(X_train[search], y_train[search])
            acc = float((svm.predict(X_val) == y_val).mean())
            log.debug("C=%g: validation accuracy %.4f", C, acc)
            if acc > best[2]:
                best = (svm, float(C), acc)
        if len(search) < len(y_train):
            best = (_svm(best[1], seed).fit(X_train, y_train), best[1], best[2])
    return best


class Standardizer:
    """Per-dimension mean/std from the unlabelled training pool (no labels involved)."""

    def __init__(self, X: np.ndarray) -> None:
        self.mean = X.mean(0, dtype=np.float64).astype(np.float32)
        self.std = X.std(0, dtype=np.float64).astype(np.float32) + 1e-6

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) / self.std


# --- the protocol --------------------------------------------------------------------------------


@dataclass
class FeatureOptions:
    num_train: int = 10_000  # labelled training images for the full-label SVM
    num_val: int = 2_000  # held out from the training split to pick C
    num_test: int = 10_000  # test images scored
    per_class: int = 100  # few-label mode: labels per class (the SVHN protocol: 100)
    draws: int = 5  # few-label mode: random label draws (mean +- std reported)
    modes: tuple[str, ...] = ("full", "few")
    methods: tuple[str, ...] = METHODS
    Cs: tuple[float, ...] = DEFAULT_CS
    kmeans_centroids: int = 400
    kmeans_stride: int = 2
    grid: int = 4  # §5.1: max-pool each layer to 4x4
    layers: tuple[int, ...] | None = None  # D stages used (None = all, the paper's choice)
    seed: int = 0
    batch_size: int = 256
    search_size: int = 2000  # training examples used to pick C (then refit on all)
    standardize: tuple[str, ...] = ("kmeans",)  # methods whose features are standardised (C&N)


@dataclass
class FeatureRow:
    method: str
    mode: str  # full | few
    dims: int
    accuracy: float  # test accuracy (mean over draws in few-label mode)
    std: float  # over draws (0 in full mode)
    C: list[float]  # the C picked (one per draw)
    num_labels: int  # labelled training images the SVM saw
    num_test: int
    seconds: float  # feature extraction + SVM fits for this row


@dataclass
class FeatureResults:
    dataset: str
    image_size: int
    rows: list[FeatureRow] = field(default_factory=list)
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "image_size": self.image_size, "options": self.options,
                "rows": [asdict(r) for r in self.rows]}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureResults:
        """The inverse of `to_dict` (as read back from results.json)."""
        return cls(d["dataset"], d["image_size"], [FeatureRow(**r) for r in d["rows"]], d.get("options", {}))

    def row(self, method: str, mode: str) -> FeatureRow | None:
        return next((r for r in self.rows if r.method == method and r.mode == mode), None)

    def markdown(self) -> str:
        lines = ["| features | dims | labels | test accuracy | C (picked on validation) |",
                 "|---|---:|---:|---:|---|"]
        for r in self.rows:
            acc = f"{100 * r.accuracy:.2f}%" + (f" +- {100 * r.std:.2f}" if r.mode == "few" else "")
            labels = f"{r.num_labels}" + (" x draws" if r.mode == "few" else "")
            cs = ", ".join(f"{c:g}" for c in r.C)
            lines.append(f"| {METHOD_TITLES.get(r.method, r.method)} | {r.dims} | {labels} | {acc} | {cs} |")
        return "\n".join(lines)


def split_data(train: ImageData, test: ImageData, opts: FeatureOptions):
    """Seeded disjoint train pool / validation split from `train`, and the test subset."""
    if train.labels is None or test.labels is None:
        raise DCGANError(f"{train.name} has no labels; the feature protocol needs a labelled dataset "
                         "(fashion_mnist, mnist, cifar10, svhn)")
    if opts.num_train + opts.num_val > len(train):
        raise DCGANError(f"--num-train {opts.num_train} + --num-val {opts.num_val} exceeds the "
                         f"{len(train)} training images; lower them")
    g = torch.Generator().manual_seed(opts.seed)
    perm = torch.randperm(len(train), generator=g)
    tr, va = perm[: opts.num_train], perm[opts.num_train: opts.num_train + opts.num_val]
    te = torch.randperm(len(test), generator=g)[: min(opts.num_test, len(test))]
    return ((train.images[tr], train.labels[tr].numpy()), (train.images[va], train.labels[va].numpy()),
            (test.images[te], test.labels[te].numpy()))


def few_label_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """`per_class` random indices of each class (the SVHN protocol's 1000 labels = 100 x 10)."""
    rng = np.random.default_rng(seed)
    idx = []
    for c in np.unique(labels):
        pool = np.flatnonzero(labels == c)
        if len(pool) < per_class:
            raise DCGANError(f"class {c} has only {len(pool)} training images for --per-class "
                             f"{per_class}; raise --num-train or lower --per-class")
        idx.append(rng.choice(pool, per_class, replace=False))
    return np.sort(np.concatenate(idx))


def evaluate(method: str, extract: Extractor, data, opts: FeatureOptions, step: str = "") -> list[FeatureRow]:
    """Extract features for the split and score the SVM in every requested mode.

    `step` prefixes the progress lines (logged at INFO before each long step).
    """
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = data
    title = f"{step}{METHOD_TITLES[method]}"
    log.info("%s: extracting features of %d train + %d validation + %d test images", title,
             len(y_tr), len(y_va), len(y_te))
    t0 = time.perf_counter()
    X_tr, X_va, X_te = extract(x_tr), extract(x_va), extract(x_te)
    if method in opts.standardize:
        std = Standardizer(X_tr)
        X_tr, X_va, X_te = std(X_tr), std(X_va), std(X_te)
    t_feat = time.perf_counter() - t0
    log.info("%s: %d-dim features in %.1fs", title, X_tr.shape[1], t_feat)
    rows = []
    if "full" in opts.modes:
        log.info("%s: L2-SVM on %d labels (C from %s picked on %d examples)", title, len(y_tr),
                 ", ".join(f"{c:g}" for c in opts.Cs), min(len(y_tr), opts.search_size))
        t0 = time.perf_counter()
        svm, C, _ = fit_svm(X_tr, y_tr, X_va, y_va, opts.Cs, opts.seed, opts.search_size)
        acc = float((svm.predict(X_te) == y_te).mean())
        rows.append(FeatureRow(method, "full", X_tr.shape[1], acc, 0.0, [C], len(y_tr), len(y_te),
                               round(t_feat + time.perf_counter() - t0, 1)))
        log.info("%s, full labels (%d): test accuracy %.4f (C=%g)", title, len(y_tr), acc, C)
    if "few" in opts.modes:
        t0 = time.perf_counter()
        accs, Cs = [], []
        for d in range(opts.draws):
            log.info("%s: L2-SVM on %d labels per class, draw %d/%d", title, opts.per_class, d + 1, opts.draws)
            idx = few_label_indices(y_tr, opts.per_class, opts.seed + 1000 + d)
            svm, C, _ = fit_svm(X_tr[idx], y_tr[idx], X_va, y_va, opts.Cs, opts.seed, opts.search_size)
            accs.append(float((svm.predict(X_te) == y_te).mean()))
            Cs.append(C)
        n = opts.per_class * len(np.unique(y_tr))
        rows.append(FeatureRow(method, "few", X_tr.shape[1], float(np.mean(accs)), float(np.std(accs)),
                               Cs, n, len(y_te), round(t_feat + time.perf_counter() - t0, 1)))
        log.info("%s, %d labels x %d draws: test accuracy %.4f +- %.4f", title, n, opts.draws,
                 np.mean(accs), np.std(accs))
    return rows


def random_discriminator(D: Discriminator, cfg_model, seed: int) -> Discriminator:
    """The same architecture at the paper's N(0, 0.02) init, seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Discriminator(cfg_model, D.image_size, D.channels)


def run_features(D: Discriminator, cfg_model, train: ImageData, test: ImageData,
                 opts: FeatureOptions | None = None, *, device: torch.device | str = "cpu") -> FeatureResults:
    """The §5.1 table on (train, test): D features and the requested baselines, full / few labels."""
    opts = opts or FeatureOptions()
    bad = [m for m in opts.methods if m not in METHODS]
    if bad:
        raise DCGANError(f"unknown feature method(s) {', '.join(bad)}; use {', '.join(METHODS)}")
    bad = [m for m in opts.modes if m not in FEATURE_MODES]
    if bad:
        raise DCGANError(f"unknown mode(s) {', '.join(bad)}; use {', '.join(FEATURE_MODES)}")
    _check_layers(D, opts.layers)
    data = split_data(train, test, opts)
    pool = data[0][0]
    results = FeatureResults(train.name, int(train.images.shape[-1]),
                             options={k: (list(v) if isinstance(v, tuple) else v)
                                      for k, v in asdict(opts).items()})
    for k, method in enumerate(opts.methods):
        step = f"features [{k + 1}/{len(opts.methods)}] "
        if method in ("dcgan", "random_d"):
            log.info("%s%s: re-estimating BN statistics on %d training images", step, METHOD_TITLES[method],
                     pool.shape[0])
            net = D if method == "dcgan" else random_discriminator(D, cfg_model, opts.seed)
            net = reestimate_bn(net, pool, batch_size=opts.batch_size, device=device)

            def extract(x, net=net):
                return d_features(net, x, grid=opts.grid, batch_size=opts.batch_size, device=device,
                                  layers=opts.layers)
        elif method == "pixels":
            extract = pixel_features
        else:
            log.info("%s%s: fitting %d centroids", step, METHOD_TITLES[method], opts.kmeans_centroids)
            km = KMeansFeatures(opts.kmeans_centroids, stride=opts.kmeans_stride, seed=opts.seed).fit(pool)
            extract = km.transform
        results.rows.extend(evaluate(method, extract, data, opts, step))
    return results


def save_features(res: FeatureResults, out_dir: str | Path) -> list[Path]:
    """out_dir/features.json (every number and option) and out_dir/features.md (the table)."""
    out = Path(out_dir)
    return [write_text(out / "features.json", json.dumps(res.to_dict(), indent=1)),
            write_text(out / "features.md", res.markdown() + "\n")]


# The paper's numbers, for context only (not ours): Table 1 (CIFAR-10, D trained on ImageNet-1k)
# and Table 2 (SVHN, 1000 labels).
PAPER_ROWS = (
    ("CIFAR-10 (Table 1)", "DCGAN (ImageNet-1k D) + L2-SVM", "82.8% accuracy (28,672 dims)"),
    ("CIFAR-10 (Table 1)", "1-layer K-means, 4800 features", "80.6% accuracy"),
    ("CIFAR-10 (Table 1)", "3-layer K-means learned RF", "82.0% accuracy"),
    ("SVHN, 1000 labels (Table 2)", "DCGAN + L2-SVM", "22.48% error"),
    ("SVHN, 1000 labels (Table 2)", "supervised CNN, same architecture", "28.87% error"),
)


def paper_rows_markdown() -> str:
    lines = ["| dataset | method | paper's result |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in PAPER_ROWS]
    return "\n".join(lines)
