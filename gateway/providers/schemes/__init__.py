"""Signature schemes that need code, one module per provider, both directions."""
