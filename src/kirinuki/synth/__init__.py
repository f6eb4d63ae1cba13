"""Synthetic pages: the versioned sample data under data/ and the training composites' drawn figures. Imports core only."""
