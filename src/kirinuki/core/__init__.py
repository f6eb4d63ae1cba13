"""Core helpers every stage shares: typed params (config), image and JSON IO, instance label maps, model cards, statistics. Imports nothing else of kirinuki."""
