"""Prediction ensemble of network snapshots (ASCPlus: the last N epochs)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn


class SnapshotEnsemble(nn.Module):
    """Averages the softmax of several snapshots; returns log-probabilities so that a downstream
    ``softmax`` gives exactly the mean probability."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([m(x).float().softmax(1) for m in self.members]).mean(0)
        return probs.clamp_min(1e-8).log()

    @classmethod
    def from_states(cls, template: nn.Module, states: Sequence[dict[str, torch.Tensor]]) -> SnapshotEnsemble:
        members = []
        for state in states:
            member = copy.deepcopy(template)
            member.load_state_dict(state)
            members.append(member)
        return cls(members)
