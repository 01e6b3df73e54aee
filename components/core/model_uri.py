"""MLflow registry URIs, `models:/NAME/VERSION` and `models:/NAME@ALIAS`, read in one place for
the deploy step and the model server."""

from __future__ import annotations

import re
from dataclasses import dataclass

MODELS_SCHEME = "models:/"
EXPECTED = "expected models:/NAME@ALIAS or models:/NAME/VERSION"
# An alias is everything after the first "@"; otherwise the version is the last path part.
_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^@]+?)(?:@(?P<alias>.+)|/(?P<version>[0-9]+))$")


@dataclass(frozen=True)
class RegistryUri:
    name: str
    version: str | None
    alias: str | None


def parse(uri: str) -> RegistryUri | None:
    """The parts of a registry URI, or None when `uri` is not one of the two forms."""
    match = _REGISTRY_URI.match(uri)
    if match is None:
        return None
    return RegistryUri(match["name"], match["version"], match["alias"])
