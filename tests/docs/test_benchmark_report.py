"""The benchmarks page's generated text: chart alt texts are plain words, not reStructuredText."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPORT = Path(__file__).resolve().parents[2] / "benchmarks" / "report.py"


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("benchmark_report", REPORT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _doc(name, title=None, workloads=2):
    wl = {"name": "w", "reference": "ref", "contenders": [{"name": "ref", "seconds": 1.0, "ratio": 1.0}]}
    doc = {"benchmark": name, "machine": "m", "workloads": [dict(wl) for _ in range(workloads)]}
    if title is not None:
        doc["title"] = title
    return doc


def _alt_lines(rst):
    return [line.split(":alt:", 1)[1].strip() for line in rst.splitlines() if ":alt:" in line]


def test_alt_text_of_a_benchmark_without_title_has_no_escapes(report):
    """``out_of_core`` used to read ``out\\_of\\_core``: an image's alt option is not parsed as markup."""
    (alt,) = _alt_lines(report.render_rst([_doc("out_of_core")]))
    assert "\\" not in alt
    assert alt.startswith("Out of core — bar chart of each contender's time divided by the reference's")


def test_alt_text_reads_as_a_sentence_with_a_title(report):
    (alt,) = _alt_lines(report.render_rst([_doc("inmemory", "In-memory arrays: one shuffled epoch", 1)]))
    assert alt == ("In-memory arrays: one shuffled epoch — bar chart of each contender's time divided by "
                   "the reference's (log scale; lower is faster)")
