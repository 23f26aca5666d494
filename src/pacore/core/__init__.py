"""The pure core: prompts, compaction and planning, plain functions over plain data."""
