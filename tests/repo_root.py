"""The repository root, for tests that read or copy the checkout's own files."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
