"""SISGAN networks: the generator and the matching-aware discriminator."""

from sisgan.models.discriminator import Discriminator
from sisgan.models.generator import Generator, generator_from_config

__all__ = ["Discriminator", "Generator", "generator_from_config"]
