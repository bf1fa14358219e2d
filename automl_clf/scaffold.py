"""`autoclf init DATA`: a commented spec for a folder of images (or a CSV manifest), chosen from
what is in it, that validates and runs as written.

What the folder says (data/profile.py: layout, classes and counts, the images' headers) decides
the data section (image size near the median short side, grayscale or RGB, how to split), which
backbones fit that size, and what to do about imbalance; `--time` sets `study.budget` and how
much of the search a short budget can afford. Each choice is explained by a comment beside it,
so the file is written as text (a YAML dump would drop the comments), then read back through
the real loader before it is written: a spec `init` writes always validates.

Weights are never assumed: pretrained weights are a commented-out line saying what they need.
"""

from __future__ import annotations

import math
import os
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from automl_clf.data.dataset import IMBALANCE_RATIO
from automl_clf.data.profile import DataProfile, describe_counts, profile_data, skipped_summary
from automl_clf.data.split import split
from automl_clf.errors import DataError, SpecError
from automl_clf.spec.data import SplitSpec
from automl_clf.spec.duration import parse_duration
from automl_clf.spec.load import STUDIES_DIR, parse_spec
from automl_clf.spec.model import TIMM_MIN_SIZE
from automl_clf.versions import SPEC

DEFAULT_TIME = "15m"
SHORT_BUDGET_S = 30 * 60  # below: images capped at 128 px, TPE models after 5 random trials
MIN_SIZE, SHORT_CAP, LONG_CAP = 16, 128, 224  # image_size bounds, pixels
TIMM_BACKBONES = ("resnet18", "mobilenetv3_small_100")  # small, fast, from scratch
SPLIT_TRIES = ((0.15, 0.15), (0.2, 0.2), (0.25, 0.25), (0.3, 0.3))  # (val, test)
ENSEMBLE = 3
FEW_IMAGES = 20  # a class with fewer: noisy validation scores, said after writing
COMMENT_COLUMN, WIDTH = 29, 99


@dataclass(frozen=True)
class Choices:
    """What `init` picked, each with the reason its comment gives."""

    image_size: int
    size_reason: str
    channels: int
    backbones: tuple[str, ...]
    filters: tuple[tuple[int, ...], ...]
    global_pool: bool
    batch_sizes: tuple[int, ...]
    n_train: int  # training images, once val and test are held out
    imbalanced: bool
    split: tuple[float, float] | None  # (val, test) when autoclf carves any split
    n_startup_trials: int | None  # TPE's, when the budget is short
    budget: str  # as the user wrote it, e.g. 15m
    budget_s: float


@dataclass(frozen=True)
class InitResult:
    path: Path
    profile: DataProfile
    choices: Choices
    notes: list[str]  # what the user should know (imbalance, skipped files, little data)


def init_spec(
    source: str | Path,
    output: str | Path | None = None,
    *,
    time: str = DEFAULT_TIME,
    force: bool = False,
) -> InitResult:
    """Profile `source`, choose a spec for it, check it with the real loader, and write it.

    Args:
        source: an image folder (`<class>/<image>` or `{train,val,test}/<class>/<image>`) or
            a CSV manifest (`path,label[,split]`).
        output: the spec file; default `<folder name>.yaml` in the working directory.
        time: the job's time budget, e.g. 15m, 2h (`study.budget`).
        force: replace `output` if it exists.

    Raises:
        SpecError: a bad `time`, or `output` exists (without `force`), is a folder, or lies
            inside the data folder.
        DataError: `source` is not a data set training could use.
    """
    source = Path(source)
    budget = time.strip().lower().replace(" ", "")
    try:
        budget_s = parse_duration(budget)
    except SpecError as exc:
        raise SpecError(f"--time: {exc}") from None
    out = Path(output) if output is not None else default_output(source)
    _check_output(out, source, force)
    profile = profile_data(source)
    choices = choose(profile, budget, budget_s)
    text = render(profile, choices, out)
    parse_spec(yaml.safe_load(text), base_dir=out.resolve().parent)  # never write a bad spec
    _write(out, text, force)
    return InitResult(out, profile, choices, notes(profile, choices))


