"""A hang detector for the tests of untrusted-text limits (docs/security.md).

`finishes(fn, *args)` runs fn in a forked child and returns its result, or fails the test if the
child is still running after `seconds`. It is not a stopwatch: the linear code takes milliseconds,
the super-linear code it guards against takes minutes to hours on the same input. A thread could
not do it: a backtracking regex holds the GIL, so not even a timer can interrupt it, and the
killed child takes the runaway work with it.
"""

from __future__ import annotations

import multiprocessing
import traceback

import pytest

SECONDS = 10


def _child(send, fn, args):
    try:
        send.send(("ok", fn(*args)))
    except BaseException:
        send.send(("error", traceback.format_exc()))


def finishes(fn, *args, seconds: float = SECONDS):
    """fn(*args), computed in a child process that may run at most `seconds`."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(send, fn, args), daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(seconds):
            pytest.fail(f"{getattr(fn, '__name__', fn)} did not finish in {seconds} s")
        status, value = receive.recv()
    finally:
        if child.is_alive():
            child.kill()
        child.join()
    if status == "error":
        pytest.fail(f"{getattr(fn, '__name__', fn)} raised in the child:\n{value}")
    return value
