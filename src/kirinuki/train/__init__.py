"""Training of the splitter networks (kirinuki train-splitter): data (composites and their
targets) -> net (the U-Net and its ONNX export) -> loop (train_splitter: the model + card).
Imports core, extract and synth."""
