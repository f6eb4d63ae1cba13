"""Synthetic pages: the versioned sample data under data/ and the training composites' drawn figures.

authors (each author's habits, inks and palettes) -> figure (one character, painted with
its exact labels; figure_sprite) -> layout (panels, backgrounds, figures, bubbles, the
manga look: render_page) -> dataset (write_dataset: pages, label maps, scenes.csv).
Imports core only.
"""
