"""Generation: prompt templates, generator backends and the embedded offline models.

Example:
    >>> from rulerag.generation import FixedBackend, rulerag_prompt, postprocess_answer
    >>> gen = FixedBackend("Norland.")
    >>> postprocess_answer(gen.generate(rulerag_prompt("Which country?", ["A born in Norland."], []),
    ...                                 max_new_tokens=8))
    'Norland'
"""

from rulerag.generation.backends import (
    FixedBackend,
    Generator,
    OpenAIBackend,
    TransformersBackend,
    make_backend,
)
from rulerag.generation.models import (
    DEFAULT_GENERATOR,
    MODELS,
    EmbeddedModel,
    cache_root,
    model_cache_dir,
    resolve_generator,
)
from rulerag.generation.prompts import (
    PROMPT_VERSION,
    Prompt,
    echoes_prompt,
    postprocess_answer,
    refine_prompt,
    rulerag_prompt,
    standard_prompt,
)

__all__ = [
    "DEFAULT_GENERATOR",
    "MODELS",
    "PROMPT_VERSION",
    "EmbeddedModel",
    "FixedBackend",
    "Generator",
    "OpenAIBackend",
    "Prompt",
    "TransformersBackend",
    "cache_root",
    "echoes_prompt",
    "make_backend",
    "model_cache_dir",
    "postprocess_answer",
    "refine_prompt",
    "resolve_generator",
    "rulerag_prompt",
    "standard_prompt",
]
