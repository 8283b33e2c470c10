"""petl-analysis: which parts of a pretrained Vision Transformer to adapt, and how, under a parameter budget.

Pipeline: ``probe -> select -> plan -> train -> report``; each stage passes a versioned JSON artefact to the next.
"""

from ._version import __version__
from .errors import PetlError

__all__ = ["PetlError", "__version__"]
