"""Check the port of the deep-salience models (Bittner et al. 2017) against the authors' Keras
model, and our end-to-end pipeline against theirs, on the real fixtures.

Three steps; data passes between the two Python environments through .npz files in ``--io``:

    # 1. project venv: the fixture clips (mir's loaders, 22050 Hz mono), our HCQT of each
    #    (one example, so the log scaling's ref is the whole clip), and our end-to-end
    #    salience for each released model: mir's chunked inference (default 30 s chunks, each
    #    log-scaled against its own max) and one chunk (the authors' whole-track ref)
    python benchmarks/check_deepsalience_port.py prepare --io outputs/ds_port
    # 2. a separate venv with TensorFlow 2.15 and its bundled Keras 2 (never a project
    #    dependency):
    #      python3.11 -m venv ../venv-tf
    #      ../venv-tf/bin/pip install "tensorflow-cpu==2.15.*" h5py librosa
    #    builds the published Keras model, loads the authors' .h5 files, and computes
    #    (a) its salience on OUR HCQT, (b) the authors' pipeline: librosa HCQT of the same
    #    samples, whole-clip ref=max log scaling, 2000-frame slices
    ../venv-tf/bin/python benchmarks/check_deepsalience_port.py keras --io outputs/ds_port \
        --weights ../shared/weights/deepsalience
    # 3. project venv: port difference (same HCQT in), end-to-end difference, and mir_eval
    #    scores of both pipelines; --golden rewrites tests/data/deepsalience_keras.npz
    python benchmarks/check_deepsalience_port.py compare --io outputs/ds_port --golden

Fixtures are read from ``$MIR_FIXTURES`` or ``../shared/fixtures``. Step 2 imports neither torch
nor mir; it needs only numpy, h5py (through Keras), TensorFlow and librosa.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "deepsalience_keras.npz"
GOLDEN_FRAMES = (400, 448)  # a 48-frame stretch of the first clip for the stored golden
GOLDEN_MODELS = ("multif0", "melody2", "vocal")
# (clip, fixture loader, track, model, task, head): the released model each fixture tests
CASES = (
    ("bach10_01", "bach10", "01-AchGottundHerr", "multif0", "multif0", "multif0"),
    ("bach10_01", "bach10", "01-AchGottundHerr", "bass", "bass", "bass"),
    ("medleydb_reggae", "medleydb", "MusicDelta_Reggae", "melody2", "melody", "melody"),
    ("medleydb_reggae", "medleydb", "MusicDelta_Reggae", "vocal", "vocal", "vocal"),
    ("vocadito_1", "vocadito", "vocadito_1", "vocal", "vocal", "vocal"),
)
SR, HOP, FMIN, BPO, N_OCT = 22050, 256, 32.7, 60, 6
HARMONICS = (0.5, 1, 2, 3, 4, 5)


# -- step 1 and 3 (project venv) -------------------------------------------------------------
def _fixtures() -> Path:
    env = os.environ.get("MIR_FIXTURES")
    root = Path(env) if env else REPO.parent / "shared" / "fixtures"
    if not root.is_dir():
        sys.exit(f"fixtures not found at {root} (set MIR_FIXTURES)")
    return root


def _load_track(loader: str, track_id: str):
    from mir.data.bach10 import Bach10
    from mir.data.medleydb import MedleyDB
    from mir.data.vocadito import Vocadito

    cls = {"bach10": Bach10, "medleydb": MedleyDB, "vocadito": Vocadito}[loader]
    return cls(_fixtures() / loader, sr=SR).load(track_id)


def prepare(io: Path) -> None:
    import torch

    import mir.pretrained as pretrained

    io.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    module, _ = pretrained.load("deepsalience/multif0")
    fe = module.model.frontend
    for clip, loader, track_id, model, _, head in CASES:
        track = _load_track(loader, track_id)
        if f"audio_{clip}" not in arrays:
            arrays[f"audio_{clip}"] = track.audio.astype(np.float32)
            with torch.no_grad():
                arrays[f"hcqt_{clip}"] = fe(torch.from_numpy(track.audio)[None])[0].numpy()
        m, _ = pretrained.load(f"deepsalience/{model}")
        arrays[f"ours_{clip}_{model}"] = _sigmoid(m.infer(track)[head])
        # the authors' log-scaling reference, the whole track's max: one chunk
        m.chunk_seconds = track.duration + 1.0
        arrays[f"whole_{clip}_{model}"] = _sigmoid(m.infer(track)[head])
    first = CASES[0][0]
    golden = arrays[f"hcqt_{first}"][..., slice(*GOLDEN_FRAMES)]
    arrays["golden_hcqt"] = golden.astype(np.float16).astype(np.float32)  # stored as float16
    np.savez(io / "inputs.npz", **arrays)
    print(f"wrote {io / 'inputs.npz'}")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def _mir_task(model: str):
    import mir.pretrained as pretrained

    m, _ = pretrained.load(f"deepsalience/{model}")
    (task,) = m.tasks.values()
    return task


def _logits(sal: np.ndarray) -> np.ndarray:
    s = np.clip(sal.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(s / (1 - s)).astype(np.float32)


def compare(io: Path, write_golden: bool) -> None:
    inp = np.load(io / "inputs.npz")
    ker = np.load(io / "keras.npz")
    print("Port check (same HCQT into both networks): max |salience difference|")
    for model in sorted({c[3] for c in CASES}):
        for clip in sorted({c[0] for c in CASES}):
            key = f"port_{clip}_{model}"
            if key in ker.files:
                ours = _port_ours(inp[f"hcqt_{clip}"], model)
                print(f"  {model:8s} {clip:16s} {np.abs(ours - ker[key]).max():.2e}")
    rows = []
    print("\nEnd to end: ours (mir HCQT, chunked inference) vs the authors' pipeline")
    for clip, loader, track_id, model, task_name, _ in CASES:
        ours, theirs = inp[f"ours_{clip}_{model}"], ker[f"authors_{clip}_{model}"]
        n = min(ours.shape[1], theirs.shape[1])
        d = np.abs(ours[:, :n] - theirs[:, :n])
        track = _load_track(loader, track_id)
        task = _mir_task(model)
        s_ours = task.evaluate_track(track, task.decode(_logits(ours), track))
        s_theirs = task.evaluate_track(track, task.decode(_logits(theirs), track))
        whole = inp[f"whole_{clip}_{model}"]
        s_whole = task.evaluate_track(track, task.decode(_logits(whole), track))
        d_whole = np.abs(whole[:, :n] - theirs[:, :n])
        # the authors' 2000-frame slices see no context across a boundary
        away = np.ones(n, dtype=bool)
        for b in range(2000, n, 2000):
            away[max(0, b - 8) : b + 8] = False
        keys = (
            ["Accuracy", "Precision", "Recall"]
            if task_name == "multif0"
            else ["Overall Accuracy", "Raw Pitch Accuracy", "Raw Chroma Accuracy", "Voicing Recall"]
        )
        rows.append(
            {
                "clip": clip,
                "model": model,
                "frames": [int(ours.shape[1]), int(theirs.shape[1])],
                "max_abs_diff": float(d.max()),
                "mean_abs_diff": float(d.mean()),
                "p99_abs_diff": float(np.quantile(d, 0.99)),
                "max_abs_diff_away_from_slice_edges": float(d[:, away].max()),
                "whole_track_max_abs_diff": float(d_whole.max()),
                "whole_track_mean_abs_diff": float(d_whole.mean()),
                "ours": {k: s_ours[k] for k in keys},
                "ours_whole_track": {k: s_whole[k] for k in keys},
                "authors": {k: s_theirs[k] for k in keys},
            }
        )
        print(
            f"  {model:8s} {clip:16s} frames {ours.shape[1]}/{theirs.shape[1]}  "
            f"max {d.max():.3f} (away from their slice edges {d[:, away].max():.3f}) "
            f"mean {d.mean():.4f} p99 {np.quantile(d, 0.99):.3f}; "
            f"one chunk: max {d_whole.max():.3f} mean {d_whole.mean():.4f}"
        )
        for k in keys:
            print(
                f"      {k:22s} ours {s_ours[k]:.4f}  one chunk {s_whole[k]:.4f}  "
                f"authors {s_theirs[k]:.4f}"
            )
    (io / "compare.json").write_text(json.dumps(rows, indent=1))
    if write_golden:
        out = {"hcqt": inp["golden_hcqt"].astype(np.float16)}
        for model in GOLDEN_MODELS:
            out[f"salience_{model}"] = ker[f"golden_{model}"].astype(np.float32)
            ours = _port_ours(inp["golden_hcqt"], model)
            print(f"golden {model}: max |diff| {np.abs(ours - out[f'salience_{model}']).max():.2e}")
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        tmp = GOLDEN.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **out)
        os.replace(tmp, GOLDEN)
        print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes)")


def _port_ours(hcqt: np.ndarray, model: str) -> np.ndarray:
    """Our network's salience (F, T) on a given (H, F, T) HCQT."""
    import torch

    import mir.pretrained as pretrained
    from mir.models.features import Features

    m, _ = pretrained.load(f"deepsalience/{model}")
    x = torch.from_numpy(hcqt.astype(np.float32))[None]
    with torch.no_grad():
        (head,) = m.model.heads.values()
        feats = Features(audio=torch.zeros(1, 1), hcqt=x, trunk=m.model.trunk(x))
        return torch.sigmoid(head(feats))[0].numpy()