def default_output(source: Path) -> Path:
    """`<data folder name>.yaml` here: the study takes the spec's name, so it is the data's."""
    folder = source.resolve() if source.is_dir() else source.resolve().parent
    return Path(f"{study_name(folder.name)}.yaml")


def _check_output(out: Path, source: Path, force: bool) -> None:
    if out.is_dir():
        raise SpecError(
            f"-o {out} is a folder; give the spec file's path, e.g. {out / 'spec.yaml'}"
        )
    if out.exists() and not force:
        raise SpecError(
            f"{out} already exists; pass --force to replace it, or -o to write another file"
        )
    if source.is_dir() and out.resolve().parent.is_relative_to(source.resolve()):
        raise SpecError(
            f"-o {out} is inside the data folder {source}: the study's {STUDIES_DIR}/ folder "
            f"would be created beside the spec, among the classes; write it outside, e.g. "
            f"-o {Path(os.path.relpath(source.resolve().parent)) / default_output(source)}"
        )


def choose(profile: DataProfile, budget: str, budget_s: float) -> Choices:
    """The spec's data-dependent values (see the module docstring)."""
    size, reason = image_size(profile.images.median_short_side, budget_s)
    fractions = split_fractions(profile)
    val, test = fractions or (0.0, 0.0)
    held_out = (0 if "val" in profile.counts else val) + (0 if "test" in profile.counts else test)
    n_train = round(sum(profile.train_counts) * (1 - held_out))
    timm = size >= TIMM_MIN_SIZE
    if size < 32:
        filters: tuple[tuple[int, ...], ...] = ((16, 32), (32, 64), (16, 32, 64))
    elif not timm:
        filters = ((32, 64), (32, 64, 128), (64, 128, 256))
    else:
        filters = ((32, 64, 128), (32, 64, 128, 256))
    batches = (16, 32) if n_train < 1000 else (32, 64) if n_train < 10_000 else (64, 128)
    return Choices(
        image_size=size,
        size_reason=reason,
        channels=1 if profile.images.all_gray else 3,
        backbones=("cnn", *TIMM_BACKBONES) if timm else ("cnn",),
        filters=filters,
        global_pool=timm,
        batch_sizes=batches,
        n_train=n_train,
        imbalanced=profile.imbalance > IMBALANCE_RATIO,
        split=fractions,
        n_startup_trials=5 if budget_s < SHORT_BUDGET_S else None,
        budget=budget,
        budget_s=budget_s,
    )


def image_size(short_side: float, budget_s: float) -> tuple[int, str]:
    """The side near the images' median short side, rounded to a multiple of 8 (of 16 from
    64 px), at least 16 and at most 128 (224 for a budget of 30 minutes or more): cost grows
    with the square of the side, and a short budget buys more trials at a smaller one."""
    if short_side <= 0:
        return 64, "no image header could be read; a middle size"
    cap = LONG_CAP if budget_s >= SHORT_BUDGET_S else SHORT_CAP
    step = 8 if short_side < 64 else 16
    size = max(MIN_SIZE, min(cap, step * math.floor(short_side / step + 0.5)))
    reason = f"the images' median short side is {short_side:g} px"
    if short_side > cap:
        longer = "" if cap == LONG_CAP else f"; up to {LONG_CAP} with --time 30m or more"
        reason += f"; capped at {cap}: cost grows with the square of the side{longer}"
    elif size != short_side:
        reason += (
            f"; rounded to a multiple of {step}" if size > MIN_SIZE else f"; at least {MIN_SIZE}"
        )
    return size, reason


def split_fractions(profile: DataProfile) -> tuple[float, float] | None:
    """(val, test) shares that hold every class in every split autoclf carves (the default
    0.15 each, or larger for small classes); None when the folders give val and test.

    Raises:
        DataError: even 30% each would leave a class out of a split.
    """
    if {"val", "test"} <= set(profile.counts):
        return None
    error: DataError | None = None
    for val, test in SPLIT_TRIES:
        try:
            split(profile.found, SplitSpec(val=val, test=test))
        except DataError as exc:
            error = error or exc
            continue
        return val, test
    smallest = min(profile.train_counts)
    raise DataError(
        f"{profile.source}: too few images to hold out validation and test images of every "
        f"class (the smallest class has {smallest}); add images, or give train/, val/ and test/ "
        f"folders yourself ({error})"
    )


