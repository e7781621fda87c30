"""What --resume does with each config field: refused, warned or silent, as docs/training.md's
tables say, for pix2pix (save.PIX2PIX_RESUME) and completion.py (completion.COMPLETION_RESUME).
Each field is changed on its own at a resume, so that a field moved to another class in the code
alone, or in the docs alone, fails here."""

import dataclasses
import re

import pytest

import completion
import save
from completion import CompletionConfig
from config import Config
from conftest import ROOT

ROWS = {"refused": "refused", "allowed with one warning": "warned", "silent": "silent"}


def doc_tables() -> list:
    """docs/training.md's resume tables, in order: [{field: class}] (pix2pix's, completion's)."""
    tables, current = [], None
    for line in (ROOT / "docs/training.md").read_text().splitlines():
        if line.startswith("| on resume | fields |"):
            current = {}
            tables.append(current)
        elif current is not None and line.startswith("|") and not line.startswith("|---"):
            label, fields = line.strip("|").split("|")
            kind = next(k for prefix, k in ROWS.items() if label.strip().startswith(prefix))
            for name in re.findall(r"`(\w+)`", fields):
                assert name not in current, f"{name} is in two rows of a docs table"
                current[name] = kind
        elif not line.startswith("|"):
            current = None
    assert len(tables) == 2, "docs/training.md: a resume table for train.py, one for completion.py"
    return tables


FAMILIES = {"pix2pix": (Config, save.PIX2PIX_RESUME),
            "completion": (CompletionConfig, completion.COMPLETION_RESUME)}


@pytest.mark.parametrize("family, table", [("pix2pix", 0), ("completion", 1)])
def test_the_docs_tables_are_the_codes_classes_and_every_field_is_in_one(family, table):
    config_class, classes = FAMILIES[family]
    code = {name: kind for kind in ("refused", "warned", "silent")
            for name in getattr(classes, kind)}
    names = [name for kind in ("refused", "warned", "silent") for name in getattr(classes, kind)]
    assert sorted(names) == sorted(f.name for f in dataclasses.fields(config_class))  # once each
    assert set(classes.unused_when) <= set(names)
    assert doc_tables()[table] == code


# A valid other value for the fields whose type alone does not give one (a bool flips, an int
# grows by one, a float halves, a string gets a suffix; each must stay a valid config)...
OTHER = {"pix2pix": dict(direction="BtoA", image_size=512, num_downs=7,
                         dropout_blocks="authors_pytorch", generator="resnet", norm_g="instance",
                         upsample="resize",
                         norm_d="instance", gan_loss="lsgan", lambda_perceptual=1.0,
                         precision="bf16", compile_mode="max-autotune", device="cpu"),
         "completion": dict(direction="BtoA", image_size=32, method="search",
                            gan_loss="saturating", precision="bf16", device="cpu")}
# ...and the config around it where the field takes effect (its class says what a change does)
WHERE = {"pix2pix": dict(load_size=dict(jitter=True), sketch_aug_strength=dict(sketch_aug=True),
                         lambda_gp=dict(gan_loss="wgan-gp", norm_d="none"),
                         lambda_perceptual=dict(vgg_weights="vgg19.pth"),
                         vgg_weights=dict(lambda_perceptual=1.0, vgg_weights="vgg19.pth"),
                         resnet_blocks=dict(generator="resnet"), norm_g=dict(generator="resnet"),
                         compile_mode=dict(compile=True), epochs=dict(epochs_decay=5),
                         **{name: dict(hints=True)
                            for name in ("hint_p", "hint_max", "hint_patch", "hint_on_shoe",
                                         "hint_recolour", "hint_global")}),
         "completion": dict(load_size=dict(jitter=True))}


def other_value(family: str, name: str, value):
    if name in OTHER[family]:
        return OTHER[family][name]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2
    return f"{value}2"


def every_field():
    return [(family, f.name) for family, (config_class, _) in FAMILIES.items()
            for f in dataclasses.fields(config_class)]


@pytest.mark.parametrize("family, name", every_field())
def test_each_field_changed_at_a_resume_is_refused_warned_or_silent_as_the_docs_say(family, name):
    config_class, classes = FAMILIES[family]
    expected = doc_tables()[list(FAMILIES).index(family)].get(name)
    assert expected, f"{name} is in no row of docs/training.md's {family} resume table"
    saved = config_class(**{"precision": "fp32", **WHERE[family].get(name, {})})
    changed = config_class(**{**saved.to_dict(),
                              name: other_value(family, name, getattr(saved, name))})
    line = [f"{name}={getattr(saved, name)} (now {getattr(changed, name)})"]
    # two processes: sync_bn takes effect
    refused, warned = save.resume_changes(saved, changed, classes, world_size=2)
    assert (refused, warned) == {"refused": (line, []), "warned": ([], line),
                                 "silent": ([], [])}[expected]


@pytest.mark.parametrize("change", [
    dict(load_size=300),  # no jitter
    dict(sketch_aug_strength=0.5),  # no sketch_aug
    dict(lambda_gp=3.0),  # bce
    dict(vgg_weights="other.pth"),  # no perceptual loss
    dict(resnet_blocks=6),  # a unet has none
    dict(compile_mode="max-autotune"),  # not compiled
    dict(epochs=30),  # no decay: the steps so far are the same
    dict(hint_p=0.5), dict(hint_max=3), dict(hint_patch=3), dict(hint_on_shoe=False),  # no hints
    dict(sync_bn=True),  # one process has nothing to sync
], ids=lambda change: next(iter(change)))
def test_a_field_that_takes_no_effect_on_either_side_is_no_change(change):
    saved = Config(precision="fp32")
    assert save.resume_changes(saved, Config(**{**saved.to_dict(), **change})) == ([], [])


def test_dropout_blocks_takes_no_effect_in_a_resnet_and_lambda_photo_none_in_a_search():
    saved = Config(precision="fp32", generator="resnet")
    assert save.resume_changes(saved, Config(**{**saved.to_dict(),
                                                "dropout_blocks": "authors_pytorch"})) == ([], [])
    saved = CompletionConfig(precision="fp32", method="search")
    assert save.resume_changes(saved, CompletionConfig(**{**saved.to_dict(), "lambda_photo": 0.5}),
                               completion.COMPLETION_RESUME) == ([], [])


def test_an_older_checkpoints_auto_precision_and_a_field_without_a_class():
    # what auto chose is unknown: run_precision says so instead of a resume warning
    assert save.resume_changes(Config(precision="auto"), Config(precision="bf16")) == ([], [])
    # a field added later and given no class is warned, never silently ignored
    classes = save.PIX2PIX_RESUME._replace(warned=tuple(n for n in save.PIX2PIX_RESUME.warned
                                                        if n != "lambda_l1"))
    assert save.resume_changes(Config(), Config(lambda_l1=10.0), classes) == (
        [], ["lambda_l1=100.0 (now 10.0)"])
