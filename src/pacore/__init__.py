"""PaCoRe: Parallel Coordinated Reasoning."""

__version__ = "0.1.0"
