"""caddy-docker-proxy's labels-to-Caddyfile conversion, ported from its Go (d246679)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_ORDER = 2**31 - 1
_LABEL = re.compile(r"^(?:(.+)\.)?(?:(\d+)_)?([^.]+?)(?:_(\d+))?$")
_UPSTREAMS = re.compile(r"\{\{\s*upstreams\s+(\d+)\s*\}\}")


@dataclass(eq=False)
class Block:
    keys: list[str] = field(default_factory=list)
    children: list[Block] = field(default_factory=list)
    order: int = MAX_ORDER

    def first(self) -> str:
        return self.keys[0] if self.keys else ""


def _tokens(text: str) -> list[str]:
    found = re.findall(r'"((?:\\"|[^"])*)"|`([^`]*)`|(\S+)', text)
    return [quoted.replace('\\"', '"') or raw or word for quoted, raw, word in found]


def from_labels(labels: Mapping[str, str], upstreams: Mapping[int, str]) -> Block:
    """One container's `caddy*` labels as a Caddyfile tree (fromlabels.go)."""
    root = Block()
    by_path: dict[str, Block] = {}

    def block_for(path: str) -> Block:
        if path in by_path:
            return by_path[path]
        match = _LABEL.match(path.replace("\\.", "\x00"))
        assert match is not None, path
        parent, order, name = match.group(1) or "", match.group(2), match.group(3)
        block = Block(order=int(order) if order else MAX_ORDER)
        if parent:
            block.keys.append(name.replace("\x00", "."))
            block_for(parent.replace("\x00", "\\.")).children.append(block)
        else:
            root.children.append(block)
        by_path[path] = block
        return block

    for label, value in labels.items():
        if label == "caddy" or label.startswith(("caddy.", "caddy_")):
            text = _UPSTREAMS.sub(lambda m: upstreams[int(m.group(1))], value)
            block_for(label).keys.extend(_tokens(text))
    return root


def _matcher(block: Block) -> str:
    if len(block.keys) <= 1 or not _is_matcher(block.keys[1]):
        return "*"
    return block.keys[1]


def _is_matcher(value: str) -> bool:
    return value == "*" or value.startswith(("/", "@"))


def merge(into: Block, other: Block) -> None:
    """merge.go: equal blocks merge their children; reverse_proxy with one matcher, its keys."""
    for b in other.children:
        for a in [c for c in into.children if c.first() == b.first()]:
            if b.first() in {"reverse_proxy", "php_fastcgi"} and _matcher(a) == _matcher(b):
                for index, key in enumerate(b.keys[1:]):
                    if index > 0 or not _is_matcher(key):
                        a.keys.append(key)
                merge(a, b)
                break
            if a.keys == b.keys:
                merge(a, b)
                break
        else:
            into.children.append(b)


def _order(block: Block) -> tuple[Any, ...]:
    """Where a block sorts among its siblings (merge.go's compare)."""
    first = block.first()
    snippet = len(block.keys) == 1 and first.startswith("(") and first.endswith(")")
    flags = (bool(block.keys), not snippet, not first.startswith("@"))
    return (*flags, block.order, block.keys, [_order(child) for child in block.children])


def _sort(block: Block) -> None:
    for child in block.children:
        _sort(child)
    block.children.sort(key=_order)


def _word(key: str) -> str:
    if "\n" in key or '"' in key:
        return "`" + key.replace("`", "\\`") + "`"
    return f'"{key}"' if " " in key else key


def _lines(block: Block, level: int) -> list[str]:
    line = "\t" * level + " ".join(map(_word, block.keys))
    if not block.children:
        return [line]
    inner = [text for child in block.children for text in _lines(child, level + 1)]
    return [line + (" {" if block.keys else "{"), *inner, "\t" * level + "}"]


def caddyfile(containers: Iterable[Mapping[str, str]], upstreams: Mapping[int, str]) -> str:
    root = Block()
    for labels in containers:
        merge(root, from_labels(labels, upstreams))
    _sort(root)
    return "\n".join(text for child in root.children for text in _lines(child, 0)) + "\n"
