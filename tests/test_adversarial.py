"""The adversarial realism term's parts (trainer/adversarial.py): the straight-through cut
and the critic. Its place in training is tested in tests/test_trainer.py."""

from __future__ import annotations

import pytest
import torch

from trainer.adversarial import RollCritic, real_notes, straight_through_notes


def test_straight_through_cut_is_the_decode_forward_and_soft_backward() -> None:
    roll = torch.tensor([[-0.9, 0.47, 0.5, 0.95]]).reshape(1, 1, 1, 4).repeat(1, 2, 1, 1)
    roll.requires_grad_(True)
    onset, sounding = straight_through_notes(roll, 0.48, 0.4, 0.1)
    assert onset.flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
    assert sounding.flatten().tolist() == [0.0, 1.0, 1.0, 1.0]  # held at 0.47 > 0.4
    onset.sum().backward()
    assert roll.grad is not None
    grad = roll.grad[0, 0, 0]
    # cells near the cut pass the gradient, a cell settled far from it almost none
    assert grad[1] > 2.0 and grad[2] > 2.0 and grad[0] < 1e-3


def test_real_notes_count_held_cells_as_sounding() -> None:
    roll = -torch.ones(1, 2, 2, 3)
    roll[0, 0, 0, 1] = 1.0  # an onset
    roll[0, 1, 1, 1] = 1.0  # then held
    onset, sounding = real_notes(roll)
    assert onset.sum() == 1 and sounding.sum() == 2


def _windows(count: int, low: bool, generator: torch.Generator) -> torch.Tensor:
    """(count, 64, 88) random sparse chords in the low or the high half of the keyboard."""
    notes = torch.zeros(count, 64, 88)
    for window in range(count):
        for step in range(0, 64, 4):
            base = int(
                torch.randint(10 if low else 50, 30 if low else 70, (1,), generator=generator)
            )
            notes[window, step, [base, base + 4, base + 7]] = 1.0
    return notes


@pytest.mark.parametrize("statistics", ["texture", "realism"])
def test_critic_learns_to_tell_two_kinds_of_windows_apart(statistics: str) -> None:
    """Trained as the term trains it (Adam, betas 0.5 and 0.9), the critic tells low chords
    from high ones on windows it has not seen: it sees the register through its pitch input."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    critic = RollCritic(width=8, statistics=statistics)
    optimizer = torch.optim.Adam(critic.parameters(), lr=2e-3, betas=(0.5, 0.9))
    for _ in range(40):
        real, fake = _windows(8, True, generator), _windows(8, False, generator)
        loss = (
            torch.nn.functional.softplus(-critic(real, real)).mean()
            + torch.nn.functional.softplus(critic(fake, fake)).mean()
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    critic.eval()
    with torch.no_grad():
        real, fake = _windows(16, True, generator), _windows(16, False, generator)
        accuracy = (
            (critic(real, real) > 0).float().mean() + (critic(fake, fake) < 0).float().mean()
        ) / 2
    assert accuracy > 0.9


def test_critic_refuses_unknown_statistics() -> None:
    with pytest.raises(ValueError, match="unknown critic statistics"):
        RollCritic(statistics="forest")
