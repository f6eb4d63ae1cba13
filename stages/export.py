"""DVC stage `export`: the pipeline run's approved or lora_ok cut-outs -> a LoRA training set in
export.output (kohya-ss, ai-toolkit and Hugging Face layouts, manifest, index); reviews from
export.reviews."""
from pathlib import Path

from kirinuki.core.config import load_params
from kirinuki.dataset.export import Source, run_export
from kirinuki.core.runs import DVC_RUN

p = load_params(Path("params.yaml"))
tagger = None
if p.export.tagger.model:
    from kirinuki.dataset.tagger import Tagger
    tagger = Tagger(p.export.tagger)
s = run_export([Source("sample", DVC_RUN.extract, DVC_RUN.scores, p.export.reviews)], p.export.output, p.export,
               p.score.train_resolution, tagger=tagger)
print(f"{s['items']} image(s) -> {p.export.output} ({', '.join(s['layouts'])}; {s['resolution']} px buckets)")
