"""Failures by kind: what the user gets for each, and which setting to change."""

from __future__ import annotations

import errno
import sys
import traceback

EXIT_RUNTIME, EXIT_CONFIG = 1, 2
UNIONS = frozenset({"model", "optimizer", "solver"})  # fields holding a discriminated union


CLIP = 80  # characters of a user's value echoed in an error line


def clip(text: str, limit: int = CLIP) -> str:
    """``text`` cut to its first ``limit`` characters plus ``… (N chars)`` when longer."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def show(value: object, limit: int = CLIP) -> str:
    """``repr(value)``, a long string shown as its first ``limit`` characters and its length."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value)} chars)"
    return clip(repr(value), limit)


def _clip_words(msg: str, limit: int = 4 * CLIP) -> str:
    """A backstop for a huge value echoed by any message: every over-long word is clipped."""
    return " ".join(clip(word, limit) for word in msg.split())


class ConfigError(ValueError):
    """Invalid input the user can fix by changing a command-line argument or config value."""


class RuntimeFailure(RuntimeError):
    """A known failure at run time (I/O, environment), with a message naming the fix."""


def _validation_message(exc) -> str:
    parts = []
    for e in exc.errors():
        raw = [str(x) for x in e.get("loc", ()) if not str(x).startswith("function-")]
        # drop the tag a discriminated union adds after its field: model.mlp.width → model.width
        keep = [x for i, x in enumerate(raw) if i == 0 or raw[i - 1] not in UNIONS]
        loc = ".".join(keep)
        msg = str(e.get("msg", "")).removeprefix("Value error, ")
        got = (
            f" (got {show(e['input'])})"
            if e.get("type") not in ("extra_forbidden", "value_error") and "input" in e
            else ""
        )
        parts.append(f"{loc + ': ' if loc else ''}{msg}{got}")
    return "invalid configuration — " + "; ".join(parts)


def _hint(exc: Exception) -> str:
    """The config keys that address a known numerical failure."""
    from pbrf.solvers import (
        HessianDivergenceError,
        LissaDivergenceError,
        LissaGridDivergenceError,
        NonPositiveScaleError,
    )
    from pbrf.trainer import NonFiniteLossError

    if isinstance(exc, HessianDivergenceError):
        need = (
            f" above {-exc.min_eigenvalue:.3g}"
            if exc.min_eigenvalue is not None and exc.min_eigenvalue + exc.damping < 0
            else ""
        )
        return (
            f" Raise damping{need}, or use influence.curvature=gnh; influence.solver.scale and "
            "influence.solver.scale_factor only set σ and cannot remove a negative eigenvalue."
        )
    if isinstance(exc, NonPositiveScaleError):
        return (
            f" Set damping above {-exc.top_eigenvalue:.3g}, or influence.solver.scale to a fixed "
            "σ > 0 (then damping must still exceed the most negative eigenvalue), or use "
            "influence.curvature=gnh."
        )
    if isinstance(exc, LissaGridDivergenceError):
        return (
            " Add larger values to influence.solver.scale_grid, raise damping, or raise "
            "influence.solver.batch_size."
        )
    if isinstance(exc, LissaDivergenceError):
        return (
            " Set influence.solver.scale higher, or raise influence.solver.scale_factor "
            "or influence.solver.batch_size."
        )
    if isinstance(exc, NonFiniteLossError):
        if "base" in exc.label:
            return " Lower train.optimizer.lr."
        return " Lower train.optimizer.lr or retrain.pbrf.lr_factor (PBRF variants)."
    return ""


_OS_FIXES = {
    errno.ENOSPC: "free space on that file system, or write elsewhere (--out)",
    errno.EDQUOT: "free space within your quota, or write elsewhere (--out)",
    errno.EFBIG: "the file is larger than this system allows; write elsewhere (--out)",
    errno.EROFS: "the file system is read-only; write elsewhere (--out)",
    errno.EACCES: "make it writable, or write elsewhere (--out)",
    errno.EPERM: "make it writable, or write elsewhere (--out)",
    errno.ENOTDIR: "a file is in the way of a directory; move it, or write elsewhere (--out)",
    errno.EEXIST: "a file is in the way of a directory; move it, or write elsewhere (--out)",
    errno.EISDIR: "a directory is in the way of a file; move it, or write elsewhere (--out)",
}


def _os_message(exc: OSError) -> str | None:
    """One line for a file-system failure the user can fix, naming the path."""
    if exc.errno not in _OS_FIXES or not exc.filename:
        return None
    return f"cannot write {exc.filename}: {exc.strerror or exc}; {_OS_FIXES[exc.errno]}"


def _environment_errors() -> tuple[type[BaseException], ...]:
    """Known failures of the environment or the data: exit 1 with their own one-line message."""
    from flows.server import ServerError
    from flows.threads import ThreadsError
    from pbrf.data.errors import MalformedDataError
    from tasks.engine.datafetch import FetchError
    from tasks.engine.lock import RunLockedError

    return (ServerError, ThreadsError, MalformedDataError, FetchError, RunLockedError)


def report_error(exc: Exception, *, debug: bool = False) -> int:
    """Print one line for a known failure and return its exit status; re-raise bugs."""
    from pydantic import ValidationError

    from pbrf.solvers import LissaDivergenceError, NonPositiveScaleError
    from pbrf.trainer import NonFiniteLossError
    from tasks.engine.artifacts import ArtifactError

    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, ValidationError):
        code, msg = EXIT_CONFIG, _validation_message(exc)
    elif isinstance(exc, ConfigError):
        code, msg = EXIT_CONFIG, str(exc)
    elif isinstance(exc, NonFiniteLossError | LissaDivergenceError | NonPositiveScaleError):
        code, msg = EXIT_RUNTIME, str(exc) + _hint(exc)
    elif isinstance(
        exc, (ArtifactError, RuntimeFailure, FileNotFoundError, *_environment_errors())
    ):
        code, msg = EXIT_RUNTIME, str(exc)
    elif isinstance(exc, OSError) and (os_msg := _os_message(exc)) is not None:
        code, msg = EXIT_RUNTIME, os_msg
    else:
        if not debug:
            traceback.print_exception(exc, file=sys.stderr)
        return EXIT_RUNTIME
    print(f"pbrf: error: {_clip_words(msg)}", file=sys.stderr)
    return code
