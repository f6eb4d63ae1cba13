"""From cut-outs to a LoRA training set: reviews, captions and tags, export, usage tracking."""
