"""Kirinuki: anime/manga pages -> single-character cut-outs with honest grades."""

__version__ = "0.1.0"
