"""The model factory: the plain CNN family, every timm test model, transfer learning."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from automl_clf.errors import SpecError, TrialFailed
from automl_clf.models.factory import build_model
from automl_clf.models.transfer import parameter_groups, plan_transfer
from automl_clf.spec import load_spec, parse_spec
from automl_clf.spec.config import CNNConfig, ModelConfig
from tests.conftest import make_checkpoint, run_autoclf, tiny_spec, write_spec


def model_config(backbone: str = "cnn", **values: object) -> ModelConfig:
    base: dict[str, object] = {
        "backbone": backbone,
        "dropout": 0.0,
        "pretrained": None,
        "transfer": "finetune",
        "unfreeze_stages": None,
        "backbone_lr_scale": None,
        "cnn": CNNConfig(
            filters=(4, 8),
            kernel_size=3,
            convs_per_block=1,
            batch_norm=True,
            global_pool=False,
            fc_width=16,
        )
        if backbone == "cnn"
        else None,
    }
    return ModelConfig(**{**base, **values})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", timm.list_models("test_*"))
@pytest.mark.parametrize("in_chans", [1, 3])
def test_every_timm_test_model_has_n_class_outputs_at_32_px(name: str, in_chans: int) -> None:
    """Vision transformers among them too: they are built for the image size (`img_size`)."""
    model = build_model(model_config(name), n_classes=3, in_chans=in_chans, image_size=32)
    assert model(torch.zeros(2, in_chans, 32, 32)).shape == (2, 3)


@pytest.mark.parametrize("name", timm.list_models("test_vit*"))
def test_vision_transformers_are_built_for_the_image_size(name: str) -> None:
    model = build_model(model_config(name), n_classes=4, in_chans=3, image_size=16)
    assert tuple(model.patch_embed.img_size) == (16, 16)  # not timm's default, 160
    assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 4)


# What cannot run at 8 px, and the reason each gives (every test_* model builds at 32 px).
REASONS_AT_8 = {
    "test_vit": "its patches are 16×16 px, larger than the images); raise data.image_size "
    "to 16 or more",
    "test_vit_relpos": "its patches are 16×16 px, larger than the images",  # fails being built
    "test_convnext": "it shrinks its input 32× by its last stage: Calculated padded input size",
    "test_maxvit": "it shrinks its input 32× by its last stage: integer modulo by zero); raise "
    "data.image_size to 32 or more",
}


@pytest.mark.parametrize("name", sorted(REASONS_AT_8))
def test_a_model_that_cannot_take_the_image_size_says_why(name: str) -> None:
    with pytest.raises(TrialFailed) as failed:
        build_model(model_config(name), n_classes=3, in_chans=3, image_size=8)
    message = str(failed.value)
    assert message.startswith(f"backbone {name!r} cannot process 8×8 px images (")
    assert REASONS_AT_8[name] in message
    assert message.endswith(", or choose another backbone")


def test_vit_patches_that_do_not_tile_the_images_name_a_size_that_fits() -> None:
    with pytest.raises(
        TrialFailed,
        match=r"its 16 px patches do not tile them\); make "
        r"data.image_size a multiple of 16 \(e.g. 32\)",
    ):
        build_model(model_config("test_vit"), n_classes=3, in_chans=3, image_size=24)


@pytest.mark.parametrize(
    "cnn",
    [
        {
            "filters": (4,),
            "convs_per_block": 1,
            "batch_norm": True,
            "global_pool": False,
            "fc_width": 0,
        },
        {
            "filters": (4, 8, 8, 8, 8),
            "convs_per_block": 2,
            "batch_norm": False,
            "global_pool": True,
            "fc_width": 32,
        },
        {
            "filters": (8, 8),
            "convs_per_block": 3,
            "batch_norm": True,
            "global_pool": False,
            "fc_width": 8,
        },
    ],
)
@pytest.mark.parametrize("size", [8, 13])
def test_plain_cnn_variants_fit_any_image_size(cnn: dict[str, object], size: int) -> None:
    config = model_config(cnn=CNNConfig(kernel_size=3, **cnn))  # type: ignore[arg-type]
    model = build_model(config, n_classes=5, in_chans=1, image_size=size)
    assert model(torch.zeros(3, 1, size, size)).shape == (3, 5)
    assert isinstance(list(model.modules())[-1], torch.nn.Linear)  # the logits layer is last
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert has_bn == cnn["batch_norm"]


def checkpoint_for(tmp_path: Path, backbone: str = "test_resnet") -> Path:
    return make_checkpoint(tmp_path, backbone)


def train_one_step(model: torch.nn.Module, plan_groups: list) -> None:  # type: ignore[type-arg]
    """One SGD step in whatever mode the model is in (the caller sets train/eval)."""
    params = [p for group, _ in plan_groups for p in group if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.5)
    loss = model(torch.randn(4, 1, 16, 16)).logsumexp(dim=1).mean()
    loss.backward()
    optimizer.step()


def test_pretrained_weights_load_from_a_local_file(tmp_path: Path) -> None:
    path = checkpoint_for(tmp_path)
    config = model_config("test_resnet", pretrained=str(path))
    model = build_model(config, n_classes=3, in_chans=1, image_size=16)
    saved = load_file(str(path))
    assert torch.equal(model.state_dict()["conv1.0.weight"], saved["conv1.0.weight"])
    assert model.state_dict()["fc.weight"].shape[0] == 3  # a new head for the new classes


def test_freeze_trains_the_head_only(tmp_path: Path) -> None:
    config = model_config(
        "test_resnet", pretrained=str(checkpoint_for(tmp_path)), transfer="freeze"
    )
    model = build_model(config, n_classes=3, in_chans=1, image_size=16)
    plan = plan_transfer(model, config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    plan.keep_frozen_norms_in_eval()
    train_one_step(model, plan.groups)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}  # batch-norm statistics did not move either


@pytest.mark.parametrize("k", [1, 2])
def test_partial_unfreezes_exactly_the_last_k_stages(tmp_path: Path, k: int) -> None:
    config = model_config(
        "test_resnet",
        pretrained=str(checkpoint_for(tmp_path)),
        transfer="partial",
        unfreeze_stages=k,
        backbone_lr_scale=0.1,
    )
    model = build_model(config, n_classes=3, in_chans=1, image_size=16)
    plan = plan_transfer(model, config)
    groups = parameter_groups(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for g in groups[-(k + 1) :] for n in g}  # last k stages and the head
    assert [scale for _, scale in plan.groups] == [1.0, 0.1]


def test_a_missing_weights_file_is_a_clear_error(tmp_path: Path, digits_root: Path) -> None:
    spec = tiny_spec(
        digits_root, tmp_path, model={"backbone": "test_resnet", "pretrained": "no.pth"}
    )
    with pytest.raises(SpecError, match=r"weights file not found: .*no\.pth \(pretrained takes"):
        load_spec(write_spec(tmp_path / "s.yaml", spec))


class _RunsCode:
    """What a hostile checkpoint holds: unpickling it calls print (any callable would do)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("PWNED: the file's code ran",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_pickle_that_would_run_code_is_refused_in_autoclf_s_words(
    tmp_path: Path, digits_root: Path, writer: str
) -> None:
    """torch's weights-only unpickler blocks it; its warning (pickle protocol) and its advice to
    retry with weights_only=False, which autoclf neither offers nor should, are not shown."""
    path = tmp_path / "weights.pth"
    state = {"state_dict": _RunsCode()}
    if writer == "torch.save":
        torch.save(state, path)
    else:
        with path.open("wb") as handle:
            pickle.dump(state, handle, protocol=4)
    model = {"backbone": "test_resnet", "pretrained": str(path)}
    spec = write_spec(tmp_path / "spec.yaml", tiny_spec(digits_root, tmp_path, model=model))
    done = run_autoclf("validate", str(spec))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"cannot load pretrained weights {path}" in done.stderr
    assert "the file is a pickle that names Python objects besides tensors" in done.stderr
    assert "safetensors.torch.save_file" in done.stderr
    assert "weights_only" not in done.stderr and "Warning" not in done.stderr
    assert "PWNED" not in done.stdout + done.stderr
    assert done.stderr.count("\n") == 1  # one line


def test_transfer_spec_fine_tunes_from_a_checkpoint_trained_on_other_digits(
    tmp_path: Path, digits_root: Path
) -> None:
    """Train on one data set, save, fine-tune on another: the transfer example, end to end."""
    from automl_clf.data import load_dataset
    from automl_clf.datasets import write_digits
    from automl_clf.spec import FixedParams, resolve
    from automl_clf.train import train_config

    source = parse_spec(
        tiny_spec(digits_root, tmp_path, model={"backbone": "test_resnet"}), base_dir=tmp_path
    )
    fixed = FixedParams({"model.dropout": 0.0, "train.lr": 0.01, "augment.policy": "none"})
    trained = train_config(resolve(source, fixed), load_dataset(source.data))
    path = tmp_path / "digits_017.safetensors"
    save_file({k: v.contiguous() for k, v in trained.fit.model.state_dict().items()}, str(path))

    other = write_digits(tmp_path / "other", classes=[2, 3, 4, 5], per_class=25)
    target = parse_spec(
        tiny_spec(
            other,
            tmp_path,
            model={
                "backbone": "test_resnet",
                "pretrained": str(path),
                "transfer": {"choices": ["freeze", "partial"]},
            },
        ),
        base_dir=tmp_path,
    )
    fixed = FixedParams(
        {
            "model.dropout": 0.0,
            "train.lr": 0.01,
            "augment.policy": "none",
            "model.transfer": "freeze",
        }
    )
    config = resolve(target, fixed)
    assert config.model.transfer == "freeze" and config.model.unfreeze_stages is None
    tuned = train_config(config, load_dataset(target.data))
    weights = tuned.fit.model.state_dict()
    assert torch.equal(weights["conv1.0.weight"], trained.fit.model.state_dict()["conv1.0.weight"])
    assert weights["fc.weight"].shape[0] == 4
    assert tuned.latency_ms > 0 and tuned.n_params > 0
