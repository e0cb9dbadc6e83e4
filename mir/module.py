"""The one training loop: a LightningModule over any set of tasks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from mir.data.track import Track
from mir.errors import ConfigError
from mir.frontend import HarmonicCQT
from mir.grid import Grid
from mir.models.model import MultiTaskModel, Trunk
from mir.tasks.base import Task, mean_scores

log = logging.getLogger(__name__)


class MirModule(pl.LightningModule):
    """Front end, shared trunk and one head per task, trained on the weighted sum of the
    tasks' masked losses; validated and tested with full-track mir_eval scores.

    Args:
        frontend: the Harmonic CQT front end.
        trunk: partial constructor of the trunk, called with ``in_channels=H``.
        tasks: task name -> `Task`; the first task's monitored metric selects checkpoints.
        optimizer: partial constructor called with the parameters.
        scheduler: optional partial constructor called with the optimizer.
        chunk_seconds: core length of full-track inference chunks, in s.
        margin_seconds: context on each side of a chunk, in s.
        compile: compile the trunk and heads with `torch.compile` (in place, so
            checkpoints keep the eager parameter names; the front end stays eager).

    Under DDP each rank runs full-track inference on its share of the validation/test
    tracks; the outputs are gathered so that every rank tunes and scores the whole set
    (identical values on every rank). Validation and test read one track at a time and
    keep only what the summary needs (see `_eval_step`).
    """

    def __init__(
        self,
        frontend: HarmonicCQT,
        trunk: Callable[..., Trunk],
        tasks: Mapping[str, Task],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        chunk_seconds: float = 30.0,
        margin_seconds: float = 3.0,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("at least one task is needed")
        self.tasks = dict(tasks)
        for name, task in self.tasks.items():
            if task.name != name:
                raise ConfigError(f"task.{name}: its name is {task.name!r}; use name: {name}")
            task.bind(frontend)
        trunk_module = trunk(in_channels=frontend.n_harmonics)
        if not isinstance(trunk_module, Trunk):
            raise TypeError(f"trunk: {type(trunk_module).__name__} is not a {Trunk.__name__}")
        channels = int(trunk_module.out_channels)
        heads = {name: task.build_head(channels) for name, task in self.tasks.items()}
        self.model = MultiTaskModel(frontend, trunk_module, heads)
        if compile:
            # `nn.Module.compile` compiles in place: state_dict keys stay as in eager mode.
            self.model.trunk.compile()
            for head in self.model.heads.values():
                head.compile()
        # the fast inference copy's arithmetic (`mir.predict`'s ``precision``): float32,
        # bfloat16 or torch.qint8; not a hyper-parameter, so not saved with the checkpoint
        self.inference_dtype: torch.dtype = torch.float32
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.chunk_seconds = float(chunk_seconds)
        self.margin_seconds = float(margin_seconds)
        # per stage: (track without audio, task -> (kind, scores/estimate/raw, labelled))
        self._eval: dict[str, list[tuple[Track, dict[str, Any]]]] = {}
        self.results: dict[str, dict[str, dict[str, float]]] = {}
        # The resolved run config (plain dict), stored in checkpoints so that
        # `mir.checkpoint.load_module` can rebuild the model; set by `mir.train`.
        self.run_config: dict[str, Any] | None = None
        self.per_track: dict[str, dict[str, list[dict[str, Any]]]] = {}
        # The first track of the last val/test pass and every task's raw full-track
        # output on it (float32, no batch axis): read by `mir.callbacks.WandbMedia`.
        self.examples: dict[str, tuple[Track, dict[str, np.ndarray]]] = {}

    # -- metadata ------------------------------------------------------------------------
    @property
    def grid(self) -> Grid:
        """The frame and f0-bin grid of the front end, shared by every task and the data."""
        return self.model.frontend.grid

    @property
    def monitor(self) -> str:
        """Metric the checkpoint callback maximises: the first task's `monitor`."""
        name, task = next(iter(self.tasks.items()))
        return f"val/{name}/{task.monitor}"

    def forward(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model(audio)[0]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:
            checkpoint["mir_config"] = self.run_config

    # -- training ------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "set_epoch"):
            dm.set_epoch(self.current_epoch)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        outputs, feats = self.model(batch["audio"])
        total = torch.zeros((), device=batch["audio"].device)
        bs = batch["audio"].shape[0]
        for name, task in self.tasks.items():
            loss = task.loss(outputs[name], batch["targets"][name], batch["mask"][name], feats)
            total = total + task.weight * loss
            self.log(f"train/{name}/loss", loss, batch_size=bs)
        self.log("train/loss", total, prog_bar=True, batch_size=bs)
        return total

    def configure_optimizers(self) -> Any:
        opt = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.scheduler_factory(opt)}}

    # -- full-track evaluation -----------------------------------------------------------
    def analyse(
        self,
        track: Track | Any,
        raw: Collection[str] = (),
        decode: Collection[str] | None = None,
        streams: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The one inference path: the raw and the decoded outputs of every task on a track.

        The track is run through the model in the overlapping chunks of
        `mir.inference.chunk_outputs` (the fast copy of `mir.models.fused`), so memory does
        not grow with raw outputs: f0 and multi-f0 are decoded chunk by chunk, mask
        separation inverted block by block, other tasks keep their (small) raw output and
        are decoded at the end (the `mir.predict` streams). `mir.predict`, `mir.evaluate`,
        validation and test all call it.

        Args:
            track: a `Track` (its mono audio at the front end's rate), or an audio source of
                `mir.inference.chunk_outputs` (`mir.predict.AudioStream`).
            raw: tasks whose whole raw output (no batch axis) is returned.
            decode: tasks whose decoded estimate is returned (default: all; none of those
                given in `streams`).
            streams: task -> a `mir.streams.Stream` the caller made (writing files as it
                goes); fed every chunk, finished by the caller.

        Returns:
            (task -> raw output for the tasks in `raw`, task -> estimate for those in
            `decode`), the estimates equal to ``task.decode(raw output, track)``.
        """
        from mir.inference import ArrayAudio, chunk_outputs

        fe = self.model.frontend
        is_track = isinstance(track, Track)
        audio = ArrayAudio(track.audio, fe.sr) if is_track else track
        given = dict(streams or {})
        wanted = [n for n in self.tasks if n not in given] if decode is None else list(decode)
        own = {n: self.tasks[n].stream(audio, None) for n in wanted if n not in given}
        feed = {**given, **own}
        raws: dict[str, list[np.ndarray]] = {n: [] for n in raw}
        weights: list[int] = []
        kinds = {name: task.output_kind for name, task in self.tasks.items()}
        for f0, f1, outputs in chunk_outputs(
            self.model,
            audio,
            {n: kinds[n] for n in [*feed, *raws]},
            self.chunk_seconds,
            self.margin_seconds,
            dtype=self.inference_dtype,
            needs_from=lambda: min([1 << 62, *(s.needs_from() for s in feed.values())]),
        ):
            for name, stream in feed.items():
                stream.feed(f0, f1, outputs[name])
            for name, parts in raws.items():
                parts.append(outputs[name])
            weights.append(f1 - f0)
        whole: dict[str, np.ndarray] = {}
        for name, parts in raws.items():
            if kinds[name] == "frames":
                whole[name] = np.concatenate(parts, axis=-1)
            else:
                w = np.asarray(weights, dtype=np.float64)
                whole[name] = np.tensordot(w / w.sum(), np.stack(parts), axes=1)
        stub = track if is_track else Track(name="", audio=np.zeros(0, np.float32), sr=fe.sr)
        estimates = {n: own[n].estimate(stub) for n in wanted}
        return whole, estimates

    def infer(self, track: Track) -> dict[str, np.ndarray]:
        """Every task's raw full-track output (no batch axis)."""
        return self.analyse(track, raw=list(self.tasks), decode=())[0]

    def predict_track(self, track: Track) -> dict[str, Any]:
        """Every task's decoded estimate for one whole track."""
        return self.analyse(track)[1]

    def _eval_step(self, stage: str, batch: list[Track]) -> None:
        # Only what the epoch's summary needs is kept, so memory does not grow with the
        # split's audio or outputs: per-track scores of tasks whose summary is a mean over
        # tracks; decoded estimates of the others (tagging's set-level AUCs); the scores
        # under each candidate setting (`Task.tuning_stats`) of tasks that tune their
        # decoding on validation; and the track without its audio or stems.
        for track in batch:
            first = not self._eval.get(stage)
            tuned = [n for n, t in self.tasks.items() if stage == "val" and t.tunes]
            outputs, estimates = self.analyse(
                track,
                raw=list(self.tasks) if first else tuned,
                decode=[n for n in self.tasks if n not in tuned],
            )
            if first:
                self.examples[stage] = (track, {k: np.asarray(v) for k, v in outputs.items()})
            item: dict[str, tuple[str, Any, bool]] = {}
            for name, task in self.tasks.items():
                labelled = task.has_labels(track)
                if name in tuned:
                    item[name] = ("tuning", task.tuning_stats(track, outputs[name]), labelled)
                    continue
                est = estimates[name]
                if not task.set_level_summary:  # the mean of per-track scores
                    scores = task.evaluate([track], [est])[0]
                    item[name] = ("scores", scores[0] if scores else None, labelled)
                else:
                    item[name] = ("estimate", est, labelled)
            self._eval.setdefault(stage, []).append((_without_audio(track), item))

    def validation_step(self, batch: list[Track], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: list[Track], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _gather(
        self, stage: str, items: list[tuple[Track, dict[str, Any]]]
    ) -> list[tuple[Track, dict[str, Any]]]:
        """Every rank's (track, item) pairs under DDP, deduplicated and in dataset order.

        A `DistributedSampler` (no shuffling) gives rank r the tracks r, r + W, r + 2W...
        of the W ranks, padding the last ranks with repeated tracks: the lists are
        interleaved back and the repeats dropped.
        """
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return items
        payload = [(len(t.audio), replace(t, audio=np.zeros(0, np.float32)), i) for t, i in items]
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, payload)
        merged: dict[str, tuple[Track, dict[str, Any]]] = {}
        for pos in range(max(len(part) for part in gathered)):
            for part in gathered:
                if pos < len(part):
                    n, track, item = part[pos]
                    merged.setdefault(track.name, (_without_audio(track, n), item))
        return list(merged.values())

    def _eval_end(self, stage: str) -> None:
        items = self._gather(stage, self._eval.pop(stage, []))
        if not items:
            return
        tracks = [t for t, _ in items]
        self.results[stage] = {}
        self.per_track[stage] = {}
        for name, task in self.tasks.items():
            kind = items[0][1][name][0]
            payloads = [e[name][1] for _, e in items]
            labelled = [t.name for t, e in items if e[name][2]]
            if kind == "tuning":
                stats = [p for p, (_, e) in zip(payloads, items, strict=True) if e[name][2]]
                chosen = task.tune(stats)
                per_track = [s[chosen] for s in stats if s]
                summary = mean_scores(per_track)
            elif kind == "scores":
                per_track = [p for p in payloads if p is not None]
                summary = mean_scores(per_track)
            else:
                per_track, summary = task.evaluate(tracks, payloads)
            self.per_track[stage][name] = [
                {"track": n, **s} for n, s in zip(labelled, per_track, strict=False)
            ]
            self.results[stage][name] = summary
            for key, value in summary.items():
                if np.isfinite(value):
                    self.log(f"{stage}/{name}/{key}", float(value), sync_dist=True)
        if stage == "val":
            # a monitored metric that is undefined (e.g. ROC-AUC on a validation set where
            # no tag varies) is logged as -inf so checkpointing never fails on it
            name = next(iter(self.tasks))
            value = self.results["val"].get(name, {}).get(self.tasks[name].monitor)
            if value is None or not np.isfinite(value):
                self.log(self.monitor, float("-inf"), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")


def _without_audio(track: Track, n_samples: int | None = None) -> Track:
    """`track` with its audio replaced by a zero-stride view of `n_samples` zeros (length
    kept for decoding, no memory) and no stems: what scoring a set of estimates reads."""
    n = len(track.audio) if n_samples is None else int(n_samples)
    silent = np.broadcast_to(np.zeros(1, np.float32), (n,))
    return replace(track.without_audio(), audio=silent)
