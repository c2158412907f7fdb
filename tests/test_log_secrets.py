"""The README's promise: logs never hold a secret, even when aiohttp's HTTP parser refuses a request.

A header line with one control byte appended to a real credential, or an ``Authorization``
header over aiohttp's 8,190-byte field limit, is refused by the parser before any handler
runs; aiohttp used to log that refusal with the raw header bytes. The gateway runs as a real
process here and the test greps everything it printed for every configured key and secret.
"""

from __future__ import annotations

import asyncio
import json

import helpers_proc as hp
import helpers_services as hs
import pytest

from gateway.providers.signer import sign

PARSER_LINE = "request refused by the HTTP parser"


@pytest.fixture
async def gateway_proc(tmp_path, kit, upstream):
    port = kit.free_port()
    path = kit.write_config(tmp_path, upstream.url, listen={"port": port})
    gw = await hp.GatewayProcess(path, port, tmp_path / "gateway.log").start()
    yield gw
    gw.stop()


async def send_raw(port: int, head: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


def refused_lines(log_text: str) -> list[dict]:
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    return [entry for entry in lines if entry["msg"] == PARSER_LINE]


async def test_parser_refusals_never_log_header_values(gateway_proc, kit):
    key = kit.API_KEY.encode()
    body = kit.stripe_body("evt_log_leak")
    url = f"http://127.0.0.1:8080{kit.API}/stripe/"
    settings = kit.build(kit.config_dict("http://127.0.0.1:9/"))
    stripe_signature = sign(settings.providers["stripe"], body, url)["Stripe-Signature"]
    management = f"GET {kit.API}/providers/ HTTP/1.1\r\nHost: gw\r\n".encode()
    webhook = f"POST {kit.API}/stripe/ HTTP/1.1\r\nHost: gw\r\nContent-Length: {len(body)}\r\n".encode()
    requests = [
        management + b"X-API-Key: " + key + b"\x01\r\n\r\n",
        management + b"Authorization: Bearer " + key + b"\x7f\r\n\r\n",
        management + b"Authorization: Bearer " + key + b"A" * 9000 + b"\r\n\r\n",
        webhook + b"Stripe-Signature: " + stripe_signature.encode() + b"\x01\r\n\r\n" + body,
    ]
    for head in requests:
        answer = await send_raw(gateway_proc.port, head)
        assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0], answer[:200]
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "invalid_request", answer
        assert key not in answer and stripe_signature.encode() not in answer, answer  # not echoed back

    # Wait for the four refusals to be logged (a positive control: the grep below is not vacuous).
    await hs.eventually(lambda: len(refused_lines(gateway_proc.log.read_text("utf-8"))) == len(requests))
    text = gateway_proc.log.read_text("utf-8")
    for secret in (*kit.ALL_SECRETS, stripe_signature.split("v1=")[1]):
        assert secret not in text, f"{secret!r} is in the log"
    for entry in refused_lines(text):
        assert entry["level"] == "warning" and "exc" not in entry, entry  # one line, no traceback
        assert entry["status"] == 400 and entry["client_ip"] == "127.0.0.1"
        assert entry["error"] in ("BadHttpMessage", "LineTooLong"), entry
        assert "Bearer" not in entry["reason"] and "X-API-Key" not in entry["reason"], entry
