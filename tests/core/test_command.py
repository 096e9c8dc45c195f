"""The options every command spells alike, and the shared plot helpers."""

import click
import numpy as np
import pytest
from click.testing import CliRunner

from inkvoice import __version__
from inkvoice.core.command import CommaList, ProjectGroup, extraction_options, quiet_option, version_option
from inkvoice.core.errors import DependencyError
from inkvoice.core.extraction import ExtractionSettings


@click.group(cls=ProjectGroup)
@version_option("tool")
def tool():
    """A command family built from the shared options."""


@tool.command()
@click.option("--hidden", type=CommaList(int, minimum=1), default="64")
@extraction_options
@quiet_option
def run(hidden, extraction, quiet):
    click.echo(f"{hidden} {extraction.n_jobs} {extraction.cache} {quiet}")


def test_shared_options_reach_the_command_as_one_settings_object():
    result = CliRunner().invoke(tool, ["run", "--hidden", "256, 128", "--jobs", "2", "--no-cache", "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["[256,", "128]", "2", "False", "True"]


def test_defaults_are_every_core_and_the_cache():
    result = CliRunner().invoke(tool, ["run"])
    assert result.output.split() == ["[64]", "None", "True", "False"]


@pytest.mark.parametrize("text", ["", "3,x", "0", "64,-1"])
def test_comma_list_refuses_bad_items_as_a_usage_error(text):
    result = CliRunner().invoke(tool, ["run", "--hidden", text])
    assert result.exit_code == 2
    assert "expected comma-separated values of at least 1" in result.output
    assert "Traceback" not in result.output


def test_version_is_the_package_version():
    result = CliRunner().invoke(tool, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"tool, version {__version__}"


def test_settings_extract_through_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INKVOICE_CACHE", str(tmp_path / "cache"))
    files = []
    for index in range(3):
        path = tmp_path / f"{index}.txt"
        path.write_text(str(index))
        files.append(path)
    results = ExtractionSettings(n_jobs=1, cache=True).extract(_length_of, files, {"scale": 2.0})
    assert [float(r[0]) for r in results] == [2.0, 2.0, 2.0]
    entries = sorted((tmp_path / "cache").rglob("*"))
    assert any(p.suffix == ".entry" for p in entries)
    uncached = ExtractionSettings(n_jobs=1, cache=False).extract(_length_of, files, {"scale": 3.0})
    assert [float(r[0]) for r in uncached] == [3.0, 3.0, 3.0]
    assert sorted((tmp_path / "cache").rglob("*")) == entries


def _length_of(path, scale):
    return np.array([len(path.read_text()) * scale])


def test_missing_matplotlib_is_a_dependency_error(monkeypatch):
    import builtins

    from inkvoice.core import plots

    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    with pytest.raises(DependencyError, match=r"pip install 'inkvoice\[plots\]'"):
        plots.pyplot()


def test_save_figure_writes_a_png_and_leaves_no_temporary(tmp_path):
    from inkvoice.core.plots import pyplot, save_figure

    figure, axes = pyplot().subplots()
    axes.plot([0, 1], [1, 0])
    target = tmp_path / "out.png"
    save_figure(figure, target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
