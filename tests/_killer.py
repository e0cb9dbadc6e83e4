"""A test-only callback that SIGKILLs its own training process at a chosen point, so a
crash lands at the same place on a fast or a loaded machine."""

from __future__ import annotations

import os
import signal

import pytorch_lightning as pl


class KillAtEpochStart(pl.Callback):
    """SIGKILL the process when epoch `epoch` starts: every checkpoint of the epochs before
    it (written at their validation end) is on disk, nothing of this epoch is."""

    def __init__(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)
