"""The shard store of streamed data sets (data/stores.py `ShardStore`): exact pixels, automatic
choice, and the cleanup guarantees under interruption, killed and concurrent writers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from automl_clf.data import Decoding, load_dataset
from automl_clf.data import dataset as dataset_module
from automl_clf.data import stores as stores_module
from automl_clf.data.batches import TrainBatches
from automl_clf.data.cache import HashIndex
from automl_clf.data.dataset import SplitArrays
from automl_clf.data.preprocess import build_preprocessing
from automl_clf.data.stores import ShardStore
from automl_clf.spec.config import DataConfig
from automl_clf.spec.models import DataSpec
from tests.conftest import read_only, run_autoclf, write_spec
from tests.data.test_dataset import _locked_by_another_process, data_spec, write_images


@pytest.fixture
def shards(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every streamed data set is "larger than memory": stored as shards, not memory-mapped."""
    monkeypatch.setattr(dataset_module, "RAW_SHARE", 0.0)


def _named(folder: Path) -> set[str]:
    return set(json.loads((folder / "index.json").read_text())["shards"])


def _on_disk(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("shard-*.webps")}


@pytest.mark.usefixtures("shards")
@pytest.mark.parametrize("channels", [1, 3])
def test_streamed_pixels_are_the_decoded_pixels_bit_for_bit(tmp_path: Path, channels: int) -> None:
    root, cache = tmp_path / "data", str(tmp_path / "cache")
    for name in ("a", "b"):
        write_images(root / name, 12, size=13)
    decoding = Decoding(image_size=8, channels=channels, resize="letterbox")
    memory = load_dataset(data_spec(root, loading="memory", cache_dir=cache)).arrays(decoding)
    stream = load_dataset(data_spec(root, loading="stream", cache_dir=cache)).arrays(decoding)
    for name in ("train", "val", "test"):
        rows, pixels = stream[name].pixels, memory[name].pixels
        assert stream[name].streamed and rows.shape == pixels.shape
        assert np.array_equal(rows[np.arange(len(rows))], pixels)
        assert np.array_equal(rows[1:3], pixels[1:3]) and np.array_equal(rows[-1], pixels[-1])
        predicted = np.stack([decoding.load_file(p) for p in stream[name].paths])
        assert np.array_equal(rows[:], predicted)  # what `predict` decodes from the file


@pytest.mark.parametrize("larger_than_memory", [False, True])
def test_auto_streams_by_size_memory_mapped_then_as_shards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, larger_than_memory: bool
) -> None:
    root, cache = tmp_path / "data", tmp_path / "cache"
    for name in ("a", "b"):
        write_images(root / name, 10)
    decoding = Decoding(image_size=8, channels=3, resize="squash")
    monkeypatch.setattr(dataset_module, "MEMORY_SHARE", 1e-12)  # too large to keep in RAM
    if larger_than_memory:
        monkeypatch.setattr(dataset_module, "RAW_SHARE", 1e-12)
    dataset = load_dataset(data_spec(root, cache_dir=str(cache)))
    arrays = dataset.arrays(decoding)
    assert all(split.streamed for split in arrays.values())
    assert dataset.storage(decoding) == ("shards" if larger_than_memory else "raw")
    raw = list(cache.glob("decoded/*/pixels-*.npy"))
    if larger_than_memory:
        (folder,) = cache.glob("encoded/*")
        assert _on_disk(folder) == _named(folder) and len(_named(folder)) == 1
        assert not raw  # no raw copy beside the shards
    else:
        assert len(raw) == 1 and not list(cache.glob("encoded/*"))


@pytest.mark.usefixtures("shards")
def test_batches_read_from_shards_by_workers_are_the_in_memory_batches(tmp_path: Path) -> None:
    root, cache = tmp_path / "data", str(tmp_path / "cache")
    for name in ("a", "b"):
        write_images(root / name, 16)
    decoding = Decoding(image_size=8, channels=3, resize="squash")
    memory = load_dataset(data_spec(root, loading="memory", cache_dir=cache)).arrays(decoding)
    stream = load_dataset(data_spec(root, loading="stream", cache_dir=cache)).arrays(decoding)
    config = DataConfig(image_size=8, channels=3, resize="squash", normalize="none")
    pre = build_preprocessing(config, "cnn", None)
    read = TrainBatches(stream["train"], 8, pre, [], seed=3, n_classes=2, workers=1)
    try:
        streamed = [(x, y) for x, y in read.epoch(2)]
    finally:
        read.close()
    plain = TrainBatches(memory["train"], 8, pre, [], seed=3, n_classes=2).epoch(2)
    for (x, y), (x_plain, y_plain) in zip(streamed, plain, strict=True):
        assert bool((x == x_plain).all()) and bool((y == y_plain).all())


