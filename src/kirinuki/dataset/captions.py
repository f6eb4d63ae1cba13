"""Captions that already exist for a source page, and how they join the generated tags.

Users bring pages that are captioned already, in one of the ways training tools read them:
a caption file beside the page (`image.txt`), suffixed ones (`image_main.txt`,
`image_alt.txt`, `image_tags.txt`), grouped edit pairs (`{base}_source.png` ... with
`{base}_instruction.txt`), or text in the image itself (EXIF UserComment / ImageDescription,
XMP dc:description / dc:subject). All of them found are read, in that order.
"""
from __future__ import annotations

import html
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Optional

from PIL import Image

from kirinuki.dataset.tags import normalise

SUFFIX_CAPTIONS = ("_main", "_alt", "_tags")
GROUP_ROLES = ("_source", "_target", "_cref", "_mask")  # a page `{base}{role}.*` of a grouped pair

TAG_IMAGE_DESCRIPTION = 0x010E
TAG_XMP = 0x02BC  # TIFF keeps its XMP packet here rather than in img.info
IFD_EXIF = 0x8769
TAG_USER_COMMENT = 0x9286

DC = "{http://purl.org/dc/elements/1.1/}"
RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


class CaptionError(ValueError):
    """A caption file that cannot be read; str() names the file and the reason."""


@dataclass(frozen=True)
class ExistingCaption:
    tags: tuple[str, ...]  # comma-separated parts, in the order found, each once
    sources: tuple[str, ...]  # where they came from: 'image.txt', 'exif:UserComment', 'xmp:dc:subject', ...


def split_tags(text: str) -> list[str]:
    """Comma- (or line-) separated parts, stripped, empty ones dropped."""
    return [part.strip() for part in re.split(r"[,\r\n]", text) if part.strip()]


def _read_caption_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # a BOM written by Windows editors is no tag
    except UnicodeDecodeError as e:
        raise CaptionError(f"{path}: not UTF-8 text (byte {e.start}); save the caption as UTF-8") from None
    except OSError as e:
        raise CaptionError(f"{path}: cannot read ({e.strerror or e})") from None


def caption_files(page: Path) -> list[Path]:
    """The caption files that exist for `page`, in reading order."""
    stem = page.stem
    names = [f"{stem}.txt"] + [f"{stem}{s}.txt" for s in SUFFIX_CAPTIONS]
    for role in GROUP_ROLES:
        if stem.endswith(role) and len(stem) > len(role):
            base = stem[: -len(role)]
            names += [f"{base}_instruction.txt", f"{base}.txt"]
            break
    return [page.with_name(n) for n in names if page.with_name(n).is_file()]


def _user_comment(raw) -> str:
    """EXIF UserComment: an 8-byte charset code, then the text in that charset."""
    if isinstance(raw, str):
        return raw
    raw = bytes(raw)
    code, body = raw[:8], raw[8:]
    if code.startswith(b"UNICODE"):
        if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return body.decode("utf-16", errors="replace")
        # no BOM: mostly-ASCII UCS-2 has its zero bytes on the high side, which tells the order
        big = body[0::2].count(0) >= body[1::2].count(0)
        return body.decode("utf-16-be" if big else "utf-16-le", errors="replace")
    if code.startswith(b"JIS"):
        for enc in ("iso2022_jp", "cp932"):
            try:
                return body.decode(enc)
            except UnicodeDecodeError:
                pass
        return body.decode("cp932", errors="replace")
    if not code.startswith(b"ASCII") and code.strip(b"\0 "):
        body = raw  # no charset code at all: some writers put the bare text here
    return _utf8_or_latin1(body)


def _utf8_or_latin1(data: bytes) -> str:
    # many writers put UTF-8 where EXIF says ASCII; anything else is read byte for byte
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _exif_text(value) -> str:
    if isinstance(value, bytes):
        return _utf8_or_latin1(value)
    if isinstance(value, str):
        try:  # Pillow decodes EXIF strings as latin-1: undo that where the bytes were UTF-8
            return value.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return value
    return ""


