"""The CPU thread policy of the command line and the web demo, set before torch is imported.

torch's CPU thread pool is OpenMP, whose threads by default spin while they wait for work. Next to
another busy process (a shared machine, a second job) the spinning threads and the work take turns
on the same cores, and the same explanation runs many times slower than on one thread
(``scripts/thread_contention.py`` measures it; docs/performance.md has the numbers). Waiting
passively (``OMP_WAIT_POLICY=PASSIVE``: a waiting thread sleeps) removes that penalty and keeps
the thread count, so larger models still use every core.

:func:`apply_thread_policy` is that policy: ``OMP_WAIT_POLICY=PASSIVE`` unless the environment
already chooses a wait policy, and ``--threads N`` (or ``$MOXI_THREADS``) as the thread count of
torch, OpenMP and MKL. The library itself sets nothing: a Python program keeps its own settings.
Only the standard library is imported here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

from .errors import MoXIError

__all__ = ["THREADS_ENV", "WAIT_POLICY", "apply_thread_policy", "thread_settings"]

#: environment variable giving the thread count when ``--threads`` is not given
THREADS_ENV = "MOXI_THREADS"
#: how OpenMP threads wait for work unless the environment says otherwise
WAIT_POLICY = "PASSIVE"
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
_COUNT_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _count(value: int | str | None, source: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if count < 1:
        raise MoXIError(f"{source} must be a positive number of threads, got {value!r}")
    return count


def thread_settings(threads: int | None = None, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables the policy sets, given ``--threads`` and the current environment.

    ``OMP_WAIT_POLICY=PASSIVE`` unless ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is set; with a thread
    count (``threads``, else ``$MOXI_THREADS``) also ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS``.
    """
    environ = os.environ if environ is None else environ
    settings: dict[str, str] = {}
    if not any(environ.get(name) for name in _WAIT_VARIABLES):
        settings["OMP_WAIT_POLICY"] = WAIT_POLICY
    count = _count(threads, "--threads") or _count(environ.get(THREADS_ENV), f"${THREADS_ENV}")
    if count is not None:
        settings.update({name: str(count) for name in _COUNT_VARIABLES})
    return settings


def apply_thread_policy(threads: int | None = None, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set :func:`thread_settings` in the environment (before torch is imported, for it to count); returns them.

    Torch already imported (a program calling the command line in-process) only gets the thread count.
    """
    environ = os.environ if environ is None else environ
    settings = thread_settings(threads, environ)
    environ.update(settings)
    if "OMP_NUM_THREADS" in settings and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(settings["OMP_NUM_THREADS"]))
    return settings