def _store_items(root: Path) -> list[tuple[str, Path]]:
    paths = sorted(root.rglob("*.png"))
    return list(zip(HashIndex(None).hashes(paths), paths, strict=True))


def test_an_interrupted_build_keeps_what_it_wrote_and_leaves_no_unnamed_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_images(tmp_path / "data", 40)
    items = _store_items(tmp_path / "data")
    decoding = Decoding(image_size=8, channels=3, resize="squash")
    monkeypatch.setattr(stores_module, "ENCODE_CHUNK", 8)
    monkeypatch.setattr(stores_module, "SHARD_BYTES", 1)  # a new shard for every image
    rounds: list[int] = []

    def interrupt_on_the_second_round(n: int) -> None:
        rounds.append(n)
        if len(rounds) == 2:
            raise KeyboardInterrupt

    store = ShardStore(tmp_path / "cache", decoding)
    with pytest.raises(KeyboardInterrupt):
        store.ensure(items, on_progress=interrupt_on_the_second_round)
    (folder,) = (tmp_path / "cache").glob("encoded/*")
    assert _on_disk(folder) == _named(folder) and len(_named(folder)) == 16
    again = ShardStore(tmp_path / "cache", decoding)
    assert len(again.rows) == 16
    rounds.clear()
    again.ensure(items, on_progress=rounds.append)
    assert sum(rounds) == 40 - 16  # only what the interrupted build had not written
    assert _on_disk(folder) == _named(folder) and len(_named(folder)) == 40
    decoded = np.stack([decoding.load_file(path) for _, path in items])
    assert np.array_equal(again.take([digest for digest, _ in items])[:], decoded)


def _streamed_store(tmp_path: Path) -> tuple[DataSpec, Decoding, dict[str, SplitArrays], Path]:
    """A small streamed data set, loaded once: its spec, decoding, splits and shard folder."""
    root = tmp_path / "data"
    for name in ("a", "b"):
        write_images(root / name, 10)
    spec = data_spec(root, loading="stream", cache_dir=str(tmp_path / "cache"))
    decoding = Decoding(image_size=8, channels=3, resize="squash")
    first = load_dataset(spec).arrays(decoding)
    (folder,) = (tmp_path / "cache").glob("encoded/*")
    return spec, decoding, first, folder


@pytest.mark.usefixtures("shards")
def test_a_killed_writers_shard_is_removed_and_a_working_writers_kept(tmp_path: Path) -> None:
    spec, decoding, first, folder = _streamed_store(tmp_path)
    (current,) = _on_disk(folder)
    killed, working = folder / "shard-killed.webps", folder / "shard-working.webps"
    for leftover in (killed, working):
        shutil.copy(folder / current, leftover)
    dead = _locked_by_another_process(killed)
    dead.kill()
    dead.wait()
    alive = _locked_by_another_process(working)
    try:
        load_dataset(spec).arrays(decoding)  # a new run opens the store
        assert not killed.exists()
        assert working.exists()  # never taken from under a writer
    finally:
        alive.kill()
        alive.wait()
    again = load_dataset(spec).arrays(decoding)
    assert _on_disk(folder) == {current}
    for name in ("train", "val", "test"):
        assert np.array_equal(first[name].pixels[:], again[name].pixels[:])


@pytest.mark.usefixtures("shards")
def test_a_torn_shard_is_decoded_again_and_removed(tmp_path: Path) -> None:
    spec, decoding, first, folder = _streamed_store(tmp_path)
    expected = {name: split.pixels[:] for name, split in first.items()}
    (torn,) = folder.glob("shard-*.webps")
    torn.write_bytes(torn.read_bytes()[:100])  # shorter than its index says
    stores_module._release(torn)  # as when the process that built it exits
    again = load_dataset(spec).arrays(decoding)
    assert not torn.exists() and _on_disk(folder) == _named(folder)
    for name in ("train", "val", "test"):
        assert np.array_equal(again[name].pixels[:], expected[name])


