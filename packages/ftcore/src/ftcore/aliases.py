"""Names of the integrations ftcore knows, and the Axolotl names that map to them."""

from __future__ import annotations

#: Entry-point names of the integrations published from this repository; each has the pip extra
#: ``ftcore[<name>]``.
KNOWN_INTEGRATIONS = (
    "cce",
    "liger",
    "moe-kernels",
    "kd",
    "diffusion",
    "nemo-gym",
    "spectrum",
    "grokfast",
    "swanlab",
    "lm-eval",
    "llmcompressor",
)

#: Axolotl's dotted plugin names (as its documented configs write them) -> ftcore entry-point name.
AXOLOTL_ALIASES = {
    "axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin": "cce",
    "axolotl.integrations.liger.LigerPlugin": "liger",
    "axolotl.integrations.kernels.KernelsPlugin": "moe-kernels",
    "axolotl.integrations.kd.KDPlugin": "kd",
    "axolotl.integrations.diffusion.DiffusionPlugin": "diffusion",
    "axolotl.integrations.nemo_gym.NemoGymPlugin": "nemo-gym",
    "axolotl.integrations.spectrum.SpectrumPlugin": "spectrum",
    "axolotl.integrations.grokfast.GrokfastPlugin": "grokfast",
    "axolotl.integrations.swanlab.SwanLabPlugin": "swanlab",
    "axolotl.integrations.lm_eval.LMEvalPlugin": "lm-eval",
    "axolotl.integrations.llm_compressor.LLMCompressorPlugin": "llmcompressor",
}

_AXOLOTL_PREFIX = "axolotl.integrations."


def normalize_name(name: str) -> str:
    """Entry-point names compare case-insensitively with ``_`` and ``-`` alike."""
    return name.strip().lower().replace("_", "-")


def resolve_alias(entry: str) -> str | None:
    """Return the ftcore plugin name for an Axolotl plugin path, or ``None`` if ``entry`` is not one.

    Both the full form and Axolotl's short form (``liger.LigerPlugin``) are accepted.
    """
    if entry in AXOLOTL_ALIASES:
        return AXOLOTL_ALIASES[entry]
    full = _AXOLOTL_PREFIX + entry
    return AXOLOTL_ALIASES.get(full)


def is_axolotl_path(entry: str) -> bool:
    return entry.startswith(_AXOLOTL_PREFIX)


def released_extras() -> set[str]:
    """The pip extras this installed ftcore declares (one per released integration)."""
    from importlib import metadata

    try:
        return set(metadata.metadata("ftcore").get_all("Provides-Extra") or [])
    except metadata.PackageNotFoundError:
        return set()


def install_hint(name: str) -> str:
    """How to install plugin ``name``."""
    if name in KNOWN_INTEGRATIONS:
        if name in released_extras():
            return f'install it with: pip install "ftcore[{name}]"'
        return f"ftcore-{name} is not released with this version of ftcore yet"
    return (
        f"install the package that provides it (a distribution with an entry point '{name}' "
        "in group 'ftcore'), or check the spelling"
    )
