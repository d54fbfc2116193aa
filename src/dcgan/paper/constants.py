"""The experiments' fixed names and numbers, in one place and importable without torch (the
CLI's parser reads them for its choices and help text)."""

from __future__ import annotations

# §5.1 feature methods: the trained D and the baselines computed on the same data.
METHODS = ("dcgan", "pixels", "kmeans", "random_d")
METHOD_TITLES = {
    "dcgan": "DCGAN D features (trained)",
    "pixels": "raw pixels",
    "kmeans": "1-layer K-means (Coates & Ng)",
    "random_d": "same D, random init",
}
FEATURE_MODES = ("full", "few")  # all labels / the SVHN protocol's few labels per class
DEFAULT_CS = (1e-4, 1e-3, 1e-2)  # L2-SVM C values; larger C was never picked in trials and fits slowly
MAX_DRAWS = 100  # few-label draws: the table reports mean +- std; each draw is one more SVM fit
MAX_CENTROIDS = 10_000  # K-means baseline: 4K features per image (Coates & Ng used K = 1600)

# §6.1 walks.
WALK_MODES = ("linear", "spherical")
MAX_WALK = 256  # rows and images per row of a walk figure (256 x 256 tiles is already a poster)

# §6.2.2 forget: samples shown with and without the dropped maps, two figure rows per 8.
MAX_SHOW = 1024

# A count that is clipped to what exists must still fit the 64-bit integers of torch and numpy.
INT_LIMIT = 2**63 - 1

# §6.2.1 filters: real training images whose statistics replace D's BN running averages.
BN_POOL = 5000

# §6.3 Fig. 8: how far along the direction each column goes.
DEFAULT_STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def comma_list(values: tuple) -> str:
    """(0.0001, 0.001) -> '0.0001,0.001' (the CLI's spelling of a default)."""
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
