"""Model fetching: real HTTP from 127.0.0.1, real `npm pack` of a local package, clear failures."""
import json
import shutil

import pytest

from kirinuki.core.config import ExtractParams, ModelParams, ModelSource
from kirinuki.assets.fetch import BUNDLED, ModelUnavailable, fetch_model, install_bundled
from kirinuki.core.cards import card_path, read_card, sha256_file

from conftest import serve_directory

NORM = {"mean": (0.5, 0.5, 0.5), "std": (1.0, 1.0, 1.0), "letterbox": False}


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "model.onnx").write_bytes(b"not really onnx, but bytes with a known hash")
    with serve_directory(root) as base:
        yield base, sha256_file(root / "model.onnx")


def url_source(name, url, sha="1" * 64):
    return ModelSource(name=name, kind="url", location=url, sha256=sha, **NORM)


def test_falls_through_to_the_next_source_and_records_it(tmp_path, server):
    base, sha = server
    params = ModelParams(path=tmp_path / "m" / "isnet.onnx", timeout_s=5, sources=[
        url_source("missing", f"{base}/nope.onnx"),
        url_source("tampered", f"{base}/model.onnx", sha="0" * 64),
        url_source("good", f"{base}/model.onnx", sha=sha)])
    lines = []
    card = fetch_model(params, log=lines.append)
    assert card["source"] == "good" and card["sha256"] == sha
    assert read_card(params.path) == json.loads(params.path.with_suffix(".json").read_text())
    assert "missing" in lines[0] and "404" in lines[0]
    assert "tampered" in lines[1] and "does not match" in lines[1]
    assert not [p for p in params.path.parent.iterdir() if p.name.startswith(".")]  # no temp files left

    lines.clear()
    fetch_model(params, log=lines.append)  # present and valid: reused, nothing fetched
    assert lines == [f"model {params.path} present (good, sha256 {sha[:12]}...)"]


def test_no_source_fails_fast_naming_each(tmp_path, server):
    base, _ = server
    params = ModelParams(path=tmp_path / "isnet.onnx", timeout_s=2, sources=[
        url_source("a", f"{base}/a.onnx"), url_source("b", "http://127.0.0.1:9/b.onnx")])
    with pytest.raises(ModelUnavailable) as e:
        fetch_model(params, log=lambda m: None)
    assert "a (" in str(e.value) and "b (" in str(e.value)
    assert not params.path.exists()


def test_every_source_is_pinned_by_sha256():
    with pytest.raises(ValueError, match="sha256"):
        ModelSource(name="unpinned", kind="url", location="https://example.org/m.onnx", **NORM)
    assert all(len(s.sha256) == 64 for s in ModelParams().sources)


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm not installed")
def test_npm_package_chunks_are_joined_in_order(tmp_path):
    """The same layout as @imgly/background-removal-data, packed by the real npm, offline."""
    pkg = tmp_path / "pkg"
    (pkg / "dist").mkdir(parents=True)
    (pkg / "package.json").write_text(json.dumps({"name": "fake-model-data", "version": "1.0.0"}))
    parts = [b"first-chunk|", b"second-chunk|", b"third"]
    chunks = []
    for i, part in enumerate(parts):
        (pkg / "dist" / f"h{i}").write_bytes(part)
        chunks.append({"hash": f"h{i}", "offsets": [0, len(part)]})
    (pkg / "dist" / "resources.json").write_text(json.dumps({"/models/small": {"chunks": chunks}}))
    whole = tmp_path / "expected"
    whole.write_bytes(b"".join(parts))
    params = ModelParams(path=tmp_path / "out" / "isnet.onnx", sources=[ModelSource(
        name="npm", kind="npm", location=f"{pkg}#/models/small", sha256=sha256_file(whole), **NORM)])
    card = fetch_model(params, log=lambda m: None)
    assert params.path.read_bytes() == b"".join(parts) and card["source"] == "npm"


def test_shipped_splitters_and_cascade_install_with_their_cards_and_never_overwrite(tmp_path):
    params = ExtractParams(splitter=tmp_path / "splitter.onnx", head_splitter=tmp_path / "head_splitter.onnx",
                           faces=tmp_path / "lbpcascade_animeface.xml")
    assert install_bundled(params, log=lambda m: None) == [params.splitter, params.head_splitter, params.faces]
    for path in (params.splitter, params.head_splitter, params.faces):
        assert read_card(path) == read_card(BUNDLED / path.name) and sha256_file(path) == read_card(path)["sha256"]
    assert install_bundled(params, log=lambda m: None) == []  # already there

    card_path(params.splitter).unlink()  # a copy whose card was lost (killed between the two writes) gets it back
    assert install_bundled(params, log=lambda m: None) == [] and read_card(params.splitter)["sha256"] == sha256_file(params.splitter)

    params.head_splitter.write_bytes(b"the user's own model")  # never overwritten, and given no card of another file
    card_path(params.head_splitter).unlink()
    assert install_bundled(params, log=lambda m: None) == []
    assert params.head_splitter.read_bytes() == b"the user's own model" and not card_path(params.head_splitter).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
