"""Griffe extension: the package's docstrings write doctests under ``Example:``; griffe's Google
parser reads only ``Examples:`` as code examples (the singular becomes a plain admonition, whose
``>>>`` lines then render as Markdown text). Read both the same way."""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class DoctestExamples(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
