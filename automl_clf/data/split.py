"""Stratified, seeded train/val/test splits, identical for every trial, rerun and export.

The split is a pure function of the sorted file list, the fractions and the seed, so each
process recomputes the same one; its fingerprint (data/dataset.py) is stored with the study so a
data set that changed under a study is caught instead of silently mixing splits. Clusters of
near-duplicate images that the split scattered are then gathered into one split each
(`keep_together`, under `data.near_duplicates: group`), moving nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sklearn.model_selection import train_test_split

from automl_clf.data.discover import Discovered, Sample
from automl_clf.errors import DataError
from automl_clf.spec.data import SplitSpec


@dataclass(frozen=True)
class Splits:
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]

    def by_name(self) -> dict[str, list[Sample]]:
        return {"train": self.train, "val": self.val, "test": self.test}


def split(discovered: Discovered, spec: SplitSpec) -> Splits:
    """Use the folders' split where there is one; carve what is missing from train, stratified."""
    samples = discovered.samples
    if not discovered.presplit:
        rest, test = _stratified(samples["all"], spec.test, spec.seed, "test", discovered)
        val_share = spec.val / (1.0 - spec.test)  # val as a fraction of what test left
        train, val = _stratified(rest, val_share, spec.seed, "val", discovered)
        return Splits(train, val, test)
    train = samples["train"]
    if "test" in samples:
        test = samples["test"]
    else:
        train, test = _stratified(train, spec.test, spec.seed, "test", discovered)
    if "val" in samples:
        val = samples["val"]
    else:
        train, val = _stratified(train, spec.val, spec.seed, "val", discovered)
    return Splits(train, val, test)


def keep_together(
    splits: Splits, groups: Sequence[Sequence[Path]], classes: list[str]
) -> tuple[Splits, int]:
    """Move the files of each group into the split of its first file: near-duplicates
    (data/near_duplicates.py) then never straddle splits. Only the files of groups that
    straddle move, so a split without such groups comes back as it was (same lists, same
    fingerprint); the first file of a group is in each split with the split's own odds, so the
    splits keep their shares on average.

    Returns:
        The splits and how many files moved.

    Raises:
        DataError: the moves leave a split without a class.
    """
    parts = splits.by_name()
    where = {s.path: name for name, part in parts.items() for s in part}
    target: dict[Path, str] = {}
    for group in groups:
        home = where[group[0]]
        target.update((path, home) for path in group if where[path] != home)
    if not target:
        return splits, 0
    moved = {name: [s for s in part if s.path not in target] for name, part in parts.items()}
    for part in parts.values():
        for sample in part:
            if sample.path in target:
                moved[target[sample.path]].append(sample)
    for name, part in moved.items():
        missing = sorted(set(range(len(classes))) - {s.label for s in part})
        if missing:
            names = ", ".join(repr(classes[i]) for i in missing)
            raise DataError(
                f"keeping near-duplicate images in one split leaves the {name} split without "
                f"class(es) {names}: add images of them, or set data.near_duplicates: warn "
                "(the plain split; `autoclf validate` lists the near-duplicates)"
            )
    changed = {where[p] for p in target} | set(target.values())
    result = {n: sorted(p, key=_order) if n in changed else parts[n] for n, p in moved.items()}
    return Splits(result["train"], result["val"], result["test"]), len(target)


def _stratified(
    samples: list[Sample], fraction: float, seed: int, name: str, discovered: Discovered
) -> tuple[list[Sample], list[Sample]]:
    labels = [s.label for s in samples]
    try:
        keep, held = train_test_split(
            samples, test_size=fraction, random_state=seed, stratify=labels, shuffle=True
        )
    except ValueError as exc:
        counts = {discovered.classes[i]: labels.count(i) for i in sorted(set(labels))}
        smallest = min(counts, key=lambda c: counts[c])
        raise DataError(
            f"cannot carve a stratified {name} split of {fraction:.0%} that holds every class: "
            f"class {smallest!r} has {counts[smallest]} image(s) ({exc}). Add images, or "
            f"provide <root>/train, <root>/val and <root>/test folders yourself"
        ) from None
    held_labels = {s.label for s in held}
    missing = [discovered.classes[i] for i in sorted(set(labels) - held_labels)]
    if missing:
        raise DataError(
            f"the {name} split ({fraction:.0%}) would hold no image of class(es) "
            f"{', '.join(missing)}; raise data.split.{name} or add images"
        )
    return sorted(keep, key=_order), sorted(held, key=_order)


def _order(sample: Sample) -> tuple[int, str]:
    return sample.label, str(sample.path)
