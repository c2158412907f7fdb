"""Config declared once: dataclass fields whose metadata says how to read, check and document them.

Below both ``gateway.settings`` (the gateway's file) and ``gateway.providers`` (provider entries):
``fields`` declares (``setting``, ``section``), ``read`` reads any declared dataclass from YAML
through ``gateway.reader.Reader``. The JSON Schema and docs tables are generated from the same
declarations by ``gateway.settings.schema``.
"""
