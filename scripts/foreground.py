"""Run a command as the terminal's foreground job, so Ctrl-C reaches it and not `make`.

`make serve` runs the daemon through this: on Ctrl-C the terminal signals only the
daemon's process group, the daemon drains and exits 0, and make (which would otherwise
die of the SIGINT itself and report error 130) sees that exit status. SIGTERM/SIGHUP
sent to this process are passed on. Without a terminal the command simply runs.
Usage: python scripts/foreground.py COMMAND [ARG...]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Optional


def _terminal() -> Optional[int]:
    """The controlling terminal's descriptor when we run in its foreground group."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
                return fd
        except OSError:
            continue
    return None


def main(argv: list[str]) -> int:
    """Run argv[0:] in its own foreground process group; its exit status (128+N if killed)."""
    if not argv:
        sys.stderr.write("usage: foreground.py COMMAND [ARG...]\n")
        return 2
    tty = _terminal()
    if tty is None:
        os.execvp(argv[0], argv)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # we give the terminal back from behind
    child = subprocess.Popen(argv, process_group=0) if sys.version_info >= (3, 11) else \
        subprocess.Popen(argv, preexec_fn=os.setpgrp)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # whatever reaches us
        signal.signal(signum, lambda sig, _frame: child.send_signal(sig))
    own_group = os.getpgrp()
    try:
        os.tcsetpgrp(tty, child.pid)
    except OSError:
        pass
    try:
        code = child.wait()
    finally:
        try:
            os.tcsetpgrp(tty, own_group)
        except OSError:
            pass
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
