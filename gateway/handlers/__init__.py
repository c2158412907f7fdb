"""HTTP handlers outside the webhook pipeline: management API and operations endpoints."""
