"""Robustness: hostile and careless inputs, each generated here (nothing committed as files).

Every bad input gives one clear line naming the file, the batch goes on, and nothing is
half-written; every odd but valid input is processed. Then the kill -9 cases: an interrupted
extract resumes to byte-identical outputs, a killed tracker leaves no orphan child and reads
`interrupted`, stale temporary files go on resume, a damaged outbox is set aside; and `serve`:
weak passwords, idle connections, disconnects, traversal URLs.
"""
from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, features
from typer.testing import CliRunner

from kirinuki.cli import app
from kirinuki.core.config import SheetsParams
from kirinuki.core.imageio import read_label_png, write_png
from kirinuki.extract.run import run_extract
from kirinuki.publish.dashboard import write_index
from kirinuki.publish.serve import PASSWORD_ENV, USER_ENV, ServeError, make_server
from kirinuki.publish.tickets import Ticket, publish_tickets, read_outbox
from kirinuki.publish.workspace import live_state, workspace_for_input

import localhttp
from conftest import TINY_SIZE, two_figures
from works import make_work, tracked

CLI = [sys.executable, "-m", "kirinuki.cli"]
OK, ERROR, LISTED = "ok", "error", "listed"  # processed; one error line; named as skipped (no page)


# --- how each case is made ------------------------------------------------------------------

def _png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_zero_byte(d):
    (d / "zero.png").write_bytes(b"")
    return "zero.png"