def notes(profile: DataProfile, choices: Choices) -> list[str]:
    """What `init` prints after writing: things to check in the data."""
    lines = []
    if profile.skipped:
        lines.append(f"{skipped_summary(profile.skipped)}; `autoclf validate` lists them")
    if profile.images.n_unreadable:
        lines.append(
            f"{profile.images.n_unreadable} of {profile.images.n_sampled} sampled images could "
            "not be read; `autoclf validate` lists every unreadable file"
        )
    smallest = min(profile.per_class)
    if smallest < FEW_IMAGES:
        name = profile.classes[profile.per_class.index(smallest)]
        help_ = "; pretrained weights help most (the spec's `# pretrained` line)"
        lines.append(
            f"few images per class ({name!r} has {smallest}): validation scores will be "
            f"noisy{help_ if len(choices.backbones) > 1 else ''}"
        )
    if choices.imbalanced:
        counts = profile.train_counts
        big, small = counts.index(max(counts)), counts.index(min(counts))
        lines.append(
            f"imbalanced classes ({profile.classes[big]!r} {counts[big]}, "
            f"{profile.classes[small]!r} {counts[small]}): the spec optimises macro_f1 with "
            "balanced class weights"
        )
    return lines


class _Text:
    """YAML lines with comments aligned at one column, wrapped at WIDTH like the specs in
    specs/; values go through `flow` so any name or path is quoted as YAML needs."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, text: str, indent: int = 0) -> None:
        """A comment paragraph on lines of its own."""
        for line in textwrap.wrap(text, WIDTH - indent - 2, break_on_hyphens=False):
            self.lines.append(f"{' ' * indent}# {line}")

    def field(
        self, key: str, value: str, comment: str = "", indent: int = 2, *, off: bool = False
    ) -> None:
        """`key: value  # comment` (an empty value opens a nested mapping); `off`: the line
        commented out, for the user to switch on."""
        head = f"{' ' * indent}{'# ' if off else ''}{key}:{' ' if value else ''}{value}"
        if not comment:
            self.lines.append(head)
            return
        column = max(COMMENT_COLUMN, len(head) + 2)
        if column > COMMENT_COLUMN + 12:  # a long value: its comment goes above it
            self.note(comment, indent)
            self.lines.append(head)
            return
        wrapped = textwrap.wrap(comment, WIDTH - column - 2, break_on_hyphens=False)
        self.lines.append(f"{head.ljust(column)}# {wrapped[0]}")
        self.lines.extend(f"{' ' * column}# {line}" for line in wrapped[1:])

    def section(self, name: str) -> None:
        if self.lines:
            self.lines.append("")
        self.lines.append(f"{name}:")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def flow(value: Any) -> str:
    """One value in YAML flow style (`[16, 32]`, `{choices: [cnn, resnet18]}`, a quoted
    string where YAML needs one)."""
    dumped = yaml.safe_dump([value], default_flow_style=True, sort_keys=False, width=10**6)
    return dumped.strip()[1:-1]


def choices_of(values: tuple[Any, ...]) -> str:
    return flow(values[0]) if len(values) == 1 else flow({"choices": [*values]})


def render(profile: DataProfile, choices: Choices, spec_path: Path) -> str:
    """The commented spec, as text; paths relative to `spec_path`'s folder."""
    out = _Text()
    _header(out, profile, choices, spec_path)
    out.lines.append("")
    out.field("version", str(SPEC.version), "the spec format (autoclf --version)", indent=0)
    _study(out, profile, choices, spec_path)
    _data(out, profile, choices, spec_path)
    _model(out, profile, choices)
    _train(out, profile, choices)
    _augment(out)
    _final(out)
    return out.text()


