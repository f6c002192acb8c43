"""The family table is the one place that knows the diffusion model families: no other module
compares family names, and every record names real diffusers pipelines."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.diffusion.families import FAMILIES, PIPELINE_FAMILIES, SINGLE_FILE_TYPES, family

HELPERS = Path(__file__).resolve().parent.parent / "helpers"
TABLE = HELPERS / "diffusion" / "families.py"


def family_questions(path: Path) -> list[str]:
    """Where a module asks "which family" by name: a comparison with a family name, a family
    name as a dict key or an index."""
    found, label = [], path.relative_to(HELPERS.parent) if path.is_relative_to(HELPERS) else path
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[ast.AST] = []
        if isinstance(node, ast.Compare):
            names = [node.left, *node.comparators]
            names += [e for n in names if isinstance(n, (ast.Tuple, ast.List, ast.Set))
                      for e in n.elts]
        elif isinstance(node, ast.Dict):
            names = [k for k in node.keys if k is not None]
        elif isinstance(node, ast.Subscript):
            names = [node.slice]
        found += [f"{label}:{n.lineno}: {n.value!r}" for n in names
                  if isinstance(n, ast.Constant) and n.value in FAMILIES]
    return found


def test_no_module_but_the_table_compares_family_names():
    modules = [p for p in HELPERS.rglob("*.py") if p != TABLE]
    assert len(modules) > 50
    assert [q for p in modules for q in family_questions(p)] == []


def test_the_check_finds_a_family_question(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('if fam == "sdxl":\n    pass\nx = {"ldm": 1}\ny = t["sd"]\n'
                      'z = fam in ("sd", "ldm")\n')
    assert len(family_questions(module)) == 5


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_record_names_real_pipelines(name):
    import diffusers

    record = family(name)
    for cls in record.pipelines:
        assert isinstance(getattr(diffusers, cls), type), cls
        assert PIPELINE_FAMILIES[cls] == name
    assert all(SINGLE_FILE_TYPES[kind][0] == name for kind, _ in record.single_files)
    assert len(record.latent_rgb) == 4 and record.rounded(77) % record.multiple == 0


def test_every_catalogue_diffusion_model_has_a_record():
    from helpers.catalog import MODELS

    families = {m.family for m in MODELS if m.kind == "diffusion"}
    assert families and families <= set(FAMILIES)


def test_an_unknown_family_is_a_clean_error():
    with pytest.raises(ValueError, match=r"^model: unknown model family 'sd3' \(known: sd, "):
        family("sd3")


def test_importing_the_cli_imports_no_torch():
    code = "import sys, helpers.cli; print(sorted(m for m in ('torch', 'diffusers', " \
           "'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=HELPERS.parent).stdout
    assert out.strip() == "[]"


# --- the engine registry -----------------------------------------------------------------------


def test_the_cli_the_notebooks_and_the_forms_take_the_engines_from_the_registry():
    from helpers import notebook
    from helpers.cli import build_parser
    from helpers.engines import ENGINES
    from helpers.widgets.models import FIELDS

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert set(ENGINES) <= set(commands)
    assert list(notebook.ENGINES) == list(FIELDS) == list(ENGINES) == ["vqgan-clip", "diffusion"]
    for name, record in ENGINES.items():
        assert record.settings.kind == name
        assert set(record.model_fields) <= {f.name for f in dataclasses.fields(record.settings)}
        assert set(record.test_settings) <= {f.name for f in dataclasses.fields(record.settings)}
        assert record.length in {f.name for f in dataclasses.fields(record.settings)}
        assert callable(record.module().generate) and callable(record.module().catalogue_models)


def test_a_third_engine_is_one_record(monkeypatch):
    from helpers.cli import build_parser
    from helpers.engines import ENGINES
    from helpers.settings import SETTINGS_KINDS

    third = dataclasses.replace(ENGINES["vqgan-clip"], name="third", help="a third engine")
    monkeypatch.setitem(ENGINES, "third", third)
    monkeypatch.setitem(SETTINGS_KINDS, "third", SETTINGS_KINDS["vqgan-clip"])
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert "--cutn" in commands["third"].format_help()


def test_an_unknown_engine_names_the_setting():
    from helpers.engines import get_engine

    with pytest.raises(ValueError, match=r"^engine: 'gan' is not one of vqgan-clip, diffusion$"):
        get_engine("gan")