# -- step 2 (TensorFlow venv) ----------------------------------------------------------------
def _keras_model():
    """The published network (Bittner et al. 2017), written from the paper's description and
    the layer names of the released files."""
    from tensorflow import keras
    from tensorflow.keras import layers

    x = inp = keras.Input(shape=(None, None, len(HARMONICS)))
    x = layers.BatchNormalization()(x)
    for name, ch, k in (
        ("bendy1", 128, (5, 5)),
        ("bendy2", 64, (5, 5)),
        ("smoothy1", 64, (3, 3)),
        ("smoothy2", 64, (3, 3)),
        ("distribute", 8, (70, 3)),
    ):
        x = layers.Conv2D(ch, k, padding="same", activation="relu", name=name)(x)
        x = layers.BatchNormalization()(x)
    x = layers.Conv2D(1, (1, 1), padding="same", activation="sigmoid", name="squishy")(x)
    return keras.Model(inp, x[..., 0])


def _librosa_hcqt(audio: np.ndarray) -> np.ndarray:
    """The authors' HCQT: one librosa CQT per harmonic, trimmed to the shortest, log-scaled
    with ref = the max of the whole array, (1/80) dB + 1."""
    import librosa

    cqts = [
        np.abs(
            librosa.cqt(
                audio, sr=SR, hop_length=HOP, fmin=FMIN * h, n_bins=BPO * N_OCT, bins_per_octave=BPO
            )
        )
        for h in HARMONICS
    ]
    t = min(c.shape[1] for c in cqts)
    mag = np.array([c[:, :t] for c in cqts])
    return (1.0 / 80.0) * librosa.amplitude_to_db(mag, ref=np.max) + 1.0


