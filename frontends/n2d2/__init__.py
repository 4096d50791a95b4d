"""N2D2 INI models: the dialect (syntax, template, expr), channel mappings, weight files, lowering."""
from .lower import load, preprocess  # noqa: F401
