"""Render the embedded dataset ahead of time.

    python -m mir.data.render --n 20 --out DIR [--seed 0] [--max-duration 30]

Prints a line per piece and a summary (audio rendered, wall time, speed, splits).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from mir.data.base import SPLITS
from mir.data.embedded import EmbeddedDataset
from mir.errors import MirError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mir.data.render", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--n", type=int, default=40, help="number of pieces (default 40)")
    parser.add_argument("--out", default=None, help="cache root (default $MIR_CACHE/embedded)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-duration", type=float, default=30.0, help="crop length (s)")
    parser.add_argument("--sr", type=int, default=22050, help="sample rate (Hz)")
    parser.add_argument("--hop", type=int, default=256, help="annotation hop (samples)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        ds = EmbeddedDataset(
            sr=args.sr,
            root=args.out,
            n_pieces=args.n,
            max_duration=args.max_duration,
            seed=args.seed,
            hop=args.hop,
        )
        t0 = time.perf_counter()
        reports = ds.prepare()
        wall = time.perf_counter() - t0
    except MirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rendered = [r for r in reports if r.rendered]
    audio = sum(r.duration for r in rendered)
    render_wall = sum(r.wall for r in rendered)
    speed = f", {audio / render_wall:.1f}x real time" if render_wall > 0 else ""
    print(
        f"{len(reports)} pieces in {ds.cache_dir}: {len(rendered)} rendered now "
        f"({audio:.0f} s of audio in {wall:.1f} s{speed}), {len(reports) - len(rendered)} cached"
    )
    print("splits: " + ", ".join(f"{s} {len(ds.track_ids(s))}" for s in SPLITS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
