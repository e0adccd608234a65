"""Which shared parameters affinities are computed on.

Embedding matrices hold about half of a small encoder's parameters and their
gradients are sparse in the vocabulary: whether they count as "shared" is a
modelling choice, so it is an explicit option (see DESIGN notes in the README).
"""

from __future__ import annotations

import re

import torch

from ..errors import ConfigError

# the numbered blocks of Hugging Face encoders: BERT/RoBERTa/DeBERTa "layer", Llama/Mistral "layers", GPT-2/
# BLOOM "h", T5 "block", ViT-style "blocks"
_LAYER = re.compile(r"(?:^|\.)(?:layers?|h|blocks?)\.(\d+)\.")


def select_shared(named: list[tuple[str, torch.nn.Parameter]], spec: str) -> list[tuple[str, torch.nn.Parameter]]:
    """Filter shared parameters by ``spec``.

    ``all``             every shared parameter
    ``no_embeddings``   all but embedding tables and their LayerNorm
    ``top:N``           the last N transformer layers (``...layer.<i>...``)
    ``regex:PATTERN``   names matching a regular expression
    """
    if spec == "all":
        chosen = named
    elif spec == "no_embeddings":
        chosen = [(n, p) for n, p in named if "embeddings" not in n]
    elif spec.startswith("top:"):
        try:
            count = int(spec[4:])
        except ValueError:
            raise ConfigError(f"affinity.parameters: 'top:N' needs an integer N, got '{spec}'") from None
        layers = {n: int(m.group(1)) for n, _ in named if (m := _LAYER.search(n))}
        if not layers:
            raise ConfigError(
                f"affinity.parameters: '{spec}' found no numbered layers (.layer.<i>., .layers.<i>., "
                ".h.<i>., .block.<i>.) among the shared parameters of this encoder: set "
                "affinity.parameters to all, or to regex:PATTERN for the blocks you mean"
            )
        last = max(layers.values())
        chosen = [(n, p) for n, p in named if n in layers and layers[n] > last - count]
    elif spec.startswith("regex:"):
        pattern = re.compile(spec[6:])
        chosen = [(n, p) for n, p in named if pattern.search(n)]
    else:
        raise ConfigError(f"affinity.parameters must be all, no_embeddings, top:N or regex:PATTERN, got '{spec}'")
    if not chosen:
        raise ConfigError(f"affinity.parameters '{spec}' selects no shared parameter")
    return chosen
