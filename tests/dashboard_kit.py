"""Helpers of the dashboard tests: a gateway with the dashboard on, and a logged-in staff client."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

ADMIN = "/payments/admin"
DASHBOARD_KEY = "test-dashboard-key-3e9a7c"
CSRF_META = re.compile(r'name="csrf-token" content="([^"]+)"')
LOGIN_TOKEN = re.compile(r'name="token" value="([^"]+)"')


def dashboard_overrides(**more: Any) -> dict[str, Any]:
    return {"dashboard": {"enabled": True, "keys": [DASHBOARD_KEY], **more}}


async def login(client: TestClient, key: str = DASHBOARD_KEY, headers: dict[str, str] | None = None) -> ClientResponse:
    page = await client.get(f"{ADMIN}/login/")
    token = LOGIN_TOKEN.search(await page.text())
    assert token, "the login form carries its token"
    return await client.post(
        f"{ADMIN}/login/", data={"token": token.group(1), "key": key, "next": ""}, allow_redirects=False,
        headers=headers or {},
    )  # fmt: skip


async def csrf(client: TestClient) -> str:
    resp = await client.get(f"{ADMIN}/")
    match = CSRF_META.search(await resp.text())
    assert match and match.group(1), "a logged-in page carries the CSRF token"
    return match.group(1)
