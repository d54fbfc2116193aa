"""Datasets are one table (`dcgan.tables.DATASETS`, issue #18): a dataset registered inside a test
is validated, loaded, cached, trained on through `dcgan train` and scored by the classifier metrics
like a built-in one, and nothing else has to name it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from dcgan.cli import main
from dcgan.config import from_dict
from dcgan.data import build_source, cache_path, load_images
from dcgan.errors import ConfigError, DataError
from dcgan.metrics import registry
from dcgan.runlog import read_metrics
from dcgan.tables import CONFIG_TABLES, DATASETS, DatasetSpec

NUM = {"train": 64, "test": 32}
CLASSES = 4


class Quadrants(Dataset):
    """Generated images: a bright square in one of four quadrants (the class) on dark noise."""

    def __init__(self, split: str, size: int, channels: int) -> None:
        g = np.random.default_rng(0 if split == "train" else 1)
        n, half = NUM[split], size // 2
        self.targets = [i % CLASSES for i in range(n)]  # read by the cache as the class labels
        images = g.integers(0, 60, (n, channels, size, size), dtype=np.uint8)
        for i, c in enumerate(self.targets):
            top, left = (c // 2) * half, (c % 2) * half
            images[i, :, top:top + half, left:left + half] = 200
        self.images = torch.from_numpy(images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.targets[i]


def quadrants(cfg, split: str) -> Dataset:
    return Quadrants(split, cfg.image_size, cfg.channels)


@pytest.fixture
def registered():
    DATASETS.register("quadrants", DatasetSpec(quadrants, ("train", "test"), labelled=True,
                                               how_to_get="it is generated; check the test's builder"),
                      "four classes of generated 16 px images (this test's)")
    try:
        yield "quadrants"
    finally:
        DATASETS.unregister("quadrants")


def test_a_registered_dataset_is_configured_and_listed(registered):
    cfg = from_dict({"data": {"name": registered}, "eval": {"every": 10}})
    assert CONFIG_TABLES["data.name"] is DATASETS and registered in DATASETS.help()  # `dcgan train --help`
    assert registry.labelled(registered) and registered in registry.LABELLED
    assert cfg.eval.metrics == list(registry.default_metrics(registered, training=True))  # the classifier's
    assert registry.default_network(registered) == registry.CLASSIFIER


def test_unknown_dataset_names_the_registered_ones(registered):
    with pytest.raises(ConfigError, match=r"data.name='imagenet' is not supported; use one of cifar10, .*, quadrants"):
        from_dict({"data": {"name": "imagenet"}})
    DATASETS.unregister(registered)
    with pytest.raises(ConfigError, match="data.name='quadrants' is not supported"):  # gone with its entry
        from_dict({"data": {"name": registered}})


def test_split_and_load_errors_come_from_the_entry(registered, tmp_path):
    cfg = from_dict({"data": {"name": registered, "split": "valid", "cache_dir": str(tmp_path)}}).data
    with pytest.raises(DataError, match="data.split='valid' does not exist for quadrants; use one of train, test"):
        build_source(cfg)
    broken = DatasetSpec(lambda cfg, split: 1 / 0, how_to_get="see the entry's hint")
    DATASETS.register("broken", broken)
    try:
        cfg = from_dict({"data": {"name": "broken", "root": str(tmp_path), "download": False}}).data
        with pytest.raises(DataError, match=r"broken \(train\) not found under .* download is off "
                                            r"\(division by zero\); see the entry's hint"):
            build_source(cfg)
    finally:
        DATASETS.unregister("broken")


def test_loaded_with_labels_and_cached(registered, tmp_path):
    # data.root: nothing is read there, but its files would key the cache (DatasetSpec.files)
    cfg = from_dict({"data": {"name": registered, "root": str(tmp_path / "root"), "image_size": 16, "channels": 1,
                              "cache_dir": str(tmp_path / "cache"), "num_workers": 0}}).data
    data = load_images(cfg, "test")
    assert data.images.shape == (NUM["test"], 1, 16, 16) and data.labels.tolist() == [0, 1, 2, 3] * 8
    assert cache_path(cfg, "test").is_file() and cache_path(cfg, "test").name.startswith("quadrants-test-16px-1ch-")


def test_trained_through_the_cli_and_scored_by_the_classifier(registered, tmp_path, capsys):
    run = tmp_path / "run"
    sets = [f"data.name={registered}", f"data.root={tmp_path / 'root'}", "data.image_size=16", "data.channels=1",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.num_workers=0", "model.ngf=8", "model.ndf=8", "train.batch_size=8", "train.max_steps=4",
            "train.log_every=2", "train.sample_every=4", "train.checkpoint_every=0", "train.num_fixed=8",
            "train.progress=false", "train.device=cpu", "eval.every=4", "eval.num_samples=16",
            "eval.classifier_epochs=1"]
    assert main(["train", "--run-dir", str(run), *(a for s in sets for a in ("--set", s))]) == 0
    assert "finished at step 4" in capsys.readouterr().err
    (scores,) = read_metrics(run / "metrics.jsonl", "eval")
    assert scores["step"] == 4 and np.isfinite(scores["fd_clf"]) and 0 <= scores["coverage"] <= 1
