"""A group adds its own sections through `<package>.report:report_sections(run)`, found from the group's
entry point the way the CLI finds groups; the report module is never edited for it."""

import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest
from report_page import decode_png, parse_page

from dlkit.report import build

HOOK = """
from dlkit.report import Image, Section, Table, Text, generic_sections


def report_sections(run):
    metrics = run.read_metrics()
    return [
        Section("Before and after", [Table([{"prompt": "سلام", "before": "hi", "after": "درود"}]),
                                     Text("answers are greedy", caption="decoding")]),
        Section("Attention", [Image(run.plots_dir / "confusion_matrix.png", "attention heatmap"),
                              Image(run.plots_dir / "attention_not_drawn.png", "missing")]),
        Section("Score", [Text(f"final val_loss {metrics['val_loss']:.3f}")]),
    ]
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A third-party group `beta` whose CLI module is myplugin.cli, with a report hook beside it."""
    package = tmp_path / "myplugin"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "cli.py").write_text("app = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = [EntryPoint(name="beta", value="myplugin.cli:app", group="dlkit.groups")]
    monkeypatch.setattr(build, "entry_points", lambda group: fake if group == "dlkit.groups" else [])
    yield package
    for name in [m for m in sys.modules if m.startswith("myplugin")]:
        del sys.modules[name]


def test_the_group_hook_replaces_the_generic_sections(cli, sweep, plugin, tmp_path):
    (plugin / "report.py").write_text(textwrap.dedent(HOOK), encoding="utf-8")
    result = cli("report", sweep, "-o", tmp_path / "r.html")
    assert result.exit_code == 0, result.stderr
    page = parse_page((tmp_path / "r.html").read_text(encoding="utf-8"))
    beta = page.headings[page.headings.index("beta") :]
    assert beta[:4] == ["beta", "Comparison", "Loss curves", "Run probe"]
    assert beta[4:] == ["Before and after", "Attention", "Score"]  # the hook's, instead of the generic ones
    assert "Figures" in page.headings  # alpha has no hook: generic sections
    assert "درود" in "".join(page.rtl_text)
    assert all(decode_png(src) for src in page.images)
    assert "plots/attention_not_drawn.png: missing or not a PNG file" in (tmp_path / "r.html").read_text()


def test_without_a_report_module_the_generic_sections_are_used(plugin):
    assert build.report_hook("beta") is None
    assert build.report_hook("alpha") is None  # no entry point at all


@pytest.mark.parametrize(
    "body, error",
    [
        ("raise KeyError('attention_maps')", "KeyError"),
        ("return [Section('x', ['a string is not a part'])]", "TypeError"),
    ],
)
def test_a_failing_hook_is_reported_and_the_generic_sections_used(cli, sweep, plugin, tmp_path, body, error):
    (plugin / "report.py").write_text(f"from dlkit.report import Section\n\n\ndef report_sections(run):\n    {body}\n")
    result = cli("report", sweep / "beta", "-o", tmp_path / "r.html")
    assert result.exit_code == 0, result.stderr
    assert "the beta report hook failed" in result.stderr and error in result.stderr
    page = parse_page((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert "Report hook failed" in page.headings and "Figures" in page.headings


def test_a_report_module_that_cannot_import_is_reported(cli, sweep, plugin, tmp_path):
    (plugin / "report.py").write_text("import no_such_module_here\n")
    result = cli("report", sweep / "beta", "-o", tmp_path / "r.html")
    assert result.exit_code == 0, result.stderr
    assert "myplugin.report cannot be imported" in result.stderr
    assert "Figures" in parse_page((tmp_path / "r.html").read_text(encoding="utf-8")).headings