def make_truncated(d):
    data = _png_bytes(two_figures())
    (d / "truncated.png").write_bytes(data[: len(data) // 2])
    return "truncated.png"


def make_corrupt_idat(d):
    data = bytearray(_png_bytes(two_figures()))
    i = data.index(b"IDAT") + 4
    data[i + 20: i + 60] = bytes(40)  # damaged compressed data; the CRC no longer matches
    (d / "corrupt_idat.png").write_bytes(bytes(data))
    return "corrupt_idat.png"


def make_not_an_image(d):
    (d / "notes.jpg").write_text("this is not an image")
    return "notes.jpg"


def make_bomb(d):
    """A 20000x20000 PNG header (400 Mpx) over a few bytes of data: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    idat = zlib.compress(bytes(20001 * 4))
    (d / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
                                 + _chunk(b"IEND", b""))
    return "bomb.png"


def make_over_max_pixels(d):
    """10000x10000 (100 Mpx): above extract.max_pixels (80 Mpx by default) and Pillow's warning level."""
    ihdr = struct.pack(">IIBBBBB", 10000, 10000, 8, 0, 0, 0, 0)
    (d / "huge_scan.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
                                      + _chunk(b"IDAT", zlib.compress(bytes(10001 * 4))) + _chunk(b"IEND", b""))
    return "huge_scan.png"


def make_heic(d):
    (d / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    return "photo.heic"


def make_cmyk(d):
    Image.fromarray(two_figures()).convert("CMYK").save(d / "cmyk.jpg", quality=95)
    return "cmyk.jpg"


def make_16bit(d):
    Image.fromarray(two_figures()[..., 0].astype(np.uint16) * 257).save(d / "gray16.png")
    return "gray16.png"


def make_palette(d):
    Image.fromarray(two_figures()).convert("P", palette=Image.ADAPTIVE, colors=16).save(d / "palette.png")
    return "palette.png"


def make_la(d):
    Image.fromarray(two_figures()).convert("LA").save(d / "gray_alpha.png")
    return "gray_alpha.png"


def make_rgba(d):
    rgba = np.dstack([two_figures(), np.full((96, 128), 255, np.uint8)])
    rgba[:10] = 0  # a transparent band: white paper
    Image.fromarray(rgba).save(d / "rgba.png")
    return "rgba.png"


def make_float_tiff(d):
    Image.fromarray(two_figures()[..., 1].astype(np.float32) / 255).save(d / "float.tif")
    return "float.tif"


def make_one_pixel(d):
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(d / "one_pixel.png")
    return "one_pixel.png"


def make_strip(d):
    strip = np.full((5000, 1, 3), 255, np.uint8)
    strip[1000:4000] = 20
    Image.fromarray(strip).save(d / "strip.png")
    return "strip.png"


def make_animated_gif(d):
    frames = [Image.fromarray(np.roll(two_figures(), 8 * i, axis=1)) for i in range(3)]
    frames[0].save(d / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return "animated.gif"


def make_webp(d):
    Image.fromarray(two_figures()).save(d / "webp_page.webp", lossless=True)
    return "webp_page.webp"


def make_avif(d):
    Image.fromarray(two_figures()).save(d / "avif_page.avif", quality=95)
    return "avif_page.avif"


def make_bmp(d):
    Image.fromarray(two_figures()).save(d / "bmp_page.bmp")
    return "bmp_page.bmp"


def make_png_named_jpg(d):
    (d / "really_png.jpg").write_bytes(_png_bytes(two_figures()))
    return "really_png.jpg"


def make_exif_rotated(d):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, rotate 90 CW on display
    Image.fromarray(np.ascontiguousarray(np.rot90(two_figures(), 1))).save(d / "exif_rotated.jpg", exif=exif,
                                                                            quality=95)
    return "exif_rotated.jpg"


def make_odd_name(d):
    name = "ページ 1 (copy) #2 'x'.png"
    Image.fromarray(two_figures()).save(d / name)
    return name


def make_dash_name(d):
    Image.fromarray(two_figures()).save(d / "-rf --help.png")
    return "-rf --help.png"


def make_symlink(d):
    target = d.parent / "elsewhere.png"
    Image.fromarray(two_figures()).save(target)
    (d / "linked.png").symlink_to(target)
    return "linked.png"


def make_broken_symlink(d):
    (d / "dangling.png").symlink_to(d.parent / "gone.png")
    return "dangling.png"


def make_symlinked_folder(d):
    other = d.parent / "other_work"
    other.mkdir()
    Image.fromarray(two_figures()).save(other / "inside.png")
    (d / "linked_folder").symlink_to(other, target_is_directory=True)
    return "linked_folder"


def make_other_file(d):
    (d / "layers.psd").write_bytes(b"8BPS")
    return "layers.psd"


def make_hidden_file(d):
    (d / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return ".DS_Store"


AVIF = features.check("avif")
try:
    import pillow_heif  # noqa: F401
    HEIF = True
except ImportError:
    HEIF = False

CASES = {  # name -> (make, expected, what the line says)
    "zero-byte": (make_zero_byte, ERROR, "0 bytes"),
    "truncated": (make_truncated, ERROR, ""),
    "corrupt IDAT": (make_corrupt_idat, ERROR, ""),
    "not an image": (make_not_an_image, ERROR, "not an image"),
    "20000x20000 bomb": (make_bomb, ERROR, "too large"),
    "over extract.max_pixels": (make_over_max_pixels, ERROR, "exceeds extract.max_pixels"),
    "HEIC": (make_heic, ERROR, "" if HEIF else "pillow-heif"),
    "CMYK": (make_cmyk, OK, None),
    "16-bit": (make_16bit, OK, None),
    "palette": (make_palette, OK, None),
    "LA": (make_la, OK, None),
    "RGBA": (make_rgba, OK, None),
    "float TIFF": (make_float_tiff, OK, None),
    "1x1": (make_one_pixel, OK, None),
    "1x5000 strip": (make_strip, OK, None),
    "animated GIF": (make_animated_gif, OK, None),
    "WebP": (make_webp, OK, None),
    "AVIF": (make_avif, OK, None) if AVIF else (make_avif, ERROR, "AVIF"),
    "BMP": (make_bmp, OK, None),
    "PNG named .jpg": (make_png_named_jpg, OK, None),
    "EXIF rotation": (make_exif_rotated, OK, None),
    "spaces and unicode": (make_odd_name, OK, None),
    "leading dash": (make_dash_name, OK, None),
    "symlink": (make_symlink, OK, None),
    "broken symlink": (make_broken_symlink, LISTED, "broken symlink"),
    "symlinked folder": (make_symlinked_folder, LISTED, "symlink to a folder"),
    "not an image suffix": (make_other_file, LISTED, "not an image suffix"),
    "hidden file": (make_hidden_file, LISTED, "hidden file"),
}


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".tmp" in p.name]


@pytest.mark.parametrize("case", list(CASES))
def test_each_input_is_processed_or_named_and_the_batch_goes_on(case, tmp_path, extract_params):
    make, expected, says = CASES[case]
    d = tmp_path / "in"
    d.mkdir()
    name = _avif_placeholder(d) if case == "AVIF" and not AVIF else make(d)
    Image.fromarray(two_figures()).save(d / "good.png")
    Image.fromarray(two_figures()).save(d / "zz_good.png")  # after the case in name order too
    out = tmp_path / "out"
    lines: list[str] = []
    with warnings.catch_warnings(record=True) as warned:  # the one line is all a user sees
        warnings.simplefilter("always")
        s = run_extract(d, out, extract_params, progress=False, log=lines.append)
    assert not [w for w in warned if issubclass(w.category, Image.DecompressionBombWarning)]

    stem = Path(name).stem
    assert (out / "good" / "page.json").is_file() and (out / "zz_good" / "page.json").is_file(), lines
    assert no_temp_files(out)
    if expected == OK:
        assert s.errors == [] and (out / stem / "page.json").is_file(), lines
        labels = read_label_png(out / stem / "labels.png")
        assert labels.ndim == 2 and labels.dtype in (np.uint8, np.uint16)
        if case in ("EXIF rotation", "CMYK", "palette", "LA", "16-bit", "WebP", "AVIF", "BMP", "animated GIF"):
            assert labels.shape == (96, 128) and labels.max() >= 1, case  # upright, both figures found
    elif expected == ERROR:
        [line] = s.errors
        assert name in line and "\n" not in line and says in line, line
        assert lines.count(line) == 1
        assert not (out / stem).exists()  # nothing half-written
    else:
        assert s.errors == [] and not (out / stem).exists()
        [line] = [x for x in s.ignored if name in x]
        assert says in line and "\n" not in line and line in lines
    assert s.pages == 2 + (expected == OK)


def _avif_placeholder(d: Path) -> str:
    """Without AVIF support a real .avif cannot be written here: a file with its header stands in."""
    (d / "avif_page.avif").write_bytes(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(64))
    return "avif_page.avif"


def test_one_folder_of_everything_through_the_cli(tmp_path, tiny_model):
    """All the cases in one folder: each failure one line naming its file, every good page done, exit 1."""
    d = tmp_path / "in"
    d.mkdir()
    names = {case: (make(d) if case != "AVIF" or AVIF else _avif_placeholder(d))
             for case, (make, _, _) in CASES.items()}
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"extract": {"model": str(tiny_model), "input_size": TINY_SIZE,
                                                  "splitter": None}}))
    r = CliRunner().invoke(app, ["extract", str(d), "-o", str(tmp_path / "out"), "-p", str(params), "--no-progress"])
    assert r.exit_code == 1, r.output
    errors = [c for c, (_, e, _) in CASES.items() if e == ERROR]
    for case in errors:
        assert sum(names[case] in line for line in r.output.splitlines()) == 1, (case, r.output)
    n_ok = sum(e == OK for _, e, _ in CASES.values())
    assert f"{n_ok} pages (0 already done)" in r.output and f"{len(errors)} failed" in r.output
    assert no_temp_files(tmp_path / "out")


def test_the_same_avif_in_a_folder_and_given_directly(tmp_path, extract_params):
    if not AVIF:
        pytest.skip("this Pillow cannot write AVIF")
    d = tmp_path / "in"
    d.mkdir()
    make_avif(d)
    a = run_extract(d, tmp_path / "a", extract_params, progress=False)
    b = run_extract(d / "avif_page.avif", tmp_path / "b", extract_params, progress=False)
    assert a.pages == b.pages == 1 and a.characters == b.characters == 2
    labels = "avif_page/labels.png"
    assert (tmp_path / "a" / labels).read_bytes() == (tmp_path / "b" / labels).read_bytes()


# --- kill -9 and resume ----------------------------------------------------------------------

def _pages(folder: Path, n: int, size=(600, 800)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rgb = np.full((*size, 3), 255, np.uint8)
        rgb[100 + i % 50: 400, 100: 300] = (30, 40, 60)
        rgb[150: 500, 450 + i % 30: 700] = (60, 20, 20)
        Image.fromarray(rgb).save(folder / f"p{i:03d}.png")


def _outputs(out: Path) -> dict:
    """Every output file's bytes; page.json and records.jsonl without the timings."""
    found = {}
    for p in sorted(out.rglob("*")):
        if p.is_dir() or p.name == "run.json":
            continue
        if p.suffix in (".json", ".jsonl"):
            text = p.read_text()
            rows = [json.loads(line) for line in text.splitlines() if line.strip()] if p.suffix == ".jsonl" \
                else [json.loads(text)]
            for r in rows + [rec for r in rows for rec in r.get("records", [])]:
                for key in ("seconds", "forward_seconds"):
                    r.pop(key, None)
            found[p.relative_to(out)] = rows
        else:
            found[p.relative_to(out)] = p.read_bytes()
    return found


@pytest.mark.slow
def test_kill_during_extract_then_resume_is_byte_identical(tmp_path, tiny_model):
    pages = tmp_path / "pages"
    _pages(pages, 60)
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"extract": {"model": str(tiny_model), "input_size": TINY_SIZE,
                                                  "splitter": None}}))
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    args = ["extract", str(pages), "--params", str(params), "--no-progress", "-o"]
    assert subprocess.run([*CLI, *args, str(clean)], capture_output=True, timeout=300).returncode == 0

    proc = subprocess.Popen([*CLI, *args, str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(killed.glob("*/page.json"))) < 3:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(killed.glob("*/page.json")))
    assert 0 < done < 60, done  # really stopped half-way
    # what a kill in the middle of a write leaves: a temporary file, a page folder without page.json
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(killed / "p000" / ".labels.a1b2c3d4.tmp.png")
    half = killed / "p059"
    half.mkdir(exist_ok=True)
    write_png(half / "labels.png", np.ones((3, 3), np.uint8))
    write_png(half / "char_7.png", np.zeros((3, 3, 4), np.uint8))

    r = subprocess.run([*CLI, *args, str(killed)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"({done} already done)" in r.stderr and ".labels.a1b2c3d4.tmp.png: removed" in r.stderr
    assert _outputs(killed) == _outputs(clean)
    assert no_temp_files(killed)


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2:].split()[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":  # dead, waiting for a parent that is gone too
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_tracker_leaves_no_child_reads_interrupted_and_resumes(tmp_path, tiny_model):
    work = make_work(tmp_path / "root", n_pages=3)
    big = np.full((3000, 4000, 3), 255, np.uint8)  # over a second even for the tiny model
    big[500:2500, 500:1500], big[700:2700, 2000:3500] = 30, 60
    Image.fromarray(big).save(work / "zz_big.png")  # the last page
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"extract": {"model": str(tiny_model), "input_size": TINY_SIZE,
                                                  "splitter": None}}))
    ws = workspace_for_input(work, "QCC-201")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIRINUKI_")}
    cmd = [*CLI, "track", "QCC-201", "--input", str(work), "--params", str(params), "--no-notify"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (ws.log.is_file() and "[3/4]" in ws.log.read_text()):
        time.sleep(0.01)  # "[3/4]" is logged when the 4th page, the big one, starts
    children = _children(proc.pid)
    assert children, "the extraction child did not start"
    os.kill(proc.pid, signal.SIGKILL)  # in the middle of the big page
    proc.wait()
    assert all(_gone(c, 0.5) for c in children)  # the child died with its parent, not after its page

    state = json.loads(ws.state.read_text())
    assert state["status"] == "running" and state["pid"] == proc.pid  # as the killed run left it
    assert live_state(state)["status"] == "interrupted"  # ... but the index tells the truth
    write_index(ws.dir.parent)
    assert "interrupted" in (ws.dir.parent / "index.html").read_text()
    (ws.extract / "aoki_ep1_00" / ".labels.deadbeef.tmp.png").write_bytes(b"half")
    ws.dashboard.mkdir(parents=True, exist_ok=True)
    (ws.dashboard / ".index.0badf00d.tmp.html").write_text("<html")

    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "3 pages (3 already done)" not in r.stderr and "(3 already done)" in r.stderr
    assert "BrokenPipeError" not in r.stderr + ws.log.read_text() and "Traceback" not in ws.log.read_text()
    assert json.loads(ws.state.read_text())["status"] == "done"
    assert (ws.extract / "zz_big" / "page.json").is_file() and no_temp_files(ws.dir)


def test_damaged_outbox_is_set_aside_and_the_new_update_still_queued(tmp_path):
    outbox = tmp_path / ".kirinuki-outbox.jsonl"
    good = Ticket("QCC-301", at="t0", status="対応中")
    publish_tickets([good], SheetsParams(), outbox, env={})
    with open(outbox, "a", encoding="utf-8") as f:
        f.write('{"id": "QCC-302", "at": "t1", "stat\n')  # a write cut short
    new = Ticket("QCC-303", at="t2", status="完了")
    r = publish_tickets([new], SheetsParams(), outbox, env={})
    assert r.queued == 2 and "damaged" in r.message and "set aside" in r.message, r.message
    assert read_outbox(outbox) == [good, new]  # the readable update and the new one, in order
    [aside] = tmp_path.glob(".kirinuki-outbox.jsonl.damaged-*")
    assert "QCC-302" in aside.read_text()  # nothing lost: the damaged file is kept as it was

    outbox.write_bytes(b"\xff\xfe garbage \x00")  # not even text
    r = CliRunner().invoke(app, ["ticket", "QCC-304", "--status", "完了", "--root", str(tmp_path)],
                           env={"KIRINUKI_GOOGLE_CREDENTIALS": ""})
    assert r.exit_code == 1 and "set aside" in r.output and "kept in" in r.output, r.output
    assert [t.id for t in read_outbox(outbox)] == ["QCC-304"]
    assert len(list(tmp_path.glob(".kirinuki-outbox.jsonl.damaged-*"))) == 2


def test_a_killed_outbox_write_leaves_no_temp_behind(tmp_path):
    outbox = tmp_path / ".kirinuki-outbox.jsonl"
    (tmp_path / "..kirinuki-outbox.x1y2z3w4.tmp.jsonl").write_text('{"id": "half')
    publish_tickets([Ticket("QCC-305", at="t")], SheetsParams(), outbox, env={})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".kirinuki-outbox.jsonl", ".kirinuki-outbox.jsonl.lock"]