WRITER = """
import sys
from pathlib import Path
from automl_clf.data import Decoding, load_dataset
from automl_clf.data import dataset, stores
from tests.data.test_dataset import data_spec
dataset.RAW_SHARE = 0.0  # stored as shards
stores.ENCODE_CHUNK, stores.INDEX_EVERY_S, stores.SHARD_BYTES = 4, 0.0, 200
spec = data_spec(Path(sys.argv[1]), loading="stream", cache_dir=sys.argv[2])
dataset = load_dataset(spec)
print("ready", flush=True)
sys.stdin.readline()
dataset.arrays(Decoding(image_size=8, channels=3, resize="squash"))
"""


@pytest.mark.slow
@pytest.mark.usefixtures("shards")
def test_concurrent_writers_leave_one_consistent_store_and_no_stale_shard(
    tmp_path: Path,
) -> None:
    root, cache = tmp_path / "data", tmp_path / "cache"
    for name in ("a", "b"):
        write_images(root / name, 24)
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), str(cache)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[2],
        )
        for _ in range(2)
    ]
    for writer in writers:
        assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
    for writer in writers:  # both build the same store at once, naming progress every round
        assert writer.stdin is not None
        writer.stdin.write(b"go\n")
        writer.stdin.flush()
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    decoding = Decoding(image_size=8, channels=3, resize="squash")
    in_memory = data_spec(root, loading="memory", cache_dir=str(tmp_path / "other"))
    memory = load_dataset(in_memory).arrays(decoding)
    stream = load_dataset(data_spec(root, loading="stream", cache_dir=str(cache)))
    arrays = stream.arrays(decoding)
    (folder,) = cache.glob("encoded/*")
    assert _on_disk(folder) == _named(folder)  # the writers' unnamed shards are gone
    for name in ("train", "val", "test"):
        assert np.array_equal(arrays[name].pixels[:], memory[name].pixels)


@pytest.mark.parametrize("storage", ["memory", "mapped", "shards"])
def test_a_fold_taken_from_a_split_is_its_images_in_that_order_still_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, storage: str
) -> None:
    """`SplitArrays.take` (a cross-validation fold, final/audit.py) on each way pixels are
    kept: the same images, labels and files as the in-memory split, and a streamed split stays
    streamed (nothing is decoded until a batch reads it)."""
    if storage == "shards":
        monkeypatch.setattr(dataset_module, "RAW_SHARE", 0.0)
    root, cache = tmp_path / "data", str(tmp_path / "cache")
    for name in ("a", "b"):
        write_images(root / name, 12, size=13)
    decoding = Decoding(image_size=8, channels=3, resize="squash")
    memory = load_dataset(data_spec(root, loading="memory", cache_dir=cache)).arrays(decoding)
    loading = "memory" if storage == "memory" else "stream"
    kept = load_dataset(data_spec(root, loading=loading, cache_dir=cache)).arrays(decoding)
    index = np.array([5, 0, 3])
    fold = kept["train"].take(index)
    expected = memory["train"]
    assert fold.streamed is (storage != "memory")
    assert np.array_equal(fold.pixels[np.arange(3)], expected.pixels[index])
    assert np.array_equal(fold.labels, expected.labels[index])
    assert fold.paths == tuple(expected.paths[i] for i in index)
    both = SplitArrays.concat(kept["train"], kept["val"]).take(np.array([len(kept["train"])]))
    assert np.array_equal(both.pixels[np.arange(1)], memory["val"].pixels[:1])


def test_a_cache_that_cannot_be_written_says_so_and_how_to_go_on(tmp_path: Path) -> None:
    """Not `cannot read`: the folder refused a write. validate writes into a cache that exists."""
    for name in ("a", "b"):
        write_images(tmp_path / "data" / name, 12)
    cache = tmp_path / "cache"
    cache.mkdir()
    spec = {"data": {"root": str(tmp_path / "data"), "image_size": 8, "cache_dir": str(cache)}}
    path = write_spec(tmp_path / "spec.yaml", spec)
    with read_only(cache) as prefix:
        done = run_autoclf("validate", str(path), prefix=prefix)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"cannot write the data cache {cache}" in done.stderr
    assert "point data.cache_dir at another folder, or set data.cache: false" in done.stderr
    assert "cannot read" not in done.stderr and "Traceback" not in done.stderr
