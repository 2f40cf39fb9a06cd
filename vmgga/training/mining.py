"""Hard example mining: remember the pairs with the largest matching loss and draw them again.

Pairs are identified by their seed (:class:`vmgga.synth.pairs.PairSampler` rebuilds them), so the
buffer is a small list of ``(loss, seed)`` that is saved in checkpoints (resumable, deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class HardExampleBuffer:
    """The ``capacity`` hardest pairs seen so far, as ``(loss, seed)`` sorted hardest first."""

    capacity: int = 64  # pairs remembered
    entries: list[tuple[float, int]] = field(default_factory=list)

    def update(self, losses: list[float], seeds: list[int]) -> None:
        """Record the matching loss of each pair (a pair seen again replaces its old entry)."""
        seen = {int(s) for s in seeds}
        kept = [(loss, seed) for loss, seed in self.entries if seed not in seen]
        kept += [(float(loss), int(seed)) for loss, seed in zip(losses, seeds, strict=True)]
        self.entries = sorted(kept, key=lambda e: (-e[0], e[1]))[: self.capacity]

    def pop_hardest(self, count: int) -> list[int]:
        """Remove and return the seeds of up to ``count`` hardest pairs."""
        taken, self.entries = self.entries[:count], self.entries[count:]
        return [seed for _, seed in taken]

    def state_dict(self) -> dict:
        """Checkpointable state (plain lists)."""
        return {
            "capacity": self.capacity,
            "losses": [e[0] for e in self.entries],
            "seeds": [e[1] for e in self.entries],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output."""
        self.capacity = int(state["capacity"])
        self.entries = [
            (float(loss), int(seed)) for loss, seed in zip(state["losses"], state["seeds"], strict=True)
        ]
