"""A small Trainer for classification heads: history, accuracy, progress bar.

Works for multi-class heads (logits ``(N, K)``, integer targets ``(N,)``, e.g.
``CrossEntropyLoss``) and binary heads with one output unit (logits ``(N, 1)`` or ``(N,)``,
``BCEWithLogitsLoss``: targets are cast to float and shaped like the logits; a logit > 0
predicts class 1).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from .device import auto_device


def predicted_labels(logits: torch.Tensor) -> torch.Tensor:
    """Class predictions ``(N,)`` from logits ``(N, K)`` (argmax) or ``(N, 1)``/``(N,)`` (> 0)."""
    if logits.ndim == 2 and logits.shape[1] > 1:
        return logits.argmax(dim=1)
    return (logits.reshape(-1) > 0).long()


def _targets_for(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if logits.ndim == 2 and logits.shape[1] > 1:
        return targets.long()
    return targets.float().reshape(logits.shape)


class Trainer:
    """Fit ``model`` with ``loss_fn`` and ``optimizer`` on ``(inputs, targets)`` batches.

    ``fit`` returns (and keeps in ``self.history``) a dict of per-epoch lists:
    ``loss``, ``acc`` and, with a validation loader, ``val_loss``, ``val_acc``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module,
        optimizer: torch.optim.Optimizer,
        device: str | torch.device | None = None,
        progress: bool = True,
    ):
        self.device = auto_device(device)
        self.model = model.to(self.device)
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.progress = progress
        self.history: dict[str, list[float]] = {"loss": [], "acc": [], "val_loss": [], "val_acc": []}

    def _run_epoch(self, loader: Iterable, train: bool) -> tuple[float, float]:
        self.model.train(train)
        total_loss, correct, seen = 0.0, 0, 0
        context = torch.enable_grad() if train else torch.inference_mode()
        with context:
            for inputs, targets in loader:
                inputs = inputs.to(self.device, non_blocking=True)
                targets = targets.to(self.device, non_blocking=True)
                logits = self.model(inputs)
                loss = self.loss_fn(logits, _targets_for(logits, targets))
                if train:
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    self.optimizer.step()
                batch = targets.shape[0]
                total_loss += float(loss.detach()) * batch
                correct += int((predicted_labels(logits.detach()) == targets.long()).sum())
                seen += batch
        if seen == 0:
            raise ValueError("the data loader yielded no batch")
        return total_loss / seen, correct / seen

    def fit(self, train_loader: Iterable, val_loader: Iterable | None = None, epochs: int = 5):
        """Train for ``epochs`` epochs; returns the history dict (see the class docstring)."""
        bar = tqdm(range(epochs), desc="training", unit="epoch", disable=not self.progress)
        for _ in bar:
            loss, acc = self._run_epoch(train_loader, train=True)
            self.history["loss"].append(loss)
            self.history["acc"].append(acc)
            postfix = {"loss": f"{loss:.4f}", "acc": f"{acc:.3f}"}
            if val_loader is not None:
                val_loss, val_acc = self._run_epoch(val_loader, train=False)
                self.history["val_loss"].append(val_loss)
                self.history["val_acc"].append(val_acc)
                postfix.update(val_loss=f"{val_loss:.4f}", val_acc=f"{val_acc:.3f}")
            bar.set_postfix(postfix)
        self.model.eval()
        return self.history

    def evaluate(self, loader: Iterable) -> dict[str, float]:
        """``{"loss": mean loss, "acc": accuracy}`` on ``loader`` in eval mode."""
        loss, acc = self._run_epoch(loader, train=False)
        return {"loss": loss, "acc": acc}

    def predict(self, loader: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(N, K)`` (or ``(N, 1)``) and targets ``(N,)`` on ``loader``, on the CPU."""
        self.model.eval()
        outputs, labels = [], []
        with torch.inference_mode():
            for inputs, targets in loader:
                outputs.append(self.model(inputs.to(self.device)).cpu())
                labels.append(targets.cpu())
        return torch.cat(outputs), torch.cat(labels)
