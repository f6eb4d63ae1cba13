"""Stage extract: page -> detector boxes -> segmenter mask -> splitters -> instances -> cut-outs. Imports core only."""
