"""Supernet, blocks and heads."""

from hwnas.nn.supernet import SubNet, Supernet

__all__ = ["SubNet", "Supernet"]
