"""PayPal's certificate fetch (``gateway.providers.certificates.fetch_https``) over real TLS.

A loopback HTTPS server with a certificate issued by a test CA generated here (``cryptography``)
serves a PayPal-shaped signing certificate. The gateway's code runs unchanged in a child process
whose trust store is that CA (``SSL_CERT_FILE``, read when aiohttp builds its default context at
import): the way an operator's own CA bundle would be used. Checked: the certificate is fetched,
its key verifies a PayPal signature; a server whose CA is not trusted, a redirect (never
followed), a body over the size cap and an error status are all refused, by ``fetch_https`` and
as a 401-style ``Rejection`` by ``CertificateCache``.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from asymmetric import rsa_certificate_pem, rsa_sign
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.providers.certificates import MAX_BYTES

SEED = "paypal-https-fetch-key"
HOST = "api.paypal.test"  # what the cache sees (an allowed host); the fetch goes to loopback

CHILD = r"""
import asyncio, json, sys
from gateway.errors import Rejection
from gateway.providers.certificates import CertificateCache, fetch_https

base, paths, message, signature = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]

async def main():
    out = {}
    for path in paths:
        try:
            out[path] = {"ok": True, "bytes": len(await fetch_https(base + path))}
        except Exception as exc:
            out[path] = {"ok": False, "error": type(exc).__name__ + ": " + str(exc)[:160]}
    # The cache, as the verify stage uses it: an allowed URL, fetched (on loopback) with fetch_https.
    cache = CertificateCache(lambda url: fetch_https(url.replace("https://HOST", base)))
    try:
        key = await cache.key("https://HOST/cert.pem", ("HOST",), "rsa-sha256")
        key.key.verify(bytes.fromhex(signature), message.encode(), *padding())
        out["cache"] = {"ok": True, "fetches": cache.fetches}
    except Rejection as rej:
        out["cache"] = {"ok": False, "error": rej.code + ": " + rej.message}
    print(json.dumps(out))

def padding():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    return padding.PKCS1v15(), hashes.SHA256()

asyncio.run(main())
""".replace("HOST", HOST)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca(tmp: Path, label: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(_name(label)).issuer_name(_name(label)).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    path = tmp / f"{label}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def server_context(tmp: Path, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate) -> ssl.SSLContext:
    """A TLS server context for 127.0.0.1, its certificate issued by ``ca``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    (tmp / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "server.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp / "server.pem", tmp / "server.key")
    return context


@pytest.fixture
async def https_server(tmp_path):
    """``(base URL, trusted CA file, untrusted CA file, hits per path)``."""
    ca_key, ca, ca_file = make_ca(tmp_path, "gateway-test-ca")
    _, _, other_ca_file = make_ca(tmp_path, "some-other-ca")
    hits: dict[str, int] = {}
    pem = rsa_certificate_pem(SEED).encode()

    async def serve(request: web.Request) -> web.StreamResponse:
        hits[request.path] = hits.get(request.path, 0) + 1
        if request.path == "/cert.pem":
            return web.Response(body=pem, content_type="application/x-pem-file")
        if request.path == "/redirect":
            raise web.HTTPFound("/cert.pem")
        if request.path == "/huge":
            return web.Response(body=pem + b"\n" * MAX_BYTES)
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context(tmp_path, ca_key, ca))
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}", ca_file, other_ca_file, hits
    finally:
        await runner.cleanup()


async def fetch_in_child(base: str, ca_file: Path, paths: list[str]) -> dict[str, dict[str, object]]:
    import asyncio
    import os

    message = "paypal|transmission|signed"
    env = {**os.environ, "SSL_CERT_FILE": str(ca_file), "SSL_CERT_DIR": str(ca_file.parent / "no-such-dir")}
    args = [sys.executable, "-c", CHILD, base, json.dumps(paths), message, rsa_sign(SEED, message.encode()).hex()]
    proc = await asyncio.create_subprocess_exec(*args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)  # the server runs in this event loop
    assert proc.returncode == 0, err.decode()[-2000:]
    result: dict[str, dict[str, object]] = json.loads(out)
    return result


async def test_the_certificate_is_fetched_over_tls_from_a_trusted_ca(https_server):
    base, ca_file, _, hits = https_server
    result = await fetch_in_child(base, ca_file, ["/cert.pem", "/redirect", "/huge", "/missing"])
    assert result["/cert.pem"] == {"ok": True, "bytes": len(rsa_certificate_pem(SEED).encode())}
    assert result["cache"] == {"ok": True, "fetches": 1}  # its key verifies PayPal's signature
    assert result["/redirect"] == {"ok": False, "error": "OSError: HTTP 302"}
    assert hits["/cert.pem"] == 2, "the redirect was followed"  # the direct fetch and the cache's
    assert result["/huge"] == {"ok": False, "error": "OSError: the certificate is too large"}
    assert result["/missing"] == {"ok": False, "error": "OSError: HTTP 404"}


async def test_a_server_whose_ca_is_not_trusted_is_refused(https_server):
    base, _, other_ca_file, hits = https_server
    result = await fetch_in_child(base, other_ca_file, ["/cert.pem"])
    assert result["/cert.pem"]["ok"] is False
    assert "Certificate" in str(result["/cert.pem"]["error"]), result  # aiohttp's certificate error
    assert result["cache"]["ok"] is False
    error = str(result["cache"]["error"])
    assert error.startswith("invalid_signature: the signing certificate could not be used: "), error
    assert "CERTIFICATE_VERIFY_FAILED" in error
    assert hits == {}, "no request may reach a server that failed verification"
