"""Webhook Gateway: verify, deduplicate and forward provider webhooks."""

__version__ = "0.1.0"
