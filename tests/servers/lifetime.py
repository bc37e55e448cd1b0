"""Test servers must not outlive the process that started them.

A test run or benchmark killed with SIGKILL (or one that crashes) cannot stop
the servers it started; they are then adopted by init or a subreaper and would
keep their ports and CPU until the machine restarts. Each server process
calls :func:`exit_with_parent` once it is up.
"""

from __future__ import annotations

import os
import signal
import threading
import time


def exit_with_parent(poll_seconds: float = 1.0) -> None:
    """Send ourselves SIGTERM once the process that started us is gone.

    A daemon thread compares our parent's pid with the one we started with:
    it changes when the parent dies and we are adopted. SIGTERM lets a server
    that handles it (Azurite's wrapper stops its Node child) clean up.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
