"""Model assets: fetch the default model (fetch) and make its static int8 copy (quantize). Imports core, and extract's preprocessing so calibration sees what extraction sees."""
