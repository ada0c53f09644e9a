"""Which runtime images a ModelDeployment may run: the operator's ``allowedImages`` (pure).

A pattern is an image reference in which ``*`` matches any run of characters (``/`` included), and
nothing else is special: ``registry.example.com/models/*`` allows every image under that path,
``registry.example.com/runtime:1.2`` exactly that one. The chart's ValidatingAdmissionPolicy turns
the same patterns into the same regular expressions, so the API server and the operator agree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from modeldeploy_operator.model import ModelDeployment


def pattern_regex(pattern: str) -> str:
    """The anchored regular expression of one pattern (``*`` -> ``.*``, everything else literal)."""
    return "^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$"


def image_allowed(image: str, patterns: Sequence[str]) -> bool:
    """Whether ``image`` matches one of ``patterns``; an empty list allows every image."""
    return not patterns or any(re.fullmatch(pattern_regex(pattern), image) for pattern in patterns)


def disallowed_image_message(md: ModelDeployment, patterns: Sequence[str]) -> str | None:
    """Why ``md`` may not run, naming the field and the allowed patterns; None when it may.

    Only spec.runtime.image is checked: the operator's own runtime image is the administrator's choice.
    """
    image = md.spec.runtime.image
    if image is None or image_allowed(image, patterns):
        return None
    return (
        f"spec.runtime.image {image!r} is not allowed by the operator's allowedImages: {', '.join(patterns)}"
    )
