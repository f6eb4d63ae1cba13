"""Measuring against ground truth and gating: validate, calibrate (refits the score), compare, floors, bench. Imports core, extract (bench), quality."""
