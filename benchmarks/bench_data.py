"""Data loading at two corpus sizes ten times apart: index build, start-up, throughput and
memory of the training data path.

Generates, in a temporary folder:
    * a MUSDB18-HQ layout (``train/<name>/{mixture,drums,bass,other,vocals}.wav``, 44.1 kHz
      stereo), each track the real 7-s sample of the fixtures (``$MIR_FIXTURES`` or
      ``../shared/fixtures``: ``musdb18/train_wav``) tiled to 3 minutes;
    * a MagnaTagATune layout (``annotations_final.csv``, ``mp3/<d>/<clip>.mp3``) of 30-s mp3
      clips cut from the same sample.
Every track of a corpus is a hard link of one set of files, so the corpus costs no disk and
is read from the page cache: the figures measure our code, not the disk.

For each corpus and size it runs fresh processes (`--child`) and reports: index build time
with an empty cache and with the cached index; time from process start to the first
training batch; excerpts per second with 0 and 2 workers; peak RSS of the process (and of
its workers). With ``--before REPO`` it also runs the in-memory path of another checkout
(e.g. a worktree of the code before the index) on the small size, as the reference.

    python benchmarks/bench_data.py --hours 0.5 --before ../main-before
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRACK_S = 180.0
CLIP_S = 30.0


def _fixture_sample() -> Path:
    env = os.environ.get("MIR_FIXTURES")
    root = Path(env) if env else REPO.parent / "shared" / "fixtures"
    folder = root / "musdb18" / "train_wav" / "Music Delta - 80s Rock"
    if not folder.is_dir():
        sys.exit(f"bench_data: the MUSDB18 sample is not at {folder} (set MIR_FIXTURES)")
    return folder


def make_musdb(out: Path, hours: float) -> int:
    """MUSDB18-HQ layout of `hours` of 3-min tracks; returns the track count."""
    import numpy as np
    import soundfile as sf

    sample = _fixture_sample()
    proto = out / "_proto"
    proto.mkdir(parents=True, exist_ok=True)
    for stem in ("mixture", "drums", "bass", "other", "vocals"):
        x, sr = sf.read(sample / f"{stem}.wav", dtype="float32", always_2d=True)
        n = int(TRACK_S * sr)
        sf.write(proto / f"{stem}.wav", np.resize(x, (n, x.shape[1]))[:n], sr, "PCM_16")
    n_tracks = max(1, round(hours * 3600 / TRACK_S))
    for i in range(n_tracks):
        d = out / "train" / f"Artist {i:04d} - Song"
        d.mkdir(parents=True, exist_ok=True)
        for f in proto.iterdir():
            if not (d / f.name).exists():
                os.link(f, d / f.name)
    return n_tracks


def make_mtat(out: Path, hours: float) -> int:
    """MagnaTagATune layout of `hours` of 30-s mp3 clips; returns the clip count."""
    import numpy as np
    import soundfile as sf

    x, sr = sf.read(_fixture_sample() / "mixture.wav", dtype="float32")
    mono = x.mean(axis=1)
    clip = np.resize(mono, int(CLIP_S * sr))
    proto = out / "_proto.mp3"
    out.mkdir(parents=True, exist_ok=True)
    if not proto.exists():
        sf.write(proto, clip, sr, format="MP3")
    n = max(1, round(hours * 3600 / CLIP_S))
    tags = ["rock", "guitar", "drums"]
    rows = ["\t".join(["clip_id", *tags, "mp3_path"])]
    for i in range(n):
        folder = "0123456789abcdef"[i % 12]  # train folders only
        rel = f"{folder}/clip-{i:06d}.mp3"
        path = out / "mp3" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.link(proto, path)
        rows.append("\t".join([str(i), "1", str(i % 2), "0", rel]))
    (out / "annotations_final.csv").write_text("\n".join(rows) + "\n")
    return n


# -- the measured process -----------------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    t0 = float(args.t0)
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf, open_dict

    t_import = time.time() - t0
    conf = Path(args.repo) / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("config", overrides=json.loads(args.overrides))
    with open_dict(cfg):
        cfg.output_dir = str(Path(args.tmp) / "out")
    OmegaConf.resolve(cfg)
    module = instantiate(cfg.model)
    t_model = time.time() - t0 - t_import
    dm = instantiate(cfg.data)
    dm.bind(module.tasks)
    t1 = time.time()
    dm.setup("fit")
    t_setup = time.time() - t1
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)
    t_first = time.time() - t0
    t_data_first = time.time() - t1
    n, t2 = 0, time.time()
    for _ in range(args.batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        n += batch["audio"].shape[0]
    rate = n / (time.time() - t2)
    worker_hwm = 0.0
    for w in getattr(it, "_workers", []):  # peak RSS of each worker process
        try:
            status = Path(f"/proc/{w.pid}/status").read_text()
            kb = next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM"))
            worker_hwm = max(worker_hwm, float(kb) / 1024)
        except (OSError, StopIteration):
            pass
    del it
    out = {
        "import_s": round(t_import, 2),
        "model_build_s": round(t_model, 2),
        "setup_s": round(t_setup, 2),
        "first_batch_s": round(t_first, 2),
        "data_first_batch_s": round(t_data_first, 2),
        "excerpts_per_s": round(rate, 1),
        "excerpt_s": round(float(batch["audio"].shape[-1]) / module.model.frontend.sr, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_worker_mb": round(
            max(worker_hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024), 1
        ),
    }
    print("RESULT " + json.dumps(out), flush=True)


def run_child(repo: Path, overrides: list[str], cache: Path, tmp: Path, batches: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(repo), MIR_CACHE=str(cache))
    cmd = [
        sys.executable, __file__, "--child", "--repo", str(repo), "--tmp", str(tmp),
        "--overrides", json.dumps(overrides), "--batches", str(batches), "--t0", str(time.time()),
    ]  # fmt: skip
    t = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.time() - t
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"bench_data: child failed ({' | '.join(tail)})")
    return dict(json.loads(lines[-1][7:]), wall_s=round(wall, 2))


def index_times(repo: Path, overrides: list[str], cache: Path, tmp: Path) -> dict:
    """Index build with an empty cache, then with the cached index (fresh processes)."""
    code = (
        "import json,sys,time\n"
        "from hydra import compose, initialize_config_dir\n"
        "from hydra.utils import instantiate\n"
        "from omegaconf import OmegaConf, open_dict\n"
        f"with initialize_config_dir(config_dir={str(repo / 'conf')!r}, version_base='1.3'):\n"
        f"    cfg = compose('config', overrides={overrides!r})\n"
        f"with open_dict(cfg): cfg.output_dir = {str(tmp / 'out')!r}\n"
        "OmegaConf.resolve(cfg)\n"
        "m = instantiate(cfg.model); dm = instantiate(cfg.data); dm.bind(m.tasks)\n"
        "t = time.time(); idx = dm.index('train'); print('RESULT', time.time() - t, len(idx))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(repo), MIR_CACHE=str(cache))
    out = {}
    for key in ("index_first_s", "index_cached_s"):
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT")]
        if p.returncode != 0 or not lines:
            raise SystemExit(f"bench_data: index failed: {p.stderr.strip().splitlines()[-3:]}")
        out[key] = round(float(lines[-1].split()[1]), 2)
        out["tracks"] = int(lines[-1].split()[2])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--repo", default=str(REPO))
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--overrides", default="[]")
    ap.add_argument("--t0", default="0")
    ap.add_argument("--batches", type=int, default=40, help="batches timed per run")
    ap.add_argument("--hours", type=float, default=0.5, help="small size; the large is 10x")
    ap.add_argument("--corpora", default="musdb,mtat", help="musdb, musdb_decoded, mtat")
    ap.add_argument("--before", default=None, help="another checkout, run in memory (small)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_data.json"))
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    results: dict = {"hours": [args.hours, 10 * args.hours], "cpus": os.cpu_count(), "runs": []}
    base = ["frontend=hcqt", "model=default", "logger=[csv]", "data.crop_seconds=3.0",
            "data.batch_size=8"]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench_data-") as tmpd:
        tmp = Path(tmpd)
        for corpus in args.corpora.split(","):
            for hours in (args.hours, 10 * args.hours):
                root = tmp / f"{corpus}-{hours:g}h"
                if corpus.startswith("musdb"):
                    n = make_musdb(root, hours)
                    over = [*base, "task=separation", "data=musdb18",
                            f"data.datasets.musdb18.root={root}",
                            "data.datasets.musdb18.validation_tracks=[]"]  # fmt: skip
                    if corpus == "musdb_decoded":  # data.decode=true: mono cache at 22 kHz
                        over.append("data.decode=true")
                else:
                    n = make_mtat(root, hours)
                    over = [*base, "task=tagging", "data=magnatagatune",
                            f"data.datasets.magnatagatune.root={root}",
                            "data.datasets.magnatagatune.tags=[rock,guitar,drums]"]  # fmt: skip
                cache = tmp / f"cache-{corpus}-{hours:g}"
                row: dict = {"corpus": corpus, "hours": hours, "tracks": n, "code": "after"}
                print(f"{corpus} {hours:g} h ({n} tracks): index...", flush=True)
                row.update(index_times(REPO, over, cache, tmp))
                for w in (0, 2):
                    print(f"  {w} workers...", flush=True)
                    r = run_child(REPO, [*over, f"data.num_workers={w}"], cache, tmp, args.batches)
                    row[f"workers{w}"] = r
                results["runs"].append(row)
                print(json.dumps(row), flush=True)
                if args.before and hours == args.hours and corpus != "musdb_decoded":
                    before = Path(args.before).resolve()
                    brow: dict = {"corpus": corpus, "hours": hours, "tracks": n, "code": "before"}
                    for w in (0, 2):
                        print(f"  before, {w} workers...", flush=True)
                        brow[f"workers{w}"] = run_child(
                            before, [*over, f"data.num_workers={w}"], cache, tmp, args.batches
                        )
                    results["runs"].append(brow)
                    print(json.dumps(brow), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(results, indent=1))
    os.replace(tmp_out, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
