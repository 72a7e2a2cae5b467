"""Channelkit's generator: channels.yaml → a typed Python package.

`generate()` is the entry point; `runtime generate` is its command line.
"""

from generator.errors import ConfigError, GeneratorError, Problem, StaleOutputError
from generator.pipeline import GenerationReport, generate

__all__ = [
    "ConfigError",
    "GenerationReport",
    "GeneratorError",
    "Problem",
    "StaleOutputError",
    "generate",
]
