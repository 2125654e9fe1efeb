"""`dlkit report`: one self-contained HTML (or Markdown) report from run folders of any group.

A group adds its own sections with a `report` module beside its CLI module (`dlkit.llm.report` for
the entry point `dlkit.llm.cli:app`) that defines `report_sections(run: Run) -> list[Section]`;
groups without one get `generic_sections(run)`, built from whatever the run folder holds.
"""

from dlkit.report.generic import generic_sections
from dlkit.report.sections import Image, Section, Table, Text

__all__ = ["Image", "Section", "Table", "Text", "generic_sections"]