def _header(out: _Text, profile: DataProfile, choices: Choices, spec_path: Path) -> None:
    name = spec_path.name
    layout = (
        "a CSV manifest"
        if profile.manifest
        else f"{'/, '.join(s for s in profile.counts)}/ folders"
        if profile.presplit
        else "one folder per class"
    )
    images = profile.images
    colour = (
        "grayscale"
        if images.all_gray
        else f"colour ({images.n_gray} of {images.n_read} grayscale)"
        if images.n_gray
        else "colour"
    )
    out.note(
        f"autoclf spec written by `autoclf init` for {profile.source}: each choice is explained "
        f"beside it; change anything. Check it with `autoclf validate {name}`; `autoclf run "
        f"{name}` searches, retrains the best, tests it once and exports it within "
        f"study.budget. Every field: docs/spec-reference.md, or `autoclf schema`."
    )
    out.lines.append("#")
    out.note(
        f"Found {profile.n_images:,} images in {layout}: {describe_counts(profile)}. "
        f"Read {images.n_read} image headers: median short side {images.median_short_side:g} px, "
        f"median aspect {images.median_aspect:.2f}, {colour}."
    )


def study_name(text: str) -> str:
    """`text` as a study name (letters, digits, `_.-`, starting with one of the first two; see
    `StudySpec.name`)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-._") or "images"


def _study(out: _Text, profile: DataProfile, choices: Choices, spec_path: Path) -> None:
    out.section("study")
    out.field("name", flow(study_name(spec_path.stem)), "its results: studies/<name>.db")
    out.field(
        "budget",
        flow(choices.budget),
        "the whole job's time: search, final retrain, test and export (`autoclf run`; --time "
        "overrides it)",
    )
    if choices.imbalanced:
        out.field(
            "objective",
            "macro_f1",
            f"the classes are imbalanced ({profile.imbalance:.0f}× between the largest and the "
            "smallest): every class counts the same, not the large ones",
        )
    else:
        out.field(
            "objective",
            "val_loss",
            "smooth, so the pruner judges early epochs well (or accuracy, macro_f1)",
        )
    if choices.n_startup_trials is not None:
        out.field(
            "sampler",
            flow({"kind": "tpe", "n_startup_trials": choices.n_startup_trials}),
            f"TPE draws its first trials at random; a {choices.budget} budget fits few trials, "
            f"so {choices.n_startup_trials} (not 10) leaves some for TPE to model. `autoclf "
            "run` says when every trial was random",
        )
    else:
        out.note("sampler: tpe (the default): 10 random trials, then it models the results", 2)
    out.note(
        "pruner: under a budget, successive halving on epochs (many short trials, few long)", 2
    )
    out.field("seed", "0")


def _data(out: _Text, profile: DataProfile, choices: Choices, spec_path: Path) -> None:
    out.section("data")
    source, folder = profile.source.resolve(), spec_path.resolve().parent
    shared = Path(os.path.commonpath([source, folder]))
    # relative, so the spec and its data move together; absolute when they share only the root
    where = source if shared == Path(shared.anchor) else Path(os.path.relpath(source, folder))
    out.field(
        "manifest" if profile.manifest else "root", flow(where.as_posix()), "relative to this file"
    )
    out.field("image_size", str(choices.image_size), f"pixels, square: {choices.size_reason}")
    images = profile.images
    if choices.channels == 1:
        colour = f"every image read ({images.n_read}) is grayscale"
    elif images.n_gray:
        n_colour = images.n_read - images.n_gray
        colour = f"{n_colour} of {images.n_read} images read are colour; the grayscale become RGB"
    else:
        colour = "colour images (RGB); 1 (grayscale) is faster if colour tells the classes nothing"
    out.field("channels", str(choices.channels), colour)
    aspect = images.median_aspect
    shape = (
        "the images are square, or nearly"
        if aspect < 1.1
        else f"the images are {aspect:.2f}:1 (median); squash stretches them to a square, "
        "letterbox pads them, center_crop crops the middle"
    )
    out.field("resize", "squash", shape)
    if choices.split is None:
        out.note("split: the val/ and test/ folders are used as given", 2)
        return
    val, test = choices.split
    missing = [s for s in ("val", "test") if s not in profile.counts]
    carved = (
        f"carves {' and '.join(missing)} from train, stratified"
        if profile.presplit
        else "stratified: val judges the trials, test is seen once, by the final model"
    )
    if (val, test) != (0.15, 0.15):
        carved += "; more than 15% so every class is in each"
    out.field("split", flow({"val": val, "test": test, "seed": 0}), carved)


def _model(out: _Text, profile: DataProfile, choices: Choices) -> None:
    out.section("model")
    if len(choices.backbones) > 1:
        why = (
            "the plain CNN and small timm models, from scratch; more: `autoclf backbones "
            "'efficientnet*'`"
        )
    else:
        why = (
            f"the plain CNN: timm backbones shrink images 32×, so at {choices.image_size} px "
            f"they see 1 px; add e.g. resnet18 from {TIMM_MIN_SIZE} px"
        )
    out.field("backbone", choices_of(choices.backbones), why)
    if len(choices.backbones) > 1:
        out.field(
            "pretrained",
            "true",
            "ImageNet weights for the timm backbones (the plain CNN stays from scratch), from "
            "the Hugging Face cache, downloaded once if missing unless HF_HUB_OFFLINE=1: far "
            "better than from scratch on a small data set; image_size: 224 suits them",
            off=True,
        )
    out.field("dropout", "{low: 0.0, high: 0.5}", "before the last layer")
    out.field("cnn", "", "the plain CNN, in trials whose backbone is cnn")
    out.field(
        "filters",
        flow({"choices": [list(f) for f in choices.filters]}),
        "one conv block per entry, each halving the image",
        indent=4,
    )
    pool = "average the last feature map" if choices.global_pool else "flatten the feature map"
    out.field("global_pool", flow(choices.global_pool), f"{pool} into the head", indent=4)
    out.field("fc_width", "128", "hidden units in the head", indent=4)


def _train(out: _Text, profile: DataProfile, choices: Choices) -> None:
    out.section("train")
    out.field("epochs", "20", "at most: early stopping and the pruner end most trials sooner")
    out.field("early_stopping_patience", "5", "epochs without a better val loss")
    sizes = choices_of(choices.batch_sizes)
    out.field("batch_size", sizes, f"images per step, for {choices.n_train:,} training images")
    out.field("optimizer", "adamw")
    out.field("lr", "{low: 3.0e-4, high: 1.0e-2, log: true}", "the most important to search")
    out.field("weight_decay", "1.0e-4", "or search it: {low: 1.0e-5, high: 1.0e-2, log: true}")
    out.field("schedule", "cosine")
    if choices.imbalanced:
        out.field(
            "class_weighting",
            "balanced",
            "each class weighs the same in the loss; or `sampling: oversample` (each class "
            "drawn equally often)",
        )
    else:
        out.field("class_weighting", "none", "the classes are balanced")


def _augment(out: _Text) -> None:
    out.section("augment")
    out.field(
        "policy", "{choices: [none, light, medium]}", "how much augmentation helps: searched"
    )
    out.field(
        "hflip",
        "{choices: [false, true]}",
        "whether a mirror image keeps its class (photos: yes; digits, text: no): searched",
    )


def _final(out: _Text) -> None:
    out.section("final")
    out.field(
        "ensemble",
        str(ENSEMBLE),
        f"one exported model of up to {ENSEMBLE} trials weighed on validation (the best alone "
        "when no mix beats it); each member retrains (1: leave that time to the search)",
    )
    out.field(
        "retrain",
        "auto",
        "retrain on train+val when the budget leaves time, else export the trials' own weights",
    )


def _write(out: Path, text: str, force: bool) -> None:
    """Write `text` to `out`: a new file only (an existing one is never touched without
    `force`), or with `force` a whole replacement (written beside it, then renamed over it)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if not force:
        try:
            with out.open("x", encoding="utf-8") as file:
                file.write(text)
        except FileExistsError:
            raise SpecError(
                f"{out} already exists; pass --force to replace it, or -o to write another file"
            ) from None
        return
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, out)
