"""Recipes as LLM Compressor 0.14 actually reads them.

Three ways a recipe silently does nothing with 0.14, each handled here:

* ``Recipe.model_validate(dict)`` drops every stage: recipes go through ``Recipe.from_dict``.
* Targets written against parameter names (``re:.*q_proj.weight``) match no module: they are
  translated to module names (``re:.*q_proj$``), with a notice.
* A modifier without ``start`` never starts: ``start: 0`` is set, with a notice.
* A stage whose name does not end in ``_stage`` loads no modifier: it is renamed, with a notice.

After loading, the number of modifiers LLM Compressor sees is checked against the recipe.

Quantization modifiers are split off into a post-training stage (``oneshot`` after fine-tuning).
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path
from typing import Any

import yaml

from ftcore.errors import FtcoreError, first_line

log = logging.getLogger("ftcore")

#: Modifiers that quantize: run once after training, not during it.
QUANTIZATION_MODIFIERS = ("QuantizationModifier", "GPTQModifier", "AWQModifier")
_WEIGHT_SUFFIX = re.compile(r"(\\?\.weight)(\$)?$")


def read_recipe(recipe: Any, base: Path | None = None) -> dict[str, Any]:
    """A recipe mapping from a mapping, YAML text, or a YAML file path."""
    if isinstance(recipe, dict):
        return copy.deepcopy(recipe)
    if isinstance(recipe, str):
        path = Path(recipe).expanduser()
        if not path.is_absolute() and base is not None and (base / path).is_file():
            path = base / path
        text = (
            path.read_text(encoding="utf-8")
            if path.suffix in (".yaml", ".yml") and path.is_file()
            else recipe
        )
        if path.suffix in (".yaml", ".yml") and not path.is_file():
            raise FtcoreError(f"llmcompressor.recipe: no recipe file {recipe}")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise FtcoreError(f"llmcompressor.recipe: not valid YAML: {exc}") from None
        if isinstance(data, dict):
            return data
    raise FtcoreError(
        "llmcompressor.recipe: give a mapping of stages, YAML text, or a YAML file path"
    )


def _modifiers(recipe: dict[str, Any]):
    """``(stage name, group name, modifier name, arguments)`` for every modifier."""
    for stage, groups in recipe.items():
        if not isinstance(groups, dict):
            continue
        for group, modifiers in groups.items():
            if group.endswith("_modifiers") and isinstance(modifiers, dict):
                for name, arguments in modifiers.items():
                    yield stage, group, name, arguments if isinstance(arguments, dict) else {}


def count_modifiers(recipe: dict[str, Any]) -> int:
    return sum(1 for _ in _modifiers(recipe))


def target_list(stage: str, name: str, targets: Any) -> list[str]:
    """A modifier's ``targets`` as a list of names; an error for anything else."""
    listed = [targets] if isinstance(targets, str) else targets
    if not isinstance(listed, list) or not all(isinstance(t, str) for t in listed):
        raise FtcoreError(
            f"llmcompressor.recipe: {stage}.{name}.targets must be a module name, a class (e.g. "
            f"Linear) or a list of them, got {targets!r}"
        )
    return list(listed)


def check_targets(recipe: dict[str, Any]) -> None:
    """Every modifier's ``targets`` is a name or a list of names (``validate`` asks)."""
    for stage, _group, name, arguments in _modifiers(recipe):
        if arguments.get("targets") is not None:
            target_list(stage, name, arguments["targets"])


def translate_target(target: str) -> str:
    """``re:.*q_proj.weight`` -> ``re:.*q_proj$`` (0.14 matches module names, not parameters)."""
    if target.startswith("re:") and _WEIGHT_SUFFIX.search(target):
        return _WEIGHT_SUFFIX.sub("$", target)
    return target


def normalise(recipe: dict[str, Any]) -> dict[str, Any]:
    """Rename stages, translate parameter-style targets, add ``start: 0`` where missing; say so."""
    renamed = {}
    for stage, groups in recipe.items():
        name = stage if stage.endswith("_stage") else f"{stage}_stage"
        if name != stage:
            log.warning(
                "ftcore: llmcompressor stage '%s' is renamed '%s': LLM Compressor 0.14 loads no "
                "modifier from a stage whose name does not end in _stage",
                stage,
                name,
            )
        renamed[name] = groups
    recipe = copy.deepcopy(renamed)
    for stage, group, name, arguments in _modifiers(recipe):
        targets = arguments.get("targets")
        if targets is not None:
            listed = target_list(stage, name, targets)
            translated = [translate_target(t) for t in listed]
            if translated != listed:
                log.warning(
                    "ftcore: llmcompressor %s.%s: targets %s name parameters; LLM Compressor 0.14 "
                    "matches modules, so they become %s",
                    stage,
                    name,
                    listed,
                    translated,
                )
            arguments["targets"] = translated
        if name not in QUANTIZATION_MODIFIERS and arguments.get("start") is None:
            log.warning(
                "ftcore: llmcompressor %s.%s has no start; LLM Compressor 0.14 never starts it "
                "then, so start: 0 is used",
                stage,
                name,
            )
            arguments["start"] = 0
        recipe[stage][group][name] = arguments
    return recipe


def split(recipe: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(training stages, post-training quantization stages)`` of a recipe."""
    training: dict[str, Any] = {}
    post: dict[str, Any] = {}
    for stage, group, name, arguments in _modifiers(recipe):
        target = post if name in QUANTIZATION_MODIFIERS else training
        target.setdefault(stage, {}).setdefault(group, {})[name] = arguments
    return training, post


def check_matches(recipe: dict[str, Any], model: Any) -> None:
    """Every modifier must match at least one module: a recipe never silently does nothing."""
    from compressed_tensors.utils import match_named_modules

    for stage, _group, name, arguments in _modifiers(recipe):
        targets = arguments.get("targets") or ["Linear"]
        targets = [targets] if isinstance(targets, str) else targets
        ignore = arguments.get("ignore") or []
        matched = list(match_named_modules(model, targets, ignore))
        if not matched:
            raise FtcoreError(
                f"llmcompressor.recipe: {stage}.{name} matches no module of the model "
                f"(targets {targets}); targets name modules, e.g. 're:.*(q|k|v|o)_proj$', or "
                "classes, e.g. 'Linear'"
            )


def to_recipe(recipe: dict[str, Any]) -> Any:
    """LLM Compressor's ``Recipe``, checked to hold every modifier of ``recipe``."""
    from llmcompressor.recipe import Recipe
    from pydantic import ValidationError

    try:
        loaded = Recipe.from_dict(recipe)
    except ValidationError as error:  # a modifier's arguments
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "its arguments"
        raise FtcoreError(f"llmcompressor.recipe: {error.title}: {where}: {first['msg']}") from None
    except (ValueError, TypeError) as error:  # an unknown modifier, a malformed stage
        raise FtcoreError(
            f"llmcompressor.recipe: LLM Compressor cannot load it: {first_line(error)}"
        ) from None
    expected = sum(1 for _ in _modifiers(recipe))
    if len(loaded.modifiers) != expected:
        raise FtcoreError(
            f"llmcompressor.recipe: LLM Compressor loaded {len(loaded.modifiers)} of its "
            f"{expected} modifiers; write stages as <name>_stage: {{<name>_modifiers: {{...}}}}"
        )
    return loaded
