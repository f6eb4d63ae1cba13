"""Training of the splitter networks (kirinuki train-splitter). Imports core, extract and synth."""
