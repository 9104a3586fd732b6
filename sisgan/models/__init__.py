"""SISGAN networks: the generator and the matching-aware discriminator."""

from sisgan.models.discriminator import Discriminator
from sisgan.models.generator import Generator

__all__ = ["Discriminator", "Generator"]