def _predict_slices(model, hcqt: np.ndarray, n_slices: int = 2000) -> np.ndarray:
    x = hcqt.transpose(1, 2, 0)[None]  # (1, F, T, H)
    outs = [
        model.predict(x[:, :, t : t + n_slices, :], verbose=0)[0]
        for t in range(0, x.shape[2], n_slices)
    ]
    return np.hstack(outs)


def keras_step(io: Path, weights: Path) -> None:
    inp = np.load(io / "inputs.npz")
    model = _keras_model()
    out: dict[str, np.ndarray] = {}
    authors_hcqt: dict[str, np.ndarray] = {}
    for name in sorted({c[3] for c in CASES} | set(GOLDEN_MODELS)):
        model.load_weights(str(weights / f"{name}.h5"))
        for clip, *_, m, _, _ in CASES:
            if m != name:
                continue
            if clip not in authors_hcqt:
                authors_hcqt[clip] = _librosa_hcqt(inp[f"audio_{clip}"])
            out[f"port_{clip}_{name}"] = _predict_slices(model, inp[f"hcqt_{clip}"], 10**9)
            out[f"authors_{clip}_{name}"] = _predict_slices(model, authors_hcqt[clip])
        if name in GOLDEN_MODELS:
            out[f"golden_{name}"] = _predict_slices(model, inp["golden_hcqt"], 10**9)
        print(f"{name}: done")
    for clip, h in authors_hcqt.items():
        out[f"authors_hcqt_{clip}"] = h.astype(np.float32)
    np.savez(io / "keras.npz", **out)
    print(f"wrote {io / 'keras.npz'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("step", choices=["prepare", "keras", "compare"])
    p.add_argument("--io", type=Path, required=True, help="folder for the exchanged .npz files")
    p.add_argument("--weights", type=Path, help="folder of the authors' .h5 files (keras step)")
    p.add_argument("--golden", action="store_true", help=f"rewrite {GOLDEN.relative_to(REPO)}")
    a = p.parse_args()
    if a.step == "prepare":
        prepare(a.io)
    elif a.step == "keras":
        if a.weights is None:
            p.error("keras needs --weights")
        keras_step(a.io, a.weights)
    else:
        compare(a.io, a.golden)


if __name__ == "__main__":
    main()
