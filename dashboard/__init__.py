"""The staff dashboard at ``/payments/admin/``: aiohttp routes, Jinja2 templates, vendored static files.

It reads the services the management API reads (event store, stats, providers, replay, health);
it imports nothing from the webhook pipeline and adds nothing to the webhook route: its
middlewares belong to its own sub-application. See docs/dashboard.md.
"""

from __future__ import annotations

from dashboard.app import PREFIX, admin_app, mount

__all__ = ["PREFIX", "admin_app", "mount"]
