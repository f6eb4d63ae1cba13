"""The tag dictionary (export.tags, YAML) applied to every caption at export.

    aliases:   {canonical: [alias, ...]}   # one_girl, 1 girl -> 1girl
    groups:    {group: [tag, ...]}         # export.drop_groups leaves whole groups out
    blacklist: [tag, ...]                  # never in a caption

Tags compare normalised: case, surrounding space, underscore-or-space and booru's escaped
parentheses (`\\(`) do not matter, so `Long_Hair` is `long hair`. docs/tags.example.yaml is an example.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from pydantic import Field, field_validator

from kirinuki.core.config import ConfigError, Section, _load_yaml_model

# emoticon tags whose underscore is part of the face: never written with a space
KAOMOJI = frozenset({"0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3",
                     "6_9", ">_o", "@_@", "^_^", "o_o", "u_u", "x_x", "|_|", "||_||"})


def normalise(tag: str) -> str:
    """The form tags are compared in: lower-case, `_` as space, `\\(` as `(`, single spaces."""
    t = tag.strip().lower().replace("_", " ").replace("\\(", "(").replace("\\)", ")")
    return " ".join(t.split())


_KAOMOJI_KEYS = frozenset(normalise(k) for k in KAOMOJI)


def write_tag(tag: str, underscores: bool) -> str:
    """`tag` as a caption writes it: words joined by `_` (underscores) or by spaces."""
    t = " ".join(tag.split())
    if normalise(t) in _KAOMOJI_KEYS:
        return t
    return t.replace(" ", "_") if underscores else t.replace("_", " ")


class TagFile(Section):
    """The YAML file as written; TagDictionary.load checks what a schema cannot."""
    aliases: dict[str, list[str]] = Field(default_factory=dict)
    groups: dict[str, list[str]] = Field(default_factory=dict)
    blacklist: list[str] = Field(default_factory=list)

    @field_validator("aliases", "groups", "blacklist", mode="before")
    @classmethod
    def _blank_is_empty(cls, v, info):
        if v is None:  # a key with nothing under it, as a template leaves it
            return [] if info.field_name == "blacklist" else {}
        return v


@dataclass(frozen=True)
class TagDictionary:
    path: Optional[Path] = None  # the file it came from; None: the empty dictionary
    aliases: dict[str, str] = field(default_factory=dict)  # normalised alias -> canonical tag as written
    groups: dict[str, frozenset[str]] = field(default_factory=dict)  # group -> normalised canonical tags
    blacklist: frozenset[str] = frozenset()  # normalised canonical tags

    @classmethod
    def empty(cls) -> "TagDictionary":
        return cls()

    @classmethod
    def load(cls, path: Path) -> "TagDictionary":
        """The dictionary in `path`; a ConfigError names the file and the key of a bad entry."""
        path = Path(path)
        raw: TagFile = _load_yaml_model(path, TagFile, "tag dictionary (export.tags)")
        aliases: dict[str, str] = {}
        owner: dict[str, str] = {}  # normalised tag -> the canonical entry it belongs to
        for canonical in raw.aliases:
            key = normalise(canonical)
            if not key:
                raise ConfigError(f"{path}: aliases: an empty canonical tag")
            if key in owner:
                raise ConfigError(f"{path}: aliases.{canonical}: already listed under {owner[key]!r}")
            owner[key] = canonical
        for canonical, names in raw.aliases.items():
            for alias in names:
                key = normalise(alias)
                if not key:
                    raise ConfigError(f"{path}: aliases.{canonical}: an empty alias")
                if owner.get(key, canonical) != canonical:
                    raise ConfigError(f"{path}: aliases.{canonical}: {alias!r} is already listed under "
                                      f"{owner[key]!r} (a tag has one canonical form)")
                owner[key] = canonical
                aliases[key] = canonical

        def canon(tag: str, key: str) -> str:
            if not normalise(tag):
                raise ConfigError(f"{path}: {key}: an empty tag")
            return normalise(aliases.get(normalise(tag), tag))  # an alias listed here means its canonical

        groups = {name: frozenset(canon(t, f"groups.{name}") for t in tags) for name, tags in raw.groups.items()}
        blacklist = frozenset(canon(t, "blacklist") for t in raw.blacklist)
        return cls(path, aliases, groups, blacklist)

    def apply(self, tags: Iterable[str], drop_groups: Iterable[str] = (), underscores: bool = False) -> list[str]:
        """`tags` in their canonical forms, less blacklisted and dropped-group ones, each once
        (the first kept), in order, written with underscores or spaces."""
        drop = list(drop_groups)
        unknown = [g for g in drop if g not in self.groups]
        if unknown:
            where = str(self.path) if self.path else "the tag dictionary (export.tags names none)"
            raise ConfigError(f"export.drop_groups: {', '.join(map(repr, unknown))}: no such group in {where} "
                              f"(known: {', '.join(sorted(self.groups)) or 'none'})")
        removed = set(self.blacklist).union(*(self.groups[g] for g in drop))
        out: list[str] = []
        seen: set[str] = set()
        for tag in tags:
            tag = self.aliases.get(normalise(tag), tag)
            key = normalise(tag)
            if key and key not in removed and key not in seen:
                seen.add(key)
                out.append(write_tag(tag, underscores))
        return out


def caption_text(trigger: str, tags: Iterable[str]) -> str:
    """The caption line: the trigger word first, then the tags (the trigger not again)."""
    trigger = trigger.strip()
    return ", ".join([trigger] + [t.strip() for t in tags if t.strip() and normalise(t) != normalise(trigger)])
