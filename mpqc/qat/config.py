"""QAT settings, importable without torch."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mpqc.errors import OptionError

__all__ = ["QatConfig", "LOSSES"]

#: "auto": labels (plus distillation) when the data has them, else distillation alone
LOSSES = ("auto", "labels", "distill")


@dataclass(frozen=True)
class QatConfig:
    """One QAT run. `threads` is fixed per run so results do not depend on where it runs."""

    epochs: int = 3
    lr: float = 1e-4
    #: learning rate of the quantizer scales, relative to `lr`
    scale_lr_factor: float = 10.0
    batch_size: int = 64
    seed: int = 0
    loss: str = "auto"
    threads: int = 1
    progress: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise OptionError(f"QAT epochs must be a whole number >= 0, got {self.epochs!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise OptionError(f"QAT batch size must be a whole number >= 1, got {self.batch_size!r}")
        for name in ("lr", "scale_lr_factor"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise OptionError(f"QAT {name} must be a positive number, got {value!r}")
        if self.loss not in LOSSES:
            raise OptionError(f"unknown QAT loss {self.loss!r}; use one of {', '.join(LOSSES)}")
        if self.threads < 1:
            raise OptionError(f"QAT threads must be >= 1, got {self.threads}")
