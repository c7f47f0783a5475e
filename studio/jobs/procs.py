"""Process identity and death, as the job runner needs them (Linux ``/proc``).

A pid alone does not name a process: once it exits, the kernel may hand the same number to an
unrelated one. A job's record therefore keeps the pid *and* the process start time (field 22 of
``/proc/<pid>/stat``, clock ticks since boot); ``is_alive(pid, start)`` is true only when both match.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

#: Lines of a job's log quoted in the reason of a job whose process died.
TAIL_LINES = 20


def start_time(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot, ``None`` when there is no such
    process (or it is a zombie: it has exited and waits only to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    state, ticks = fields[0], fields[19]  # field 3 and field 22 of proc(5)
    return None if state in ("Z", "X") else int(ticks)


def is_alive(pid: int | None, started: int | None) -> bool:
    """Whether the process recorded as ``pid`` started at ``started`` still runs."""
    if not pid or started is None:
        return False
    return start_time(pid) == started


def describe_exit(returncode: int) -> str:
    """Why a process ended, in words, from its ``Popen.returncode`` (negative: a signal)."""
    if returncode == 0:
        return "exited normally"
    if returncode < 0:
        number = -returncode
        if number == signal.SIGKILL:
            return "killed (kill -9 or out of memory)"
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else f"signal {number}"
        if number == signal.SIGSEGV:
            return f"crashed ({name}, a native library fault)"
        return f"stopped by {name}"
    return f"crashed (exit status {returncode})"


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def log_tail(path: str | Path | None, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ("" when there is none)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
