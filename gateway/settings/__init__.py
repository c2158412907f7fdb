"""Configuration: YAML in, frozen dataclasses out."""

from gateway.settings.loader import load_config
from gateway.settings.model import Settings

__all__ = ["Settings", "load_config"]