# --- serve ------------------------------------------------------------------------------------

@pytest.mark.parametrize("password", [" ", "a", "s3cret pass", "password1234", "kirinukikirinuki",
                                      "aaaaaaaaaaaaaaaa", "kana"])
def test_serve_refuses_weak_passwords(tmp_path, password):
    env = {USER_ENV: "kana", PASSWORD_ENV: password}
    for host in ("127.0.0.1", "0.0.0.0"):
        with pytest.raises(ServeError, match="too weak") as e:
            make_server(tmp_path, host, 0, env=env)
        assert len(password) < 5 or password not in str(e.value)  # the password itself is never shown
    server = make_server(tmp_path, "127.0.0.1", 0, env=env, allow_weak_password=True)  # the user's explicit choice
    server.server_close()


STRONG = {USER_ENV: "kana", PASSWORD_ENV: "correct horse battery"}
AUTH = "Basic " + base64.b64encode(b"kana:correct horse battery").decode()


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("robust-serve") / "root"
    ws, _ = tracked(root, tiny_model)
    (ws.dir / "secret.txt").write_text("not for the web")
    server = make_server(root, "127.0.0.1", 0, env=STRONG, idle_timeout_s=0.5, max_connections=8)
    localhttp.start(server)
    yield server, ws
    localhttp.stop(server)


