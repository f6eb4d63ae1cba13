"""Stage score: per-cut-out features, hard-failure flags, the fitted score and grade A-E. Imports core only."""
