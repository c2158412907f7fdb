"""api/openapi.yaml against the real answers: schemathesis (``--checks all``) runs against a
gateway served on loopback, bounded in time, and every check must pass.

The checks cover status codes, content types, response headers and bodies against the spec's
schemas, refusal of schema-violating input and acceptance of valid input, undocumented methods
(405 with a matching ``Allow``), and authentication. The gateway is the test's own (real
upstream on loopback, in-memory state); the management API key is passed as a header.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

#: The whole run's time budget (fuzzing and stateful testing repeat until it is spent).
MAX_TIME = 30
SEED = 20261203


@pytest.mark.slow
async def test_the_spec_holds_against_the_running_gateway(gateway, kit, tmp_path):
    cli = Path(sys.executable).with_name("schemathesis")
    assert cli.exists(), f"{cli} is missing: `make install-dev` installs schemathesis (the test extra)"
    base = f"http://{gateway.host}:{gateway.port}"
    proc = await asyncio.create_subprocess_exec(
        str(cli), "run", f"{base}/openapi.yaml", "--url", base,
        "--checks", "all", "--max-examples", "10", "--max-time", str(MAX_TIME), "--seed", str(SEED),
        "--header", f"X-API-Key: {kit.API_KEY}", "--workers", "1", "--no-color",
        "--generation-database", "none", "--report-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    async with asyncio.timeout(MAX_TIME + 60):
        out, _ = await proc.communicate()
    text = out.decode("utf-8", "replace")
    assert proc.returncode == 0, text[-6000:]
    # Every operation of the spec was selected and exercised.
    selected = re.search(r"Selected: (\d+)/(\d+)", text)
    tested = re.search(r"Tested: (\d+)", text)
    assert selected and tested, text[-3000:]
    assert selected[1] == selected[2] == tested[1] and int(tested[1]) >= 14, text[-3000:]