def _get(port: int, target: str, auth: str | None = AUTH) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        head = f"GET {target} HTTP/1.1\r\nHost: x\r\n" + (f"Authorization: {auth}\r\n" if auth else "")
        s.sendall((head + "Connection: close\r\n\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("target", [
    "/tracker/QCC-011/%252e%252e/track.json",    # double-encoded
    "/tracker/QCC-011/..%00/track.json",         # NUL
    "/tracker/QCC-011/%00",
    "//tracker/QCC-011/../../secret.txt",
    "/tracker/QCC-011/./../track.json",
    "/tracker/QCC-011/dashboard/../../track.json",
    "/tracker/QCC-011/" + "a/" * 300 + "x",       # very deep
    "/tracker/QCC-011/..\\..\\track.json",
    "/tracker/QCC-011%2f..%2ftrack.json",
    "/tracker/../QCC-011/secret.txt",
    "http://evil.example/tracker/QCC-011/../track.json",
])
def test_more_traversal_urls(served, target):
    status, body = _get(served[0].server_port, target)
    assert status in (400, 404) and b"not for the web" not in body and b"tracker_id" not in body


def test_idle_connections_are_closed_and_cannot_pile_up(served, capfd):
    server, _ = served
    port = server.server_port
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]  # say nothing
    time.sleep(0.2)
    assert threading.active_count() - before <= server.max_connections  # the rest closed at once
    time.sleep(1.0)  # past the idle timeout
    for s in idle:
        s.settimeout(2)
        try:
            assert s.recv(1) == b""  # the server hung up
        except (ConnectionResetError, TimeoutError):
            pass
        s.close()
    assert _get(port, "/")[0] == 200  # still serving
    time.sleep(0.2)
    assert threading.active_count() <= before + 1
    out = capfd.readouterr()
    assert "Traceback" not in out.out + out.err and "timed out" in out.out


