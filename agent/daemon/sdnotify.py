"""systemd's notification protocol (sd_notify(3)) without a dependency: one datagram per message.

``$NOTIFY_SOCKET`` names an AF_UNIX datagram socket (a leading ``@`` means the abstract namespace).
Outside systemd the variable is unset and every call is a no-op, so the same code runs in a terminal.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends READY=1, STATUS=…, WATCHDOG=1, RELOADING=1, STOPPING=1 to the service manager."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + addr[1:] if addr.startswith("@") else addr
        self._sock: socket.socket | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID guards against a child inheriting the variables and pinging for its parent
        ours = not pid or pid == str(os.getpid())
        self.watchdog_usec = int(usec) if usec.isdigit() and ours else 0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    @property
    def watchdog_interval(self) -> float | None:
        """How often to ping: half the watchdog timeout, as sd_watchdog_enabled(3) recommends."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def notify(self, *fields: str) -> bool:
        if not self.address:
            return False
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            # newlines would split one STATUS text into several assignments
            self._sock.sendto("\n".join(f.replace("\n", " ") for f in fields).encode(), self.address)
            return True
        except OSError:
            return False  # the manager went away (e.g. during shutdown); never fatal for the agent

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
