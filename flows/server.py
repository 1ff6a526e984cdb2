"""The Prefect API a ``pbrf run`` reports to: the configured server, or a temporary one it owns.

With ``PREFECT_API_URL`` set, :class:`ConfiguredServer` checks once that something answers
there (one line and exit 1 otherwise) and watches it during the run. Unset, :class:`OwnedServer`
starts Prefect's API (the same uvicorn app as Prefect's own temporary server, UI off, on a free
loopback port, the database under ``PREFECT_HOME``) as a child process that ``pbrf`` owns:

* in a **session of its own**, so Ctrl-C at the terminal (SIGINT to the foreground process
  group) reaches ``pbrf`` and not the server, which ``pbrf`` needs to record the interrupt;
* **ended by** ``pbrf`` on normal exit, SIGINT, SIGTERM and SIGHUP (``stop``);
* **dying with** ``pbrf`` when ``pbrf`` is killed outright (SIGKILL, OOM): on Linux the kernel
  sends it SIGTERM (``PR_SET_PDEATHSIG``), elsewhere it notices its parent is gone within a
  second; as a last resort every server writes ``$PREFECT_HOME/pbrf-servers/<pid>.json`` and the
  next ``pbrf run`` ends any whose owner is dead (:func:`sweep_orphans`).

The server process itself is ``python -m flows.server_process --parent PID --port PORT``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

MARKER = "flows.server_process"  # the server's module: how a sweep recognises one of ours
STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


class ServerError(RuntimeError):
    """The Prefect API cannot be reached, could not start, or went away during a run."""


# --------------------------------------------------------------------------- probing


def reachable(api_url: str, timeout: float = 2.0) -> str | None:
    """``None`` if an HTTP server answers ``<api_url>/health``, else why not (one phrase).

    Any HTTP answer counts (a server that wants credentials is still there).
    """
    url = f"{api_url.rstrip('/')}/health"
    host = urllib.parse.urlsplit(url).hostname or ""
    # a loopback server is reached directly, whatever HTTP(S)_PROXY says
    handlers = (
        [urllib.request.ProxyHandler({})] if host in ("127.0.0.1", "localhost", "::1") else []
    )
    try:
        with urllib.request.build_opener(*handlers).open(url, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused, bad URL
        return str(getattr(exc, "reason", exc))


def configured_api_url() -> str | None:
    """The API URL Prefect's settings give (environment, profile or a test harness)."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def use_api_url(url: str) -> None:
    """Point this process's Prefect settings (and its children) at ``url``."""
    os.environ["PREFECT_API_URL"] = url
    if "prefect.context" in sys.modules:  # settings are frozen at import: re-read them
        import prefect.context

        prefect.context.refresh_global_settings_context()


class ConfiguredServer:
    """A server at ``PREFECT_API_URL``: checked up front, then watched during the run."""

    owned = False

    def __init__(self, api_url: str, *, misses: int = 3, interval: float = 2.0) -> None:
        self.api_url, self._misses, self._interval = api_url, misses, interval
        self._failed, self._next = 0, 0.0

    def check(self) -> None:
        """:class:`ServerError` unless a server answers (before anything is written)."""
        why = reachable(self.api_url, timeout=5.0)
        if why is not None:
            raise ServerError(
                f"PREFECT_API_URL={self.api_url}: no Prefect server answers ({why}); start one "
                "with `prefect server start`, or unset PREFECT_API_URL to run on a temporary "
                "server"
            )

    def start(self) -> str:
        self.check()
        return self.api_url

    def problem(self) -> str | None:
        """Why the server is lost (``misses`` failed checks ``interval`` apart), else ``None``."""
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + self._interval
        why = reachable(self.api_url)
        self._failed = 0 if why is None else self._failed + 1
        if self._failed >= self._misses:
            return f"the Prefect server at PREFECT_API_URL={self.api_url} stopped answering ({why})"
        return None

    def stop(self) -> None:
        pass

    def __enter__(self) -> ConfiguredServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- owned server


def _state_dir() -> Path:
    home = os.environ.get("PREFECT_HOME") or str(Path.home() / ".prefect")
    return Path(home).expanduser() / "pbrf-servers"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _command_line(pid: int) -> str:
    proc = Path(f"/proc/{pid}/cmdline")
    if proc.exists():
        with contextlib.suppress(OSError):
            return proc.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return ""
    out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
    return out.stdout


def _end(pid: int, timeout: float = 3.0, gone: Callable[[], bool] | None = None) -> None:
    """SIGTERM the process group of ``pid`` (a session leader), SIGKILL after ``timeout``.

    ``gone`` tells when it has ended (for a child: reaped, not just a zombie).
    """
    gone = gone or (lambda: not _alive(pid))
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if gone():
                return
            time.sleep(0.05)


