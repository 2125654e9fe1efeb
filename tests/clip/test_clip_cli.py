"""The clip commands' flags as the README and the design card type them."""

from __future__ import annotations

import json


def test_zeroshot_help_shows_the_full_real_command(cli):
    result = cli("clip", "zeroshot", "--help")
    text = " ".join(result.stdout.split())
    assert result.exit_code == 0
    assert "dlkit clip zeroshot --model convnext_base --pretrained laion400m_s13b_b51k --data ~/dogs/test" in text


def test_retrieve_takes_output_dir_like_every_command(cli, tmp_path):
    assert "--output-dir" in cli("clip", "retrieve", "--help").stdout  # --output stays as an alias (chain test)
    out = tmp_path / "retrieved"
    result = cli(
        "--json",
        "clip",
        "retrieve",
        "--model",
        "builtin:tiny-clip",
        "--images",
        "builtin:shape-classes",
        "--query",
        "a red circle .",
        "-k",
        "2",
        "--output-dir",
        out,
    )
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)["results"]) == 2 and (out / "grid.png").is_file()
