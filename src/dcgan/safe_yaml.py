"""Config YAML read as plain data, as written: no code, no alias bombs, no duplicate keys, and no
YAML 1.1 reinterpretation of the text.

`load(text)` is `yaml.safe_load` with three refusals and one change:

- aliases may expand the document to at most `MAX_NODES` values (a 300-byte "billion laughs"
  file expands to hundreds of millions) and may not refer to themselves;
- a key given twice in one mapping (`train:` twice, or `batch_size:` twice in a section) is
  refused, naming the key and both lines: YAML would silently keep the last one;
- plain (unquoted) scalars are not typed by YAML 1.1's rules, which read `010` as 8 (octal),
  `1:30` as 5400 (sexagesimal) and `yes`/`no`/`on`/`off` as booleans. They load as `YamlText`:
  the text the user wrote (a `str`), with `implied` holding what YAML 1.1 would have made of it.
  The config schema then types the text (`dcgan.config._apply`), exactly like a `--set` value.
  Only `~`, `null` and an empty value still load as None.

A refusal raises `YamlRefused` with a one-line message (without the file name).
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_NODES = 10_000  # values a config may expand to through aliases; a full config has about 70
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_NULL = "tag:yaml.org,2002:null"


class YamlRefused(ValueError):
    """A YAML document this loader refuses (alias bomb, recursive alias, duplicate key)."""


class YamlText(str):
    """A plain YAML scalar: its text, as written; `implied` is what YAML 1.1 would have read."""

    implied: Any


_YAML11 = yaml.resolver.Resolver()  # YAML 1.1's implicit typing, only to compute `implied`


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps plain scalars as text and refuses bombs and duplicate keys."""

    def compose_document(self) -> Node:
        node = super().compose_document()
        _check_expansion(node)
        return node

    def construct_mapping(self, node: Node, deep: bool = False) -> dict:
        if isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE:
                    continue
                line = key_node.start_mark.line + 1
                if key_node.value in seen:
                    raise YamlRefused(f"has the key {_short(key_node.value)!r} twice (lines {seen[key_node.value]} "
                                      f"and {line}); YAML would keep only the last: remove one")
                seen[key_node.value] = line
        return super().construct_mapping(node, deep)

    def construct_yaml_str(self, node: Node) -> str:
        text = self.construct_scalar(node)
        if not isinstance(node, ScalarNode) or node.style is not None:  # quoted or block: text for sure
            return text
        out = YamlText(text)
        tag = _YAML11.resolve(ScalarNode, text, (True, False))
        if tag in (_STR, _NULL, _MERGE) or tag not in self.yaml_constructors:
            out.implied = text
        else:
            try:
                out.implied = self.yaml_constructors[tag](self, ScalarNode(tag, text))
            except Exception:  # noqa: BLE001 - e.g. a date that is not one: then it is text
                out.implied = text
        return out


# Plain scalars resolve to str (then YamlText), except the null forms and the merge key `<<`.
_Loader.yaml_implicit_resolvers = {}
_Loader.add_implicit_resolver(_NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
_Loader.add_implicit_resolver(_MERGE, re.compile(r"^(?:<<)$"), ["<"])
_Loader.add_constructor(_STR, _Loader.construct_yaml_str)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _check_expansion(root: Node | None) -> None:
    """Refuse a node graph that expands (aliases followed) to more than MAX_NODES values, or
    that contains itself. Iterative: the graph may be deep."""
    if root is None:
        return
    size: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            total = 1 + sum(size[id(c)] for c in _children(node))
            if total > MAX_NODES:
                raise YamlRefused(f"expands to more than {MAX_NODES} values through its aliases (&name/*name); "
                                  "a config holds a few dozen: write the values out")
            size[key] = total
            continue
        if key in size:
            continue
        if key in active:
            raise YamlRefused(f"has an alias that refers to itself (line {node.start_mark.line + 1}); "
                              "a config holds plain values: remove the alias")
        active.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in active:
                raise YamlRefused(f"has an alias that refers to itself (line {child.start_mark.line + 1}); "
                                  "a config holds plain values: remove the alias")
            if id(child) not in size:
                stack.append((child, False))


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load(text: str | bytes) -> Any:
    """The YAML document in `text` as plain data (see the module docstring); raises YamlRefused,
    yaml.YAMLError or RecursionError."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
