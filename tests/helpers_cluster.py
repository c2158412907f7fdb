"""A private Redis Cluster on loopback ports, started and torn down by the tests that use it.

``RedisCluster(primaries=3, replicas=1).start()`` runs ``redis-server --cluster-enabled yes`` per
node (each in its own directory of one temp dir, nothing persisted), joins them with
``redis-cli --cluster create ... --cluster-yes`` and waits until every node reports
``cluster_state:ok`` and agrees on the slot map. A short ``cluster-node-timeout`` makes a failover
take about two seconds. Every wait is bounded; a missing binary fails the test (``unavailable``).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from helpers_services import unavailable

Node = tuple[str, int]


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path


def make_certs(directory: Path) -> Certs:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost, signed by it."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    until = now + datetime.timedelta(days=1)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.SubjectAlternativeName(names), critical=False).sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    out = Certs(directory / "ca.pem", directory / "node.pem", directory / "node.key")
    out.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = serialization.PrivateFormat.TraditionalOpenSSL
    out.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, pem, serialization.NoEncryption()))
    return out


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} (binary, Debian package redis-server / redis-tools)", FileNotFoundError(name))
    assert found is not None
    return found


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port(taken: set[int]) -> int:
    """A port whose cluster bus port (+10000) is free too."""
    for _ in range(1000):
        port = random.randint(20000, 55000)
        if port not in taken and port + 10000 not in taken and _free(port) and _free(port + 10000):
            taken.update((port, port + 10000))
            return port
    raise RuntimeError("no free port pair for a cluster node")


class _Poll:
    """One bounded poll of ``check()``: ``done()`` tries it once (exceptions count as not yet)
    and raises once ``timeout`` has passed without a truthy result, kept in ``result``."""

    def __init__(self, check: Callable[[], Any], what: str, timeout: float) -> None:
        self.check, self.what, self.timeout = check, what, timeout
        self.deadline = time.monotonic() + timeout
        self.result: Any = None

    def done(self) -> bool:
        try:
            self.result = self.check()
        except Exception:  # a node still starting or electing: not yet
            self.result = None
        if self.result:
            return True
        if time.monotonic() > self.deadline:
            raise AssertionError(f"{self.what}: not within {self.timeout} s")
        return False


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``check()`` until truthy (exceptions count as not yet); fail after ``timeout``."""
    poll = _Poll(check, what, timeout)
    while not poll.done():
        time.sleep(0.05)
    return poll.result


async def until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """``wait_for`` inside a test's event loop: polls without blocking the gateway under test."""
    poll = _Poll(check, what, timeout)
    while not poll.done():
        await asyncio.sleep(0.05)
    return poll.result


class RedisCluster:
    def __init__(
        self, primaries: int = 3, replicas: int = 0, node_timeout_ms: int = 1000, tls: bool = False, password: str = ""
    ) -> None:
        self.primaries, self.replicas, self.node_timeout_ms = primaries, replicas, node_timeout_ms
        self.password = password
        taken: set[int] = set()
        self.ports = [free_cluster_port(taken) for _ in range(primaries * (1 + replicas))]
        self.dir = Path(tempfile.mkdtemp(prefix="gw-cluster-"))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.tls = make_certs(self.dir) if tls else None

    @property
    def url(self) -> str:
        """Two seeds: the client finds the rest."""
        scheme = "rediss+cluster" if self.tls else "redis+cluster"
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"{scheme}://{auth}" + ",".join(f"127.0.0.1:{port}" for port in self.ports[:2])

    def start(self) -> RedisCluster:
        try:
            for port in self.ports:
                self.start_node(port)
            nodes = [f"127.0.0.1:{port}" for port in self.ports]
            create = [_binary("redis-cli"), *(["--tls", "--cacert", str(self.tls.ca)] if self.tls else [])]
            create += ["-a", self.password, "--no-auth-warning"] if self.password else []
            create += ["--cluster", "create", *nodes]
            create += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
            subprocess.run(create, check=True, timeout=60, capture_output=True)
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def start_node(self, port: int) -> None:
        node_dir = self.dir / str(port)
        node_dir.mkdir(exist_ok=True)
        args = [_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir)]
        if self.tls:  # TLS only: clients, the cluster bus and replication
            args[1:3] = ["--port", "0", "--tls-port", str(port), "--tls-cluster", "yes", "--tls-replication", "yes"]
            args += ["--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key)]
            args += ["--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "no"]
        args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-node-timeout", str(self.node_timeout_ms), "--save", "", "--appendonly", "no"]
        args += ["--requirepass", self.password, "--masterauth", self.password] if self.password else []
        self.procs[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.client(port).ping(), f"redis-server on {port} answers", 10)

    def client(self, port: int) -> Any:
        """A plain redis-py client of one node (the tests' independent view, not the gateway's)."""
        import redis

        tls = {"ssl": True, "ssl_ca_certs": str(self.tls.ca)} if self.tls else {}
        auth = {"password": self.password} if self.password else {}
        return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2, **tls, **auth)

    def info(self, port: int) -> dict[str, str]:
        with self.client(port) as c:
            text = c.execute_command("CLUSTER", "INFO")
        text = text.decode() if isinstance(text, bytes) else text
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Every live node: state ok, every slot assigned, all of them known."""
        live = len(self.procs)

        def healthy() -> bool:
            infos = [self.info(port) for port in self.procs]
            ok = ("ok", "16384")
            return all((i["cluster_state"], i["cluster_slots_assigned"]) == ok for i in infos) and all(
                int(i["cluster_known_nodes"]) >= live for i in infos
            )

        wait_for(healthy, "cluster_state:ok on every node", timeout)
        if self.replicas:  # and each primary's replicas in sync (CLUSTER SLOTS lists only those)
            wait_for(lambda: all(len(r) == self.replicas for *_, r in self.slots()), "replicas in sync", timeout)

    def slots(self, port: int | None = None) -> list[tuple[int, int, Node, list[Node]]]:
        """``CLUSTER SLOTS`` as one node sees it: ``(start, end, primary, replicas)``."""
        with self.client(port or next(iter(self.procs))) as c:
            reply = c.execute_command("CLUSTER", "SLOTS")
        if isinstance(reply, dict):  # redis-py may parse it into {(start, end): {...}}
            raise TypeError("unexpected CLUSTER SLOTS shape")
        return [(s, e, (p[0].decode(), p[1]), [(r[0].decode(), r[1]) for r in rest]) for s, e, p, *rest in reply]

    def owner(self, slot: int, port: int | None = None) -> int:
        """The port of the primary that serves ``slot``."""
        return next(p[1] for s, e, p, _ in self.slots(port) if s <= slot <= e)

    def node_id(self, port: int) -> str:
        with self.client(port) as c:
            return str(c.execute_command("CLUSTER", "MYID").decode())

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(10)

    def stop(self) -> None:
        for port in list(self.procs):
            self.kill(port)
        shutil.rmtree(self.dir, ignore_errors=True)