def sweep_orphans() -> list[int]:
    """End temporary servers whose ``pbrf`` is gone; return their pids."""
    ended = []
    for path in sorted(_state_dir().glob("*.json")):
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            pid, owner = int(info["pid"]), int(info["owner"])
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            continue
        if _alive(owner):
            continue
        command = _command_line(pid) if _alive(pid) else ""
        if MARKER in command and f"--parent {owner} " in command + " ":
            _end(pid)
            ended.append(pid)
        path.unlink(missing_ok=True)
    return ended


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnedServer:
    """Prefect's API in a child process that starts and ends with this ``pbrf``."""

    owned = True

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout or float(os.environ.get(STARTUP_TIMEOUT_ENV) or 120)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._log: Path | None = None
        self._state: Path | None = None
        self._previous: str | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _spawn(self) -> None:
        self.port = _free_port()
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        env.pop("PREFECT_API_URL", None)
        root = str(Path(__file__).resolve().parent.parent)  # so `-m flows.server_process` imports
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        assert self._log is not None
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    MARKER,
                    "--parent",
                    str(os.getpid()),
                    "--port",
                    str(self.port),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        state = _state_dir()
        state.mkdir(parents=True, exist_ok=True)
        self._state = state / f"{self.proc.pid}.json"
        self._state.write_text(
            json.dumps({"pid": self.proc.pid, "owner": os.getpid(), "port": self.port}),
            encoding="utf-8",
        )

    def check(self) -> None:
        """Nothing to check before starting."""

    def start(self) -> str:
        """Start the server and wait until it answers; :class:`ServerError` if it cannot."""
        sweep_orphans()
        fd, name = tempfile.mkstemp(prefix="pbrf-prefect-server-", suffix=".log")
        os.close(fd)
        self._log = Path(name)
        self._spawn()
        deadline = time.monotonic() + self.timeout
        retries = 3
        while True:
            assert self.proc is not None
            code = self.proc.poll()
            if code == 3 and retries:  # uvicorn: the port was taken meanwhile
                retries -= 1
                self._forget()
                self._spawn()
                continue
            if code is not None:
                raise ServerError(
                    f"the temporary Prefect server exited with status {code} while starting: "
                    f"{self._last_log_line()} (log: {self._log})"
                )
            if reachable(self.api_url, timeout=1.0) is None:
                return self.api_url
            if time.monotonic() > deadline:
                self.stop(keep_log=True)
                raise ServerError(
                    f"the temporary Prefect server did not answer within {self.timeout:.0f} s "
                    f"(log: {self._log}); raise {STARTUP_TIMEOUT_ENV} or start one with "
                    "`prefect server start` and set PREFECT_API_URL"
                )
            time.sleep(0.1)

    def _last_log_line(self) -> str:
        with contextlib.suppress(OSError):
            lines = [x for x in self._log.read_text(errors="replace").splitlines() if x.strip()]
            if lines:
                return lines[-1].strip()
        return "no output"

    def problem(self) -> str | None:
        """Why the server is lost (it exited), else ``None``."""
        if self.proc is not None and self.proc.poll() is not None:
            return (
                f"the temporary Prefect server (pid {self.proc.pid}) exited with status "
                f"{self.proc.returncode} during the run"
            )
        return None

    def _forget(self) -> None:
        if self._state is not None:
            self._state.unlink(missing_ok=True)
            self._state = None

    def stop(self, *, keep_log: bool = False) -> None:
        """End the server (SIGTERM, SIGKILL after 3 s) and remove its files."""
        if self.proc is not None:
            proc = self.proc
            if proc.poll() is None:
                _end(proc.pid, gone=lambda: proc.poll() is not None)
        self._forget()
        if self._log is not None and not keep_log:
            self._log.unlink(missing_ok=True)

    def __enter__(self) -> OwnedServer:
        """Start the server and point this process's Prefect at it (undone on exit)."""
        self._previous = os.environ.get("PREFECT_API_URL")
        try:
            use_api_url(self.start())
        except BaseException as exc:
            self.stop(keep_log=isinstance(exc, ServerError))
            raise
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop()
        if self._previous is None:
            os.environ.pop("PREFECT_API_URL", None)
            if "prefect.context" in sys.modules:
                import prefect.context

                prefect.context.refresh_global_settings_context()
        else:
            use_api_url(self._previous)


def api_server() -> ConfiguredServer | OwnedServer:
    """The configured server if Prefect has an API URL, else a temporary one to own."""
    url = configured_api_url()
    return ConfiguredServer(url) if url else OwnedServer()
