"""Parameter files in the form DVC writes them back.

``dvc exp run -S key=value`` loads a params file with ruamel.yaml's round-trip loader, sets the
key and dumps the whole file again with DVC's own dumper, which writes ``null`` as an empty value
(``fraction:``). A file written by PyYAML (``fraction: null``) therefore came back with every
null changed. Writing with DVC's dumper in the first place makes that round trip change only the
line that was set, so ``git diff`` after an experiment shows just the experiment.
"""

from __future__ import annotations

from typing import Any


def dump_params(data: dict[str, Any], header: str = "") -> str:
    """``header`` (comment lines) followed by ``data`` as DVC's YAML dumper writes it."""
    from dvc.utils.serialize import dumps_yaml

    return header + dumps_yaml(data)
