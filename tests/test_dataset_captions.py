"""Captions already beside a source page (files, EXIF, XMP), merging them, and the tag dictionary."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest
from PIL import Image, PngImagePlugin

from kirinuki.core.config import ConfigError
from kirinuki.dataset.captions import CaptionError, ExistingCaption, existing_caption, merge
from kirinuki.dataset.tags import TagDictionary, caption_text, normalise

ROOT = Path(__file__).resolve().parents[1]


def page(folder: Path, name: str = "image.png", exif=None, xmp=None, **save) -> Path:
    path = folder / name
    im = Image.new("RGB", (8, 8), "white")
    if exif is not None:
        save["exif"] = exif.tobytes()  # an Exif object holding only the Exif IFD is falsy: PNG would drop it
    if xmp is not None and path.suffix == ".png":  # Pillow writes PNG XMP as this iTXt chunk
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp)
        save["pnginfo"] = info
    elif xmp is not None:
        save["xmp"] = xmp.encode("utf-8")
    im.save(path, **save)
    return path


def exif_with(comment: Optional[bytes] = None, description=None) -> Image.Exif:
    exif = Image.Exif()
    if description is not None:
        exif[0x010E] = description
    if comment is not None:
        exif.get_ifd(0x8769)[0x9286] = comment
    return exif


def xmp_packet(body: str) -> str:
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
            '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f'{body}</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')


# --- caption files -------------------------------------------------------------------------------

def test_same_stem_txt(tmp_path):
    p = page(tmp_path)
    (tmp_path / "image.txt").write_text("1girl, long hair ,, smile,\n1girl\n", encoding="utf-8")
    assert existing_caption(p) == ExistingCaption(("1girl", "long hair", "smile"), ("image.txt",))


def test_suffix_captions_in_order(tmp_path):
    p = page(tmp_path)
    (tmp_path / "image_tags.txt").write_text("c, a", encoding="utf-8")
    (tmp_path / "image_main.txt").write_text("a", encoding="utf-8")
    (tmp_path / "image_alt.txt").write_text("b, A", encoding="utf-8")  # `A` is `a` again
    (tmp_path / "image_other.txt").write_text("nope", encoding="utf-8")
    got = existing_caption(p)
    assert got.tags == ("a", "b", "c")
    assert got.sources == ("image_main.txt", "image_alt.txt", "image_tags.txt")


@pytest.mark.parametrize("role", ["source", "target", "cref", "mask"])
def test_grouped_pairs(tmp_path, role):
    p = page(tmp_path, f"pair01_{role}.jpg")
    (tmp_path / "pair01_instruction.txt").write_text("make her smile", encoding="utf-8")
    (tmp_path / "pair01.txt").write_text("1girl, smile", encoding="utf-8")
    (tmp_path / "pair02_instruction.txt").write_text("other pair", encoding="utf-8")
    got = existing_caption(p)
    assert got.tags == ("make her smile", "1girl", "smile")
    assert got.sources == ("pair01_instruction.txt", "pair01.txt")


def test_grouped_pair_needs_a_base(tmp_path):
    (tmp_path / "_instruction.txt").write_text("x", encoding="utf-8")
    assert existing_caption(page(tmp_path, "_source.png")) is None


def test_bom_and_not_utf8(tmp_path):
    p = page(tmp_path)
    (tmp_path / "image.txt").write_bytes("\ufeffsmile, 笑顔".encode())
    assert existing_caption(p).tags == ("smile", "笑顔")
    (tmp_path / "image.txt").write_bytes("笑顔".encode("shift_jis"))
    with pytest.raises(CaptionError) as e:
        existing_caption(p)
    assert str(tmp_path / "image.txt") in str(e.value) and "UTF-8" in str(e.value) and "\n" not in str(e.value)


def test_nothing_missing_page_and_empty_file(tmp_path):
    p = page(tmp_path)
    assert existing_caption(p) is None
    (tmp_path / "image.txt").write_text(" , \n", encoding="utf-8")
    assert existing_caption(p) is None
    (tmp_path / "moved.txt").write_text("smile", encoding="utf-8")
    assert existing_caption(tmp_path / "moved.png") is None  # the page is gone: export goes on


def test_unreadable_image_still_has_its_file_caption(tmp_path):
    p = tmp_path / "broken.png"
    p.write_bytes(b"\x89PNG not really")
    (tmp_path / "broken.txt").write_text("smile", encoding="utf-8")
    assert existing_caption(p) == ExistingCaption(("smile",), ("broken.txt",))


# --- captions in the image -----------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    b"ASCII\0\0\0" + b"1girl, smile",
    b"ASCII\0\0\0" + "1girl, smile".encode() + b"\0\0",
    b"UNICODE\0" + "1girl, smile".encode("utf-16-be"),
    b"UNICODE\0" + "1girl, smile".encode("utf-16-le"),
    b"UNICODE\0" + "1girl, smile".encode("utf-16"),  # with a BOM
    b"\0" * 8 + b"1girl, smile",  # undefined charset
])
@pytest.mark.parametrize("name", ["image.jpg", "image.png", "image.webp"])
def test_exif_user_comment(tmp_path, raw, name):
    got = existing_caption(page(tmp_path, name, exif=exif_with(comment=raw)))
    assert got == ExistingCaption(("1girl", "smile"), ("exif:UserComment",))


def test_exif_user_comment_japanese(tmp_path):
    jis = existing_caption(page(tmp_path, "a.jpg", exif=exif_with(comment=b"JIS\0\0\0\0\0" + "少女, 笑顔".encode("iso2022_jp"))))
    sjis = existing_caption(page(tmp_path, "b.jpg", exif=exif_with(comment=b"JIS\0\0\0\0\0" + "少女, 笑顔".encode("cp932"))))
    uni = existing_caption(page(tmp_path, "c.jpg", exif=exif_with(comment=b"UNICODE\0" + "少女, 笑顔".encode("utf-16-le"))))
    assert jis.tags == sjis.tags == uni.tags == ("少女", "笑顔")


def test_exif_image_description(tmp_path):
    p = page(tmp_path, "image.jpg", exif=exif_with(description="café, smile".encode(), comment=b"ASCII\0\0\0smile, hat"))
    got = existing_caption(p)
    assert got.tags == ("smile", "hat", "café")
    assert got.sources == ("exif:UserComment", "exif:ImageDescription")


@pytest.mark.parametrize("name", ["image.jpg", "image.png", "image.webp"])
def test_xmp_description_and_subject(tmp_path, name):
    xmp = xmp_packet('<dc:description><rdf:Alt><rdf:li xml:lang="ja">少女</rdf:li>'
                     '<rdf:li xml:lang="x-default">a girl, smiling &amp; waving</rdf:li></rdf:Alt></dc:description>'
                     '<dc:subject><rdf:Bag><rdf:li>1girl</rdf:li><rdf:li>long_hair, smile</rdf:li></rdf:Bag></dc:subject>')
    got = existing_caption(page(tmp_path, name, xmp=xmp))
    assert got.tags == ("a girl", "smiling & waving", "1girl", "long_hair", "smile")
    assert got.sources == ("xmp:dc:description", "xmp:dc:subject")


def test_xmp_attribute_form_and_broken_packet(tmp_path):
    attr = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:description="solo, smile"/>'
            '</rdf:RDF></x:xmpmeta>')
    assert existing_caption(page(tmp_path, "a.jpg", xmp=attr)).tags == ("solo", "smile")
    broken = xmp_packet("<dc:subject><rdf:Bag><rdf:li>1girl</rdf:li><rdf:li>hat</rdf:li></rdf:Bag></dc:subject>")[:-60]
    got = existing_caption(page(tmp_path, "b.jpg", xmp=broken))
    assert got == ExistingCaption(("1girl", "hat"), ("xmp:dc:subject",))


def test_xmp_entities_are_not_expanded(tmp_path):
    evil = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
            + xmp_packet("<dc:subject><rdf:Bag><rdf:li>&b;</rdf:li><rdf:li>smile</rdf:li></rdf:Bag></dc:subject>"))
    assert existing_caption(page(tmp_path, "a.jpg", xmp=evil)).tags == ("&b;", "smile")


def test_files_then_embedded(tmp_path):
    p = page(tmp_path, "image.jpg", exif=exif_with(comment=b"ASCII\0\0\0long hair, hat"),
             xmp=xmp_packet("<dc:subject><rdf:Bag><rdf:li>red eyes</rdf:li></rdf:Bag></dc:subject>"))
    (tmp_path / "image.txt").write_text("1girl, long_hair", encoding="utf-8")
    got = existing_caption(p)
    assert got.tags == ("1girl", "long_hair", "hat", "red eyes")  # `long hair` is `long_hair` again
    assert got.sources == ("image.txt", "exif:UserComment", "xmp:dc:subject")


# --- merge ---------------------------------------------------------------------------------------

def test_merge_modes():
    existing = ExistingCaption(("smile", "hat", "red eyes"), ("image.txt",))
    generated = ["1girl", "red_eyes"]
    assert merge(generated, existing, "replace") == ["smile", "hat", "red eyes"]
    assert merge(generated, existing, "add") == ["1girl", "red_eyes", "smile", "hat"]
    assert merge(generated, existing, "skip") == ["1girl", "red_eyes"]
    for mode in ("replace", "add", "skip"):
        assert merge(generated, None, mode) == generated
    with pytest.raises(ValueError):
        merge(generated, existing, "keep")


# --- tag dictionary ------------------------------------------------------------------------------

def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tags.yaml"
    path.write_text(text, encoding="utf-8")
    return path


DICT = """
aliases:
  1girl: [one girl, 1 girl]
  long hair: [long-hair]
