"""Backbone names without importing timm (spec/backbones.py): the shipped names are the installed
timm's and answer as timm does; another timm version, or a model registered with timm in the
process, is answered by timm itself."""

from __future__ import annotations

import json
from typing import Any

import timm

from automl_clf.spec import backbones as names
from automl_clf.spec.backbones import (
    BACKBONES,
    OWN_BACKBONES,
    TimmNames,
    list_backbones,
    render_timm_names,
    shipped_names,
)
from tests.conftest import fresh_python

REGENERATE = "the installed timm's names changed: run `make timm-names` and commit the result"


def run_python(code: str) -> Any:
    """`code` in a fresh interpreter (nothing imported yet); the JSON it prints last."""
    done = fresh_python("-c", code)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_shipped_names_are_the_installed_timms() -> None:
    live, shipped = TimmNames.from_timm(), shipped_names()
    assert shipped.version == live.version, REGENERATE
    assert shipped.models == live.models, REGENERATE
    assert shipped.deprecated == live.deprecated, REGENERATE
    assert shipped.pretrained == live.pretrained, REGENERATE
    # `make timm-names` rewrites the file as it is: regenerating changes nothing.
    assert render_timm_names(live) == names.SHIPPED_PATH.read_text(encoding="utf-8"), REGENERATE


def test_names_answer_as_timm_does() -> None:
    shipped = shipped_names()
    odd = ["resnet5O", "resnet18.nope", "resnet18.", "", ".a1_in1k", "vit_base_patch16_224.x"]
    for name in [*shipped.models, *shipped.deprecated, *shipped.pretrained, *odd]:
        assert shipped.is_model(name) == timm.is_model(name), name
        assert shipped.is_pretrained(name) == timm.is_model_pretrained(name), name
    for pattern in ["*", "resnet*", "resnet18", "resnet18.*", "*in22k*", "vit_*patch16*", "x"]:
        assert shipped.list_models(pattern) == timm.list_models(pattern), pattern
        assert shipped.list_pretrained(pattern) == timm.list_pretrained(pattern), pattern


def test_list_backbones_puts_ours_first_then_timms() -> None:
    assert list_backbones("*")[: len(OWN_BACKBONES)] == list(OWN_BACKBONES)
    assert list_backbones("test_res*") == ["test_resnet"]
    assert list_backbones("test_resnet", pretrained=True) == ["test_resnet.r160_in1k"]


def test_every_own_backbone_is_named_where_the_spec_reads_it() -> None:
    from automl_clf.models import factory  # noqa: F401  (imports every OWN_BACKBONES module)

    assert list(BACKBONES) == list(OWN_BACKBONES)


CHECK = """
import json, sys
from automl_clf.spec import backbones as names
from automl_clf.spec.backbones import check_backbone_name
def error(name, **kwargs):
    try:
        check_backbone_name(name, **kwargs)
    except ValueError as exc:
        return str(exc)
    return None
"""


def test_without_timm_imported_the_shipped_names_answer() -> None:
    out = run_python(
        CHECK + "print(json.dumps([error('resnet5O'), error('resnet18.a1_in1kk'), "
        "error('test_resnet'), error('cnn'), 'timm' in sys.modules, 'torch' in sys.modules]))"
    )
    assert out == [
        "Unknown backbone 'resnet5O'. Did you mean 'resnet50' or 'resnet51q' or 'resnet50t'? "
        "List them with: autoclf backbones 'resnet*'",
        "Unknown pretrained tag 'a1_in1kk' for 'resnet18'. Did you mean 'resnet18.a1_in1k' or "
        "'resnet18.a3_in1k' or 'resnet18.a2_in1k'? List them with: autoclf backbones "
        "--pretrained 'resnet18.*'",
        None,
        None,
        False,
        False,
    ]


def test_another_timm_version_is_asked_itself_or_left_for_the_library_pass() -> None:
    # The shipped names as if taken from another timm version than the installed one.
    out = run_python(
        CHECK + "shipped = names.shipped_names()\n"
        "names.shipped_names = lambda: names.TimmNames('0.0.1', (), (), ())\n"
        "left = [names.timm_names(import_timm=False), error('resnet5O', import_timm=False), "
        "'timm' in sys.modules]\n"
        "print(json.dumps([*left, error('resnet5O'), error('resnet50'), 'timm' in sys.modules]))"
    )
    assert out[:3] == [None, None, False]  # nothing checked, timm not imported
    assert out[3].startswith("Unknown backbone 'resnet5O'. Did you mean 'resnet50'")
    assert out[4:] == [None, True]  # timm itself answered


def test_a_model_registered_with_timm_in_the_process_is_a_backbone() -> None:
    out = run_python(
        CHECK + "import timm\nfrom timm.models import register_model\n"
        "@register_model\ndef my_net(**kwargs): ...\n"
        "from automl_clf.spec.backbones import list_backbones\n"
        "print(json.dumps([error('my_net'), list_backbones('my_*')]))"
    )
    assert out == [None, ["my_net"]]
