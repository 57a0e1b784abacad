"""The distillation term LwF uses (strategies/lwf.py), shared by the Hat Swap heads and the dense suite's kinds."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_t2(student: torch.Tensor, teacher: torch.Tensor, temperature: float, dim: int = 1) -> torch.Tensor:
    """T² · KL(softmax(teacher/T) ‖ softmax(student/T)) over `dim`, one value per remaining position."""
    log_p = F.log_softmax(student / temperature, dim=dim)
    q = F.softmax(teacher / temperature, dim=dim)
    return F.kl_div(log_p, q, reduction="none").sum(dim) * temperature**2


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over the batch ("batchmean"). Both B × C."""
    return kl_t2(student_logits, teacher_logits, temperature).mean()