groups:
  framing: [full_body, upper body]
  quality: [masterpiece, best quality]
  people: [one girl]
blacklist: [watermark, speech_bubble]
"""


def test_apply_aliases_groups_blacklist(tmp_path):
    d = TagDictionary.load(write(tmp_path, DICT))
    tags = ["masterpiece", "One_Girl", "long-hair", "Long_Hair", "upper_body", "Speech Bubble", "watermark",
            "hat_\\(object\\)", "^_^", "1girl"]
    assert d.apply(tags) == ["masterpiece", "1girl", "long hair", "upper body", "hat \\(object\\)", "^_^"]
    assert d.apply(tags, underscores=True) == ["masterpiece", "1girl", "long_hair", "upper_body",
                                               "hat_\\(object\\)", "^_^"]
    assert d.apply(tags, drop_groups=["quality", "framing"]) == ["1girl", "long hair", "hat \\(object\\)", "^_^"]
    assert d.apply(["1 girl", "solo"], drop_groups=["people"]) == ["solo"]  # a group's alias is its canonical
    assert d.apply(["hat (object)", "hat_\\(object\\)"]) == ["hat (object)"]  # escaped or not: one tag


def test_unknown_group_lists_known(tmp_path):
    d = TagDictionary.load(write(tmp_path, DICT))
    with pytest.raises(ConfigError, match=r"'colour'.*known: framing, people, quality"):
        d.apply(["a"], drop_groups=["colour"])
    with pytest.raises(ConfigError, match="known: none"):
        TagDictionary.empty().apply(["a"], drop_groups=["quality"])


def test_empty_dictionary(tmp_path):
    assert TagDictionary.empty().apply(["a_b", "A B", " ", "c"]) == ["a b", "c"]
    assert TagDictionary.load(write(tmp_path, "groups:\nblacklist:\n")).apply(["x"]) == ["x"]
    assert TagDictionary.load(write(tmp_path, "")).apply(["x"]) == ["x"]


@pytest.mark.parametrize("text, where", [
    ("aliases:\n  a: [x]\n  b: [X]\n", "aliases.b: 'X' is already listed under 'a'"),
    ("aliases:\n  a: [x]\n  x: [y]\n", "aliases.a: 'x' is already listed under 'x'"),
    ("aliases:\n  long_hair: [a]\n  long hair: [b]\n", "aliases.long hair: already listed under 'long_hair'"),
    ("aliases:\n  a: [' ']\n", "aliases.a: an empty alias"),
    ("aliases:\n  a: x\n", "aliases.a: Input should be a valid list"),
    ("blacklist: [yes]\n", "blacklist.0: Input should be a valid string"),
    ("groups:\n  g: ['']\n", "groups.g: an empty tag"),
    ("colours: [a]\n", "colours: unknown key"),
    ("- a\n", "top level must be a mapping"),
    ("aliases: [\n", "not valid YAML"),
])
def test_bad_dictionary(tmp_path, text, where):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        TagDictionary.load(path)
    assert str(e.value).startswith(f"{path}: ") and where in str(e.value) and "\n" not in str(e.value)


def test_missing_dictionary(tmp_path):
    with pytest.raises(ConfigError, match="no such tag dictionary"):
        TagDictionary.load(tmp_path / "nope.yaml")


def test_example_dictionary_loads():
    d = TagDictionary.load(ROOT / "docs" / "tags.example.yaml")
    assert set(d.groups) == {"framing", "quality", "rating"}
    assert d.apply(["one girl", "watermark", "best_quality", "cowboy shot", "closeup"], drop_groups=["quality"]) \
        == ["1girl", "cowboy shot", "close-up"]


def test_caption_text_and_normalise():
    assert caption_text("kirinuki_chara", ["1girl", "kirinuki chara", "smile"]) == "kirinuki_chara, 1girl, smile"
    assert caption_text("mychar", []) == "mychar"
    assert normalise("  Long_Hair ") == normalise("long  hair") == "long hair"
    assert normalise("hat_\\(object\\)") == "hat (object)"
