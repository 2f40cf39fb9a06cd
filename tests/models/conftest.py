"""Model tests run on one torch thread: the small tensors gain nothing from more, and on a loaded
machine extra threads only wait for each other."""

from __future__ import annotations
