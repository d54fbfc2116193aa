"""Data caches keyed by content, and data faults that end in one line (issue #11, items 4 and 7).

Everything runs on tiny files written in the real formats (image folders, idx files, CIFAR
pickles, an LMDB folder) inside the test.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.config import DataConfig
from dcgan.data import Batches, _one_line_errors, cache_path, data_fingerprint, load_images
from dcgan.errors import DataError

RNG = np.random.default_rng(1)


def cfg(root, tmp_path, **kw) -> DataConfig:
    base = dict(name="folder", root=str(root), image_size=16, channels=3, download=False,
                cache_dir=str(tmp_path / "cache"), num_workers=0)
    base.update(kw)
    return DataConfig(**base)


def image_bytes(fmt: str = "PNG", size: int = 20) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (size, size + 3, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def write_images(folder: Path, n: int, fmt: str = "PNG") -> list[Path]:
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    paths = [folder / ("sub" if i % 2 else "") / f"img{i:03d}.{fmt.lower()}" for i in range(n)]
    for p in paths:
        p.write_bytes(image_bytes(fmt))
    return paths


def truncated(fmt: str) -> bytes:
    data = image_bytes(fmt, size=40)
    return data[: len(data) // 2]


def cache_files(tmp_path) -> list[Path]:
    return sorted((tmp_path / "cache").glob("*.pt"))


# --- item 4: caches keyed by content -----------------------------------------------------------


def test_replaced_folder_is_decoded_again(tmp_path):
    folder = tmp_path / "imgs"
    write_images(folder, 8)
    c = cfg(folder, tmp_path)
    assert len(load_images(c)) == 8
    for p in folder.rglob("*.png"):
        p.unlink()
    write_images(folder, 34)
    assert len(load_images(c)) == 34
    assert cache_files(tmp_path) == [cache_path(c, "train")]  # the outdated cache was removed
    assert len(Batches(c, 4, 0, torch.device("cpu")).memory) == 34


def test_touched_or_rewritten_file_gives_a_new_cache(tmp_path):
    folder = tmp_path / "imgs"
    paths = write_images(folder, 6)
    c = cfg(folder, tmp_path)
    first = load_images(c)
    before = cache_path(c, "train")
    st = paths[2].stat()
    os.utime(paths[2], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, new mtime
    assert cache_path(c, "train") != before
    assert torch.equal(load_images(c).images, first.images)
    touched = cache_path(c, "train")
    paths[3].write_bytes(image_bytes(size=25))  # new content and size
    assert cache_path(c, "train") != touched
    again = load_images(c)
    assert sum(not torch.equal(x, y) for x, y in zip(again.images, first.images)) == 1  # only that image


def test_fingerprint_covers_names_and_settings_and_reads_no_image_bytes(tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    paths = write_images(folder, 4)
    c = cfg(folder, tmp_path)
    fp = data_fingerprint(c, "train")
    assert len(fp) == 16 and int(fp, 16) >= 0
    changed = [data_fingerprint(DataConfig(**{**c.__dict__, **kw}), "train")
               for kw in ({"image_size": 32}, {"channels": 1}, {"subset": 2}, {"name": "cifar10"})]
    assert len({fp, data_fingerprint(c, "test"), *changed}) == 6
    (folder / "notes.txt").write_text("not an image")  # not read by the source: no change
    assert data_fingerprint(c, "train") == fp
    paths[0].rename(folder / "renamed.png")
    assert data_fingerprint(c, "train") != fp

    def no_reading(*args, **kwargs):
        raise AssertionError("the fingerprint read a file")

    monkeypatch.setattr("builtins.open", no_reading)
    monkeypatch.setattr(Image, "open", no_reading)
    data_fingerprint(c, "train")


def write_idx(root: Path, n: int) -> Path:
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    images = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + bytes(n))
    return raw


def test_idx_and_cifar_files_key_their_caches(tmp_path, monkeypatch):
    raw = write_idx(tmp_path / "d", 5)
    c = cfg(tmp_path / "d", tmp_path, name="fashion_mnist", channels=1)
    assert len(load_images(c)) == 5
    images = raw / "train-images-idx3-ubyte"
    images.write_bytes(struct.pack(">IIII", 2051, 7, 28, 28) + bytes(7 * 28 * 28))  # a new release
    (raw / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 7) + bytes(7))
    assert len(load_images(c)) == 7
    # CIFAR: the batch files under cifar-10-batches-py/ are the key; other datasets' files are not.
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a, **k: True)
    folder = tmp_path / "d" / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": RNG.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [1, 2]}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, fh)
    c10 = cfg(tmp_path / "d", tmp_path, name="cifar10")
    fp = data_fingerprint(c10, "train")
    os.utime(images, ns=(0, 10**9))
    assert data_fingerprint(c10, "train") == fp
    os.utime(folder / "data_batch_3", ns=(0, 10**9))
    assert data_fingerprint(c10, "train") != fp
    assert load_images(c10).labels.tolist() == [1, 2] * 5


def test_lmdb_reader_lock_is_not_content(tmp_path):
    db = tmp_path / "lsun" / "bedroom_train_lmdb"
    db.mkdir(parents=True)
    (db / "data.mdb").write_bytes(b"x" * 10)
    (db / "lock.mdb").write_bytes(b"")
    c = cfg(tmp_path / "lsun", tmp_path, name="lsun")
    fp = data_fingerprint(c, "train")
    (db / "lock.mdb").write_bytes(b"readers")
    assert data_fingerprint(c, "train") == fp
    (db / "data.mdb").write_bytes(b"x" * 11)
    assert data_fingerprint(c, "train") != fp
    assert data_fingerprint(DataConfig(**{**c.__dict__, "lsun_classes": ["church_outdoor_train"]}), "train") != fp


# --- item 7: unreadable images are skipped and counted -----------------------------------------


def test_truncated_jpegs_are_skipped_and_counted(tmp_path, caplog):
    folder = tmp_path / "imgs"
    write_images(folder, 6, fmt="JPEG")
    for i in range(2):
        (folder / f"cut{i}.jpg").write_bytes(truncated("JPEG"))
    data = load_images(cfg(folder, tmp_path))
    assert len(data) == 6
    assert "skipped 2 unreadable of 8" in caplog.text


def test_images_failing_at_decode_are_dropped_with_their_count(tmp_path, caplog):
    folder = tmp_path / "imgs"
    write_images(folder, 5)
    (folder / "cut.bmp").write_bytes(truncated("BMP"))  # passes PIL's verify(), fails to decode
    good = load_images(cfg(folder, tmp_path, cache_dir=str(tmp_path / "c2")))
    assert len(good) == 5
    assert "skipped 1 unreadable of 6 images" in caplog.text and "cut.bmp" in caplog.text


def test_streamed_batches_stand_in_for_undecodable_images(tmp_path, caplog):
    folder = tmp_path / "imgs"
    write_images(folder, 7)
    (folder / "cut.bmp").write_bytes(truncated("BMP"))
    b = Batches(cfg(folder, tmp_path, in_memory="never"), 4, 0, torch.device("cpu"))
    batches = list(b.epoch(0))
    assert [x.shape[0] for x in batches] == [4, 4]  # every batch keeps its size
    assert "skipping unreadable image" in caplog.text and "cut.bmp" in caplog.text


@pytest.mark.parametrize("files", [[], ["a.png", "b.bmp"]])
def test_folder_with_no_decodable_image_is_one_line(tmp_path, files):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in files:
        (folder / name).write_bytes(truncated({"png": "PNG", "bmp": "BMP"}[name.rsplit(".", 1)[1]]))
    with pytest.raises(DataError) as err:
        load_images(cfg(folder, tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and str(folder) in msg
    assert "set data.root" in msg or "check that they are valid images" in msg


# --- item 7: I/O faults and hostile caches -----------------------------------------------------


def test_corrupt_or_foreign_cache_is_rebuilt_with_a_warning(tmp_path, caplog):
    folder = tmp_path / "imgs"
    write_images(folder, 3)
    c = cfg(folder, tmp_path)
    first = load_images(c).images
    path = cache_path(c, "train")
    blobs = [path.read_bytes()[:100], b"garbage", None, {"images": torch.zeros(3, 1, 8, 8, dtype=torch.uint8),
                                                     "labels": None}]
    for blob in blobs:
        if blob is None:
            path.write_bytes(b"")
        elif isinstance(blob, bytes):
            path.write_bytes(blob)
        else:
            torch.save(blob, path)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert torch.equal(load_images(c).images, first)
        assert "ignoring unreadable data cache" in caplog.text
        assert torch.equal(torch.load(path, weights_only=True)["images"], first)  # rewritten whole


class _Hostile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_hostile_cache_runs_no_code(tmp_path, caplog):
    folder = tmp_path / "imgs"
    write_images(folder, 3)
    c = cfg(folder, tmp_path)
    path = cache_path(c, "train")
    path.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"images": _Hostile(marker), "labels": None}, path)
    assert len(load_images(c)) == 3
    assert not marker.exists() and "ignoring unreadable data cache" in caplog.text


def test_unwritable_cache_dir_warns_and_goes_on(tmp_path, caplog):
    folder = tmp_path / "imgs"
    write_images(folder, 3)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")  # mkdir fails even for root
    c = cfg(folder, tmp_path, cache_dir=str(blocker / "cache"))
    assert len(load_images(c)) == 3
    assert "could not write the data cache" in caplog.text and "data.cache_dir" in caplog.text


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")])
def test_full_disk_leaves_no_torn_cache(tmp_path, monkeypatch, caplog, error):
    folder = tmp_path / "imgs"
    write_images(folder, 3)
    c = cfg(folder, tmp_path)

    def full_disk(obj, f):
        f.write(b"partial")
        raise error

    monkeypatch.setattr(torch, "save", full_disk)  # what dcgan.atomic.torch_save calls
    assert len(load_images(c)) == 3
    assert "could not write the data cache" in caplog.text and "data.cache_dir" in caplog.text
    cache = tmp_path / "cache"  # neither a torn cache nor a temporary file (nor, maybe, the folder)
    assert not cache.exists() or not list(cache.iterdir())


def test_unreadable_root_is_one_line(tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    write_images(folder, 3)
    real_scandir = os.scandir

    def denied(path="."):
        if Path(path) == folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    with pytest.raises(DataError, match=r"cannot read the image folder .*Permission denied.*set data.root"):
        load_images(cfg(folder, tmp_path))


def test_permissions_for_real(tmp_path, caplog):
    folder = tmp_path / "imgs"
    write_images(folder, 3)
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o500)
    try:
        try:
            (cache / "probe").write_bytes(b"")
            pytest.skip("file permissions do not apply to this user (root); "
                        "test_unreadable_root_is_one_line and test_unwritable_cache_dir_warns_and_goes_on cover it")
        except PermissionError:
            pass
        assert len(load_images(cfg(folder, tmp_path))) == 3
        assert "could not write the data cache" in caplog.text
        folder.chmod(0)
        with pytest.raises(DataError, match="cannot read the image folder"):
            load_images(cfg(folder, tmp_path))
    finally:
        folder.chmod(0o700)
        cache.chmod(0o700)


def test_debian_unpack_into_a_bad_root_is_one_line(tmp_path, monkeypatch):
    import gzip

    debian = tmp_path / "debian"
    debian.mkdir()
    for n in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]:
        with gzip.open(debian / f"{n}.gz", "wb") as f:
            f.write(b"\0" * 16)
    monkeypatch.setattr("dcgan.data.DEBIAN_FASHION_MNIST", debian)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="could not unpack Debian's Fashion-MNIST .* set data.root"):
        load_images(cfg(blocker, tmp_path, name="fashion_mnist", channels=1))


def test_worker_errors_become_one_line():
    worker_traceback = ("Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
                        '  File "x.py", line 1, in f\ndcgan.errors.DataError: 64 images in a row could not be decoded')

    def loader(exc):
        yield torch.zeros(1)
        raise exc

    with pytest.raises(DataError) as err:
        list(_one_line_errors(loader(DataError(worker_traceback))))
    assert str(err.value) == "64 images in a row could not be decoded"
    with pytest.raises(DataError, match=r"^reading images failed \(OSError: .*Input/output error\); .*$"):
        list(_one_line_errors(loader(OSError(errno.EIO, "Input/output error"))))


def test_image_listing_matches_sorted_rglob(tmp_path):
    from dcgan.data import image_files

    root = tmp_path / "imgs"
    for rel in ["a/b/x.png", "a-b/y.JPG", "a.b/z.jpeg", ".hidden.png", "a/.h/w.gif", "top.PNG", "c/d/e/f.webp",
                "notes.txt", "a/b/.png"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "linked").symlink_to(root / "a", target_is_directory=True)  # not entered, as rglob
    (root / "link.png").symlink_to(root / "top.PNG")  # a link to a file counts
    (root / "broken.png").symlink_to(root / "missing.png")
    (root / "dir.png").mkdir()
    old = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif", ".webp")
                 and p.is_file())
    assert image_files(root) == old and len(old) == 8


# --- round 2: 16-bit images, files replaced with cp -p ------------------------------------------


def _png16(path: Path, values: np.ndarray, color_type: int) -> None:
    """A 16-bit PNG written byte by byte (grey: color_type 0, RGB: 2), big-endian samples."""
    import zlib

    h, w = values.shape[:2]
    raw = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_pngs_are_scaled_not_clipped(tmp_path, channels):
    """16-bit grey and RGB PNGs decode to value / 257 (PIL's convert() clipped grey to white)."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    levels = (0, 10000, 40000, 65535)
    for i, v in enumerate(levels):
        _png16(folder / f"g{i}.png", np.full((16, 16), v, dtype=np.uint16), 0)
        _png16(folder / f"c{i}.png", np.full((16, 16, 3), v, dtype=np.uint16), 2)
    images = load_images(cfg(folder, tmp_path, channels=channels), use_cache=False).images
    want = [round(v / 257) for v in levels]
    means = [int(im.float().mean().round()) for im in images]  # sorted names: c0..c3, then g0..g3
    assert all(abs(m - w) <= 1 for m, w in zip(means, want + want)), means


def test_files_replaced_with_cp_p_are_decoded_again(tmp_path):
    """Same names, sizes and modification times (cp -p, rsync -t, tar x): the cache is not reused
    (the key holds each file's ctime, which any write of its bytes sets)."""
    folder = tmp_path / "imgs"
    paths = write_images(folder, 6, fmt="BMP")  # uncompressed: another image has the same size
    c = cfg(folder, tmp_path)
    first = load_images(c)
    key = cache_path(c, "train")
    st = paths[1].stat()
    paths[1].write_bytes(image_bytes("BMP"))
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns))  # what cp -p does
    assert (paths[1].stat().st_size, paths[1].stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert cache_path(c, "train") != key
    again = load_images(c)
    assert cache_files(tmp_path) == [cache_path(c, "train")]  # the stale cache was removed
    assert sum(not torch.equal(x, y) for x, y in zip(again.images, first.images)) == 1  # the replaced image