def test_a_client_that_goes_away_is_one_line(served, capfd):
    port = served[0].server_port
    for i in range(5):
        with socket.create_connection(("127.0.0.1", port)) as s:
            # the first goes away while the server still waits for its headers (went away, whatever the
            # timing); the others after the whole request, while the answer may or may not be out
            end = "" if i == 0 else "\r\n"
            s.sendall(f"GET /tracker/QCC-011/ HTTP/1.1\r\nAuthorization: {AUTH}\r\n{end}".encode())
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not close
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GARBAGE\r\n\r\n")
        s.recv(1024)
    time.sleep(0.5)
    out = capfd.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text and "BrokenPipe" not in out.err
    lines = [line for line in text.splitlines() if line.strip()]
    # at most one line per connection, however it ended (a reset before the request was read is no request)
    assert 2 <= len(lines) <= 6 and any("went away" in line for line in lines), lines
    assert all(line.startswith("127.0.0.1 ") for line in lines)
    assert any('"GARBAGE" 400' in line for line in lines)


def test_what_kirinuki_wrote_and_what_goes_with_pages_are_no_input(tmp_path, extract_params):
    """An output folder inside the input (extract -o IN/out, a tracker workspace under ROOT) is not
    read back as pages on the next run; captions, tables and box ground truth beside the pages are
    passed over without a line."""
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(two_figures()).save(d / "p1.png")
    (d / "p1.txt").write_text("1girl")
    (d / "p1_gt.json").write_text('{"figures": []}')
    (d / "scenes.csv").write_text("page,source\n")
    ws = d / "aoki" / "tracker-workspace" / "QCC-011"
    (ws / "dashboard").mkdir(parents=True)
    (ws / "track.json").write_text("{}")
    Image.fromarray(two_figures()).save(ws / "dashboard" / "thumb.png")
    lines: list[str] = []
    first = run_extract(d, d / "out", extract_params, progress=False, log=lines.append)
    again = run_extract(d, d / "out", extract_params, progress=False, log=lines.append)
    assert (first.pages, first.skipped, again.pages, again.skipped) == (1, 0, 1, 1), lines
    assert not first.errors and not again.errors and lines == [], lines
