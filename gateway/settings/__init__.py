"""Configuration: YAML in (``gateway.settings.loader.load_config``), frozen dataclasses out."""
