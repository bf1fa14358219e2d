"""Heatmaps of where a model looked (final/explain.py): one per image for every backbone family
and an ensemble, at the input's size, in [0, 1], and different for different images; the layer
each family is read at; a model with none is refused with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import automl_clf
from automl_clf.data.preprocess import Decoding, Preprocessing
from automl_clf.errors import ExplainUnavailable
from automl_clf.final.calibration import Calibrated
from automl_clf.final.ensemble import Ensemble
from automl_clf.final.explain import cam_layer, explain
from automl_clf.models.factory import build_model
from tests.conftest import Ensembled, Exported
from tests.models.test_factory import model_config

SIZE = 32  # px: every family's deepest usable stage is at least 2 × 2 here


def two_images(channels: int = 3, size: int = SIZE) -> torch.Tensor:
    """Two clearly different inputs: a bright square top left, and one bottom right."""
    x = torch.full((2, channels, size, size), -1.0)
    half = size // 2
    x[0, :, :half, :half] = 2.0
    x[1, :, half:, half:] = 2.0
    return x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))


def model_of(backbone: str, size: int = SIZE) -> nn.Module:
    """A randomly initialised model as trials build them (the plain CNN: two conv blocks)."""
    torch.manual_seed(0)
    model = build_model(model_config(backbone), n_classes=3, in_chans=3, image_size=size)
    return model.eval()


def check_heatmaps(maps: np.ndarray, n: int, size: int) -> None:
    assert maps.shape == (n, size, size) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    assert maps.max() > 0.0  # something was found, not an all-blank answer


@pytest.mark.parametrize(
    ("family", "layer"),
    [
        ("cnn", "features.7"),  # the last conv block's pool: 8 × 8 at 32 px
        ("test_resnet", "layer3"),  # layer4 is 1 × 1 at 32 px: the deepest 2 × 2 stage
        ("test_efficientnet", "blocks.3"),
        ("test_vit", "blocks.5.norm1"),  # the last block's attention input, as tokens
        ("test_vit_relpos", "blocks.8"),  # patch tokens only (average pooled): the block's output
        ("test_mambaout", "stages.2"),  # NHWC maps
    ],
)
def test_every_family_gives_one_heatmap_per_image_that_follows_the_image(
    family: str, layer: str
) -> None:
    model = model_of(family)
    explanation = explain(model, two_images())
    check_heatmaps(explanation.maps, 2, SIZE)
    assert explanation.layer == layer and explanation.notes == []
    with torch.no_grad():
        assert explanation.classes.tolist() == model(two_images()).argmax(1).tolist()
    first, second = explanation.maps
    assert np.abs(first - second).mean() > 0.01  # the heatmap moves with the image


def test_an_ensemble_averages_its_members_heatmaps_by_weight() -> None:
    members = [model_of("cnn"), model_of("test_resnet")]
    pre = [
        Preprocessing(decoding=Decoding(image_size=SIZE, channels=3, resize="squash"), **stats)
        for stats in (
            {"mean": (0.5,) * 3, "std": (0.25,) * 3},
            {"mean": (0.4,) * 3, "std": (0.3,) * 3},
        )
    ]
    ensemble = Ensemble(members, pre, weights=[3.0, 1.0]).eval()
    x = two_images()
    explanation = explain(ensemble, x)
    check_heatmaps(explanation.maps, 2, SIZE)
    assert explanation.layer == "member 0: features.7, member 1: layer3"
    assert np.abs(explanation.maps[0] - explanation.maps[1]).mean() > 0.01
    # each member's map for the ensemble's class, on the input as the ensemble feeds it
    classes = explanation.classes
    with torch.no_grad():
        assert classes.tolist() == ensemble(x).argmax(1).tolist()
    alone = [
        _member_map(member, x * ensemble.scales[k] + ensemble.shifts[k], classes)
        for k, member in enumerate(members)
    ]
    np.testing.assert_allclose(explanation.maps, 0.75 * alone[0] + 0.25 * alone[1], atol=1e-5)


def _member_map(model: nn.Module, x: torch.Tensor, classes: np.ndarray) -> np.ndarray:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = cam_layer(model, x[:1])
    cam = GradCAM(model=model, target_layers=[layer.module], reshape_transform=layer.reshape)
    try:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in classes])
    finally:
        cam.activations_and_grads.release()


def test_a_model_whose_maps_are_all_1x1_is_refused_with_the_reason() -> None:
    model = model_of("test_vit", size=16)  # one 16 px patch: a 1 × 1 grid
    with pytest.raises(ExplainUnavailable, match=r"at least 2×2 px at 16×16 px input"):
        explain(model, torch.randn(1, 3, 16, 16))


def test_an_ensemble_leaves_out_a_member_it_cannot_explain_and_says_so() -> None:
    pre = Preprocessing(
        decoding=Decoding(image_size=16, channels=3, resize="squash"),
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
    )
    members = [model_of("cnn", size=16), model_of("test_vit", size=16)]
    explanation = explain(Ensemble(members, [pre, pre]).eval(), two_images(size=16))
    check_heatmaps(explanation.maps, 2, 16)
    assert explanation.layer == "member 0: features.7"
    assert len(explanation.notes) == 1 and explanation.notes[0].startswith("member 1 left out")


def test_a_calibrated_model_is_explained_as_the_network_it_wraps() -> None:
    model = model_of("test_resnet")
    plain = explain(model, two_images())
    wrapped = explain(Calibrated(model, temperature=0.4), two_images())
    assert wrapped.layer == plain.layer == "layer3"
    assert wrapped.classes.tolist() == plain.classes.tolist()
    np.testing.assert_allclose(wrapped.maps, plain.maps, atol=1e-5)


def test_frozen_weights_are_explained_and_left_as_they_were() -> None:
    model = model_of("test_resnet")
    model.fc.weight.requires_grad_(False)  # a partly frozen backbone (model.freeze)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    check_heatmaps(explain(model, two_images()).maps, 2, SIZE)
    assert {name for name, p in model.named_parameters() if p.requires_grad} == trainable
    assert all(p.grad is None for p in model.parameters())  # nothing accumulated


def test_the_predictor_explains_files_of_a_plain_cnn_export(
    exported: Exported, digits_root: Path
) -> None:
    predictor = automl_clf.load(exported.folder)
    files = images_of(digits_root)
    maps = predictor.explain(files)
    _, size, _ = predictor.manifest_.input_shape
    check_heatmaps(maps, len(files), size)
    assert predictor.explain([]).shape == (0, size, size)


def test_the_predictor_explains_an_ensemble_export(
    ensembled: Ensembled, digits_root: Path
) -> None:
    predictor = automl_clf.load(ensembled.folder)
    files = images_of(digits_root)
    explanation = predictor.explain_pixels(np.stack([predictor.load(f) for f in files]))
    _, size, _ = predictor.manifest_.input_shape
    check_heatmaps(explanation.maps, len(files), size)
    assert explanation.layer.count("member ") == len(predictor.manifest_.members)
    assert predictor.predict(files) == [predictor.classes_[c] for c in explanation.classes]
    assert len({m.tobytes() for m in explanation.maps}) > 1  # not one map for every image


def images_of(root: Path, per_class: int = 2) -> list[Path]:
    """The first images of each class folder under `root`."""
    return [p for folder in sorted(root.iterdir()) for p in sorted(folder.iterdir())[:per_class]]
