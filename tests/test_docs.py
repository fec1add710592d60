"""The README's module table matches the layout: every package and top-level module is in it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "adadiffsr"


def module_table() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("| module | what it holds |")
    return text[start : text.index("\n\n", start)]


def test_the_readme_module_table_names_every_package_and_module():
    table = module_table()
    packages = [p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()]
    modules = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    missing = [f"{name}/" for name in packages if f"`{name}/" not in table]
    missing += [name for name in modules if f"`{name}`" not in table]
    missing += [f"prior/{p.name}" for p in (PACKAGE / "prior").glob("*.py")
                if p.name != "__init__.py" and f"`{p.name}`" not in table]
    assert not missing, f"not in the README's module table: {missing}"
