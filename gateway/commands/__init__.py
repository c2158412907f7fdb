"""Command-line tools beyond serving: generated docs, key-rotation reports."""
