"""Where the Hydra configs live.

An installed wheel carries them inside the package (``mir/conf``); a checkout keeps them in
``conf/`` beside the package, which is also where an editable install reads them.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent

CONF: Path = (
    _PACKAGE / "conf" if (_PACKAGE / "conf" / "config.yaml").is_file() else _PACKAGE.parent / "conf"
)
"""The project's Hydra config folder (``conf/`` in a checkout, ``mir/conf`` when installed)."""
