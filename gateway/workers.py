"""``run --workers N``: N processes share the port with SO_REUSEPORT; the parent supervises.

The kernel spreads connections over the workers. Prometheus metrics are aggregated across them
through prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by the parent
before any worker imports the client), so ``/metrics`` on any worker shows the whole process
group. SIGTERM and SIGINT are passed to every worker, which drains as a single process does; a
worker that dies unexpectedly is replaced.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_metrics() -> str:
    """Must run before ``prometheus_client`` is imported anywhere in this process."""
    path = tempfile.mkdtemp(prefix="webhook-gateway-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path


def supervise(workers: int, serve: Callable[[int], int]) -> int:
    """Fork ``workers`` children running ``serve(index)``; return when all have exited."""
    children: dict[int, int] = {}
    stopping = False

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # child: its own event loop, created after the fork
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, _remember_reload)  # until the server installs its own
            code = 1
            try:
                code = serve(index)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # os._exit below would end the process before Python prints it
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        children[pid] = index

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def reload(signum: int, _frame: object) -> None:
        for pid in list(children):  # each worker reloads its own config
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, reload)
    for index in range(workers):
        spawn(index)
    started = dict.fromkeys(children, time.monotonic())
    exit_code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = children.pop(pid)
        _mark_dead(pid)
        code = os.waitstatus_to_exitcode(status)
        if code < 0:  # killed by a signal: 128 + its number, as a shell reports it
            # ...unless it is the stop we forwarded, reaching a worker still starting (no handler yet).
            code = 0 if stopping and -code in (signal.SIGTERM, signal.SIGINT) else 128 - code
        if stopping:
            exit_code = max(exit_code, code)
            continue
        if code == 2 or time.monotonic() - started.get(pid, 0) < 1.0:
            # A config or listen error, or a crash at start: restarting would loop forever.
            print(f"webhook-gateway: worker {index} exited with {code} at start; stopping", file=sys.stderr)
            forward(signal.SIGTERM, None)
            exit_code = code or 1
            continue
        print(f"webhook-gateway: worker {index} (pid {pid}) exited with {code}; restarting", file=sys.stderr)
        spawn(index)
        started.update({p: time.monotonic() for p in children if p not in started})
    return exit_code


_reload_pending = False


def _remember_reload(signum: int, _frame: object) -> None:
    """A SIGHUP that reaches a worker still starting: kept, not lost (see :func:`reload_pending`)."""
    global _reload_pending
    _reload_pending = True


def reload_pending() -> bool:
    """Whether a SIGHUP came before the server could handle it (it reloads once it can); clears."""
    global _reload_pending
    pending, _reload_pending = _reload_pending, False
    return pending


def _mark_dead(pid: int) -> None:
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
