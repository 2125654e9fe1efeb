"""Task-agnostic machinery shared by every group: config, run folders, sources, the engine."""
