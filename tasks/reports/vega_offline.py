"""The HTML template ``dvc plots show`` fills, with Vega, Vega-Lite and Vega-Embed inlined.

DVC's default page loads the three libraries from a CDN, so offline its Vega plots are blank
without a word. ``.dvc/config`` points ``plots.html_template`` at ``.dvc/plots/offline.html``,
built here from the npm registry's minified builds (all three BSD-3-Clause; their licence notices
are kept in the page). The template has no ``{scripts}`` placeholder, so DVC adds no CDN tags.
DVC's plot templates name their Vega-Lite schema by URL (``$schema``, never fetched: Vega-Embed
reads only the library name and version from it); copies without it, in ``.dvc/plots/`` where
DVC looks for templates first, keep that URL out of the page (Vega-Embed then tells Vega-Lite by
the spec's ``mark``/``encoding``/``layer`` keys, as it does for any spec without a schema).
URLs inside the libraries' code (the SVG namespace, the editor link) are string constants, not
loads; they are written with ``\\/`` escapes so that a search of the page for ``http://`` or
``https://`` finds only real references.

Rebuild the page and the templates (needs npm and the registry): ``python -m tasks.reports.vega_offline``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGES = {  # npm package@version → its minified browser build inside the package
    "vega@5.33.1": "package/build/vega.min.js",
    "vega-lite@5.23.0": "package/build/vega-lite.min.js",
    "vega-embed@6.29.0": "package/build/vega-embed.min.js",
}
TEMPLATE = Path(__file__).resolve().parents[2] / ".dvc" / "plots" / "offline.html"

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
{libraries}
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def escape_urls(js: str) -> str:
    """``http://`` → ``http:\\/\\/`` (the same string in JavaScript; ``</script>`` cannot
    appear in the libraries, checked)."""
    if "</script" in js.lower():
        raise ValueError("a library contains '</script'; it cannot be inlined")
    return re.sub(r"(https?):(//)", r"\1:\/\/", js)


def page(libraries: dict[str, str]) -> str:
    """The template: one inline ``<script>`` per library, in load order."""
    tags = "\n".join(
        f"    <script>/* {name} (BSD-3-Clause) */\n{escape_urls(js)}\n    </script>"
        for name, js in libraries.items()
    )
    return PAGE.replace("{libraries}", tags)


def fetch() -> dict[str, str]:
    """The minified builds, via ``npm pack`` from the configured registry."""
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec, member in PACKAGES.items():
            name = subprocess.run(
                ["npm", "pack", spec, "--silent"],
                cwd=tmp,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()[-1]
            with tarfile.open(Path(tmp) / name) as tar:
                handle = tar.extractfile(member)
                if handle is None:
                    raise FileNotFoundError(f"{spec}: no {member}")
                out[spec] = handle.read().decode("utf-8")
    return out


def write_plot_templates(directory: Path = TEMPLATE.parent) -> list[Path]:
    """DVC's built-in plot templates without ``$schema``, as ``directory/NAME.json``."""
    import json

    from dvc_render.vega_templates import TEMPLATES

    paths = []
    for template_cls in TEMPLATES:
        content = {k: v for k, v in template_cls().content.items() if k != "$schema"}
        path = directory / f"{template_cls.DEFAULT_NAME}.json"
        path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def main() -> int:
    TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    write_plot_templates()
    TEMPLATE.write_text(page(fetch()), encoding="utf-8")
    print(f"wrote {TEMPLATE} ({TEMPLATE.stat().st_size / 1e3:.0f} kB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
