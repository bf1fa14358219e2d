"""Transfer learning: which parts of a pretrained network train, and at which learning rate.

timm groups every model's parameters coarsely as stem, stages, head (`group_matcher`), which is
what "freeze the feature extractor" and "unfreeze the last K stages" mean for any backbone.
Frozen parts keep their batch-norm statistics too (their BN layers stay in eval mode), so a
frozen feature extractor computes exactly what it computed before training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from automl_clf.spec.config import ModelConfig


@dataclass
class TransferPlan:
    """What the optimizer trains: (parameters, lr multiplier) groups; and the frozen norms."""

    groups: list[tuple[list[nn.Parameter], float]]
    frozen_norms: list[nn.Module] = field(default_factory=list)

    def keep_frozen_norms_in_eval(self) -> None:
        """Call after `model.train()`: frozen batch norms must not update their statistics."""
        for module in self.frozen_norms:
            module.eval()


def parameter_groups(model: nn.Module) -> list[list[str]]:
    """timm's coarse groups of parameter names, in order: stem, stages…, head (the last)."""
    from timm.models import group_parameters

    matcher = model.group_matcher(coarse=True)  # type: ignore[operator]  # timm models have it
    groups = group_parameters(model, matcher, reverse=False)
    return [groups[k] for k in sorted(groups)]


def plan_transfer(model: nn.Module, cfg: ModelConfig) -> TransferPlan:
    """Freeze what `cfg.transfer` says and split the rest into head and backbone LR groups."""
    if cfg.pretrained is None or not hasattr(model, "group_matcher"):
        return TransferPlan([(list(model.parameters()), 1.0)])
    groups = parameter_groups(model)
    head, body = groups[-1], groups[:-1]
    if cfg.transfer == "freeze":
        trainable_body: list[list[str]] = []
    elif cfg.transfer == "partial":
        k = cfg.unfreeze_stages or 1
        trainable_body = body[-k:]
    else:
        trainable_body = body
    params = dict(model.named_parameters())
    frozen: set[int] = set()
    for group in body:
        if group not in trainable_body:
            for name in group:
                params[name].requires_grad_(False)
                frozen.add(id(params[name]))
    norms: list[nn.Module] = [
        module
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        and all(id(p) in frozen for p in module.parameters(recurse=False))
        and any(True for _ in module.parameters(recurse=False))
    ]
    scale = cfg.backbone_lr_scale if cfg.backbone_lr_scale is not None else 1.0
    plan_groups = [([params[n] for n in head], 1.0)]
    body_params = [params[n] for group in trainable_body for n in group]
    if body_params:
        plan_groups.append((body_params, scale))
    return TransferPlan(plan_groups, norms)
