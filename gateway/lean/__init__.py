"""The lean server path for webhooks: an ``asyncio.Protocol`` that serves ``POST`` to a provider's
webhook URL straight from the socket's bytes, and hands every other connection to aiohttp.

``runner.LeanRunner`` is an ``aiohttp.web.AppRunner`` whose protocol factory is
``runner.LeanServer``; ``protocol.LeanProtocol`` reads requests; ``request`` parses one request
head strictly and holds what the pipeline reads of it. See docs/architecture.md.
"""