def _xmp_values(xmp: bytes) -> list[tuple[str, str]]:
    """(source, text) of dc:description and dc:subject in an XMP packet."""
    text = _utf8_or_latin1(xmp).strip("\0 \t\r\n\ufeff")
    found: list[tuple[str, str]] = []
    if "<!DOCTYPE" not in text and "<!ENTITY" not in text:  # no entity expansion from a page's metadata
        try:
            root = ET.fromstring(text)
        except ET.ParseError:
            root = None
        if root is not None:
            for name in ("description", "subject"):
                for el in root.iter():
                    value = el.get(DC + name)  # the short form: an attribute of rdf:Description
                    if value:
                        found.append((f"xmp:dc:{name}", value))
                    if el.tag == DC + name:
                        found += [(f"xmp:dc:{name}", item) for item in _items(el) if item.strip()]
            return found
    # not well-formed XML (truncated packets are common): take the rdf:li items by pattern
    for name in ("description", "subject"):
        found += [(f"xmp:dc:{name}", html.unescape(v)) for v in re.findall(rf'\bdc:{name}="([^"]*)"', text)]
        for block in re.findall(rf"<dc:{name}\b[^>]*>(.*?)(?:</dc:{name}>|\Z)", text, re.DOTALL):
            lis = re.findall(r"<rdf:li\b([^>]*)>(.*?)</rdf:li>", block, re.DOTALL)
            items = [t for _, t in lis] or [block]
            if "<rdf:Alt" in block and lis:  # one of the language alternatives, as _items takes it
                items = ([t for a, t in lis if "x-default" in a] or items)[:1]
            found += [(f"xmp:dc:{name}", html.unescape(item)) for item in items if item.strip()]
    return found


def _items(el: ET.Element) -> list[str]:
    """The values of a dc property: a Bag/Seq's items, one of an Alt's (the same text in other
    languages: x-default, else the first), or the element's own text."""
    if el.find(RDF + "Alt") is not None:
        alts = list(el.iter(RDF + "li"))
        default = [li for li in alts if li.get(XML_LANG) == "x-default"]
        return [(default or alts)[0].text or ""] if alts else []
    return [li.text or "" for li in el.iter(RDF + "li")] or [el.text or ""]


def embedded_captions(page: Path) -> list[tuple[str, str]]:
    """(source, text) of the captions stored in the image file. Best effort: metadata that
    cannot be parsed is no caption (the page itself was readable for extraction)."""
    found: list[tuple[str, str]] = []
    try:
        with warnings.catch_warnings():  # a huge page is no concern here: only its metadata is read
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(page)
        with im:
            exif = im.getexif()
            comment = exif.get_ifd(IFD_EXIF).get(TAG_USER_COMMENT)
            if comment:
                found.append(("exif:UserComment", _user_comment(comment)))
            description = _exif_text(exif.get(TAG_IMAGE_DESCRIPTION))
            if description:
                found.append(("exif:ImageDescription", description))
            xmp = im.info.get("xmp") or exif.get(TAG_XMP)
            if isinstance(xmp, str):
                xmp = xmp.encode("utf-8")
            if isinstance(xmp, (bytes, bytearray)):
                found += _xmp_values(bytes(xmp))
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, Image.DecompressionBombError):
        pass  # damaged metadata: what was read before it still counts
    return [(source, text.strip("\0 \t\r\n")) for source, text in found if text.strip("\0 \t\r\n")]


def existing_caption(page: Path) -> Optional[ExistingCaption]:
    """Every caption found for the source page `page`; None where there is none, or no page."""
    page = Path(page)
    if not page.is_file():
        return None  # the page may have moved since extraction: the export goes on without
    found = [(p.name, _read_caption_file(p)) for p in caption_files(page)] + embedded_captions(page)
    tags: list[str] = []
    seen: set[str] = set()
    sources: list[str] = []
    for source, text in found:
        parts = split_tags(text)
        if not parts:
            continue  # an empty caption file is no source
        if source not in sources:
            sources.append(source)
        for tag in parts:
            if normalise(tag) not in seen:
                seen.add(normalise(tag))
                tags.append(tag)
    return ExistingCaption(tuple(tags), tuple(sources)) if tags else None


def merge(generated: Iterable[str], existing: Optional[ExistingCaption],
          mode: Literal["replace", "add", "skip"]) -> list[str]:
    """The caption tags under export.existing_captions `mode`: replace (the existing ones,
    where there are any), add (generated, then existing ones not among them), skip (generated)."""
    generated = list(generated)
    if mode not in ("replace", "add", "skip"):
        raise ValueError(f"{mode!r}: not an existing_captions mode (replace, add, skip)")
    if existing is None or mode == "skip":
        return generated
    if mode == "replace":
        return list(existing.tags) if existing.tags else generated
    have = {normalise(t) for t in generated}
    return generated + [t for t in existing.tags if normalise(t) not in have]
