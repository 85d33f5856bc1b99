"""Packaging promises: published requirements are ranges, CI pins its tested set, README and CI agree.

These read the source tree's setup.cfg, README.rst and .ci/ files (the sdist carries them too)
and skip when batchup runs from an installed wheel without them.
"""
from __future__ import annotations

import configparser
import os
import re

import pytest

import batchup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(batchup.__file__)))


def source_file(*parts):
    path = os.path.join(ROOT, *parts)
    if not os.path.isfile(path):
        pytest.skip(f"{os.path.join(*parts)} is not here (batchup runs from an installed wheel)")
    with open(path, encoding="utf-8") as f:
        return f.read()


def setup_cfg():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(source_file("setup.cfg"))
    return parser


def requirements(text):
    return [r.strip() for line in text.splitlines() for r in line.split(";") if r.strip()]


def constraints(name):
    pins = {}
    for line in source_file(".ci", name).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            dist, _, version = line.partition("==")
            assert version, f"{name}: {line!r} is not an exact pin"
            pins[re.sub(r"[-_.]+", "-", dist).lower()] = version
    return pins


def test_published_requirements_are_ranges_not_pins():
    cfg = setup_cfg()
    reqs = requirements(cfg["options"]["install_requires"])
    for extra, text in cfg["options.extras_require"].items():
        reqs += [f"[{extra}] {r}" for r in requirements(text)]
    pinned = [r for r in reqs if "==" in r or "===" in r]
    assert not pinned, f"exact pins in published requirements: {pinned}"
    assert "torch>=2.1" in requirements(cfg["options.extras_require"]["torch"])
    assert requirements(cfg["options.extras_require"]["tf"]) == ["tensorflow>=2.16"]


def test_ci_constraints_pin_the_local_cpu_torch_within_the_machine_cap():
    pins = constraints("constraints.txt")
    assert pins["torch"] == "2.13.0"  # the one torch CI machines have as a local CPU build
    for name in ("numpy", "pytest", "hypothesis", "keras", "jax", "dask"):
        assert name in pins, f"constraints.txt does not pin {name}"
    assert "tensorflow-cpu" in constraints("constraints-tf.txt")


def test_every_test_extra_requirement_is_pinned_for_ci():
    cfg = setup_cfg()
    pins = constraints("constraints.txt")
    for req in requirements(cfg["options.extras_require"]["test"]):
        name = re.split(r"[\[<>=!~ ]", req, maxsplit=1)[0]
        assert re.sub(r"[-_.]+", "-", name).lower() in pins, f"the test extra's {req!r} has no pin"


def test_readme_test_command_is_what_ci_runs():
    readme = source_file("README.rst")
    commands = [line.strip() for line in readme.splitlines() if 'pip install -e ".[test]"' in line]
    assert len(commands) == 1, commands
    assert "-c .ci/constraints.txt" in commands[0]
    ci_lines = [line.strip() for line in source_file(".ci", "run").splitlines()]
    assert commands[0] in ci_lines


def test_python_classifiers_match_python_requires():
    cfg = setup_cfg()
    low = cfg["options"]["python_requires"].strip()
    assert low.startswith(">=")
    minimum = tuple(int(x) for x in low[2:].split("."))
    versions = sorted(tuple(int(x) for x in c.rsplit("::", 1)[1].strip().split("."))
                      for c in cfg["metadata"]["classifiers"].splitlines()
                      if re.fullmatch(r"\s*Programming Language :: Python :: 3\.\d+\s*", c))
    assert versions[0] == minimum
    assert versions == [(3, m) for m in range(minimum[1], versions[-1][1] + 1)], "a gap in the classifiers"


def test_licence_metadata_covers_code_and_shipped_data():
    cfg = setup_cfg()["metadata"]
    assert cfg["license_expression"].strip() == "MIT AND CC-BY-4.0"
    files = cfg["license_files"].split()
    assert files == ["LICENSE", "batchup/data/README.rst"]
    assert "CC BY 4.0" in source_file("batchup", "data", "README.rst")
    assert not any("License ::" in c for c in cfg["classifiers"].splitlines())
