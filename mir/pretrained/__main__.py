"""Command line: ``python -m mir.pretrained list`` or ``... convert <h5 folder> [--out DIR]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mir.errors import MirError
from mir.pretrained import MODELS, PREFIX, ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mir.pretrained")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the shipped models, their tasks, sources and licences")
    conv = sub.add_parser("convert", help="convert the deep-salience Keras .h5 files (h5py)")
    conv.add_argument("src", type=Path, help="folder with multif0.h5, melody1.h5, ...")
    conv.add_argument("--out", type=Path, default=ROOT, help="package folder to write into")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "list":
            for m in MODELS.values():
                state = "" if m.path.is_file() else "  [file missing]"
                print(f"{PREFIX}{m.name}{state}")
                print(f"    task {m.head} ({m.task} head): {m.trained_on}")
                print(f"    source: {m.source}")
                print(f"    licence: {m.licence}")
        else:
            from mir.pretrained.convert import convert

            for path in convert(args.src, args.out):
                print(path)
    except MirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
