"""Synthetic multimodal training data: label-map sources, contrasts, deformations, pairs."""

from __future__ import annotations

from vmgga.synth.pairs import PairSampler, RandomPair, SyntheticPair, collate, make_pair

__all__ = ["PairSampler", "RandomPair", "SyntheticPair", "collate", "make_pair"]
