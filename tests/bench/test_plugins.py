"""Plugins through entry points (:mod:`bench.plugins`): the registry mechanics in-process, and two real
distributions installed with pip into a target folder and used through the real ``bench`` CLI in subprocesses.

The good distribution is built from the code blocks of ``docs/plugins.md`` (the recipe is what is tested), its
suite shrunk to smoke sizes; the bad one holds a plugin of every kind that fails to import, a model whose name
collides with a built-in, one of the wrong base class, and a suite whose file does not exist.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import yaml

from bench import plugins
from bench.registry import Registry, RegistryError, UnknownNameError

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "plugins.md"
BENCH = Path(sys.executable).with_name("bench")
GROUP = plugins.GROUPS["model"]


# ---------------------------------------------------------------------------------------------- in-process
class Base:
    pass


@pytest.fixture
def plugin_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Writes modules into a folder on ``sys.path``; returns ``write(name, source)``. They are unimported after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(name: str, source: str) -> None:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)

    yield write
    for name in written:
        sys.modules.pop(name, None)


GOOD = """
import sys
from tests.bench.test_plugins import Base
IMPORTED = True
class Good(Base):
    pass
class NotBase:
    pass
"""


def _ep(name: str, value: str, group: str = GROUP) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=group)


def test_plugin_name_known_before_import_and_loaded_on_use(plugin_modules) -> None:
    plugin_modules("plug_good", GOOD)
    reg: Registry = Registry("model", base=Base)
    reg.add_plugins([_ep("good-model", "plug_good:Good")])
    assert "good-model" in reg and reg.names() == ["good-model"] and len(reg) == 1
    assert "plug_good" not in sys.modules  # a name only: nothing imported yet
    cls = reg.get("good-model")
    assert cls.__name__ == "Good" and cls.registry_name == "good-model"
    assert reg.plugin("good-model").value == "plug_good:Good"
    assert reg.get("good-model") is cls and reg.load_plugins() == {}


def test_broken_plugin_is_one_line_only_when_used(plugin_modules) -> None:
    plugin_modules("plug_good", GOOD)
    plugin_modules("plug_boom", "raise RuntimeError('boom\\nsecond line')\n")
    reg: Registry = Registry("model", base=Base)
    reg.add("built-in", type("BuiltIn", (Base,), {}))
    reg.add_plugins([_ep("boom", "plug_boom:X"), _ep("missing", "plug_nowhere:X"), _ep("good-model", "plug_good:Good")])
    assert reg.get("built-in").__name__ == "BuiltIn" and reg.get("good-model").__name__ == "Good"
    assert "plug_boom" not in sys.modules  # unrelated broken plugins are never imported
    for name, cause in (("boom", "RuntimeError: boom second line"), ("missing", "ModuleNotFoundError")):
        with pytest.raises(RegistryError) as info:
            reg.get(name)
        line = str(info.value)
        assert "\n" not in line and f"plugin {name!r}" in line and "an unknown distribution" in line
        assert cause in line and f"in group {GROUP}" in line
        with pytest.raises(RegistryError, match=re.escape(line)):  # remembered: the same line every time
            reg.get(name)
    assert sorted(reg.load_plugins()) == ["boom", "missing"]
    assert reg.names() == ["boom", "built-in", "good-model", "missing"]


@pytest.mark.parametrize(("name", "value", "reason"), [
    ("wrong-base", "plug_good:NotBase", "must be a subclass of Base"),
    ("Bad_Name", "plug_good:Good", "invalid model name 'Bad_Name'"),
    ("no-attr", "plug_good:Nothing", "AttributeError"),
])
def test_invalid_plugin_refused_with_the_registry_checks(plugin_modules, name, value, reason) -> None:
    plugin_modules("plug_good", GOOD)
    reg: Registry = Registry("model", base=Base)
    reg.add_plugins([_ep(name, value)])
    with pytest.raises(RegistryError, match=re.escape(reason)):
        reg.get(name)
    assert name not in reg._items


@pytest.mark.parametrize("plugins_first", [True, False])
def test_plugin_colliding_with_a_built_in_is_refused(plugin_modules, plugins_first: bool) -> None:
    """Whether the built-in registers before or after the entry points are read (real registries: after), the
    plugin is refused, never imported, and the name reports the collision instead of running either object."""
    plugin_modules("plug_good", GOOD)
    reg: Registry = Registry("model", base=Base)
    builtin = type("DCGAN", (Base,), {"__module__": "models.gan.dcgan"})
    eps = [_ep("dcgan", "plug_good:Good")]
    if plugins_first:
        reg.add_plugins(eps)
        reg.add("dcgan", builtin)
    else:
        reg.add("dcgan", builtin)
        reg.add_plugins(eps)
    with pytest.raises(RegistryError) as info:
        reg.get("dcgan")
    line = str(info.value)
    assert "'dcgan'" in line and "is refused" in line and "models.gan.dcgan.DCGAN" in line and "rename" in line
    assert "plug_good" not in sys.modules
    assert reg.names() == ["dcgan"] and list(reg.load_plugins()) == ["dcgan"]


def test_same_name_from_two_plugins_refused(plugin_modules) -> None:
    plugin_modules("plug_good", GOOD)
    reg: Registry = Registry("model", base=Base)
    reg.add_plugins([_ep("twice", "plug_good:Good"), _ep("twice", "plug_good:Good")])
    with pytest.raises(RegistryError, match="provided by 2 plugins"):
        reg.get("twice")


def test_plugin_registering_itself_by_decorator_is_accepted(plugin_modules) -> None:
    reg: Registry = Registry("model", base=Base)
    sys.modules["plug_reg_target"] = type(sys)("plug_reg_target")
    sys.modules["plug_reg_target"].REG = reg
    try:
        plugin_modules("plug_self", """
            from plug_reg_target import REG
            from tests.bench.test_plugins import Base
            @REG.register("self-reg")
            class SelfReg(Base):
                pass
        """)
        reg.add_plugins([_ep("self-reg", "plug_self:SelfReg")])
        assert reg.get("self-reg").__name__ == "SelfReg"
    finally:
        sys.modules.pop("plug_reg_target")


def test_unknown_name_still_lists_plugin_names(plugin_modules) -> None:
    reg: Registry = Registry("model", base=Base)
    reg.add_plugins([_ep("good-model", "plug_good:Good")])
    with pytest.raises(UnknownNameError, match="good-model"):
        reg.get("nope")


def test_suite_plugin_values_and_name_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin_modules) -> None:
    import bench.suites as suites
    from bench.spec import SpecError

    quick = (REPO / "bench" / "suites" / "quick.yaml").read_text()
    (tmp_path / "mine.yaml").write_text(quick.replace("name: quick", "name: mine", 1))
    (tmp_path / "other.yaml").write_text(quick)
    plugin_modules("plug_suites", f"""
        from pathlib import Path
        MINE = Path({str(tmp_path / 'mine.yaml')!r})
        OTHER = {str(tmp_path / 'other.yaml')!r}
        MISSING = "/no/such/suite.yaml"
        NUMBER = 3
    """)
    reg: Registry = Registry("suite", plugin_value=suites.suite_file)
    reg.add("quick", REPO / "bench" / "suites" / "quick.yaml")
    group = plugins.GROUPS["suite"]
    reg.add_plugins([_ep(n, f"plug_suites:{a}", group) for n, a in
                     (("mine", "MINE"), ("other", "OTHER"), ("missing", "MISSING"), ("number", "NUMBER"),
                      ("quick", "MINE"))])
    monkeypatch.setattr(suites, "SUITES", reg)
    assert suites.load_suite("mine").name == "mine"
    with pytest.raises(RegistryError, match="is refused: the name 'quick' is taken by"):  # never shadowed
        suites.load_suite("quick")
    with pytest.raises(SpecError, match="registered as 'other' but the file names it 'quick'"):
        suites.load_suite("other")
    with pytest.raises(RegistryError, match="not an existing .yaml"):
        suites.load_suite("missing")
    with pytest.raises(RegistryError, match="must name a str or path"):
        suites.load_suite("number")
    assert list(reg.load_plugins()) == ["missing", "number", "quick"]


def test_malformed_metadata_of_another_distribution_loses_only_its_own_entry_points(tmp_path: Path) -> None:
    """importlib.metadata.entry_points() fails as a whole on one malformed entry_points.txt; the scan then reads
    distributions one by one: the good plugin stays, the broken distribution is named when a registry is listed."""
    for dist, text in (("aaa_malformed-0.1", "[genfusion_bench.models]\nno equals sign\n"),
                       ("zzz_fine-0.1", "[genfusion_bench.models]\nfine-model = zzz_fine:Model\n")):
        info = tmp_path / f"{dist}.dist-info"
        info.mkdir()
        name, version = dist.split("-")
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(text)
    sys.path.insert(0, str(tmp_path))
    plugins.clear_cache()
    try:
        assert plugins.names("model") == {"fine-model"}
        assert "aaa_malformed-0.1.dist-info" in plugins.scan_error()
        reg: Registry = Registry("model", base=Base, plugin_group=GROUP)
        problems = reg.load_plugins()
        assert sorted(problems) == ["*", "fine-model"] and "cannot read the entry points of" in problems["*"]
    finally:
        sys.path.remove(str(tmp_path))
        plugins.clear_cache()
    assert plugins.scan_error() is None


def test_real_registries_read_their_groups() -> None:
    from bench.backbones import BACKBONES
    from bench.metrics import METRICS
    from bench.suites import SUITES
    from datamodules import DATAMODULES
    from models import MODELS

    assert {r.plugin_group for r in (MODELS, DATAMODULES, METRICS, BACKBONES, SUITES)} == set(plugins.GROUPS.values())


# ---------------------------------------------------------------------------------------------- installed for real
BAD_PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "bad-plugins"
version = "0.1.0"

[project.entry-points."genfusion_bench.models"]
broken-gan = "bad_plugins.missing:Nope"
vae = "bad_plugins.boom:Impostor"
not-a-model = "bad_plugins:NotAModel"

[project.entry-points."genfusion_bench.datamodules"]
broken-data = "bad_plugins.boom:Data"

[project.entry-points."genfusion_bench.metrics"]
broken-metric = "bad_plugins.boom:Metric"

[project.entry-points."genfusion_bench.backbones"]
broken-backbone = "bad_plugins.boom:Backbone"

[project.entry-points."genfusion_bench.suites"]
broken-suite = "bad_plugins:NO_SUITE"

[tool.setuptools]
packages = ["bad_plugins"]
"""
BAD_INIT = """
NO_SUITE = "/no/such/suite.yaml"
class NotAModel:
    pass
"""
BOOM = """
import os, pathlib
if os.environ.get("BOOM_MARKER"):
    pathlib.Path(os.environ["BOOM_MARKER"]).touch()  # proves whether a run imported it
raise RuntimeError("bad_plugins.boom is broken")
"""
#: The recipe's suite at smoke sizes (the test budget); the structure is the documented one.
SMOKE = {"seeds": [0], "eval": {"backbone_size": 32, "n_fake": 16, "kid_subsets": 2, "kid_subset_size": 8},
         "image_size": 8, "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 2}}


def doc_files() -> dict[str, str]:
    """``{path: text}`` of every code block of docs/plugins.md whose first line is ``# file: PATH``."""
    blocks = re.findall(r"```\w+\n# file: (\S+)\n(.*?)```", DOC.read_text(), flags=re.S)
    return dict(blocks)


def smoke_suite(text: str) -> str:
    suite = yaml.safe_load(text)
    suite["seeds"] = SMOKE["seeds"]
    suite["eval"].update(SMOKE["eval"])
    for track in suite["tracks"]:
        for args in track["datamodules"].values():
            args["image_size"] = SMOKE["image_size"]
        track["trainer"] = {**track.get("trainer", {}), **SMOKE["trainer"]}
    return yaml.safe_dump(suite, sort_keys=False)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipe's ``my-gan`` and the broken ``bad-plugins``, installed by pip into one target folder."""
    root = tmp_path_factory.mktemp("plugins")
    good, bad = root / "my-gan", root / "bad-plugins"
    files = doc_files()
    assert {"pyproject.toml", "my_gan/model.py", "my_gan/__init__.py", "my_gan/my-gan.yaml"} <= set(files)
    files["my_gan/my-gan.yaml"] = smoke_suite(files["my_gan/my-gan.yaml"])
    for rel, text in files.items():
        (good / rel).parent.mkdir(parents=True, exist_ok=True)
        (good / rel).write_text(text)
    (bad / "bad_plugins").mkdir(parents=True)
    (bad / "pyproject.toml").write_text(BAD_PYPROJECT)
    (bad / "bad_plugins" / "__init__.py").write_text(BAD_INIT)
    (bad / "bad_plugins" / "boom.py").write_text(BOOM)
    target = root / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(good), str(bad)], capture_output=True, text=True, timeout=300, cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def bench(site: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **env}
    return subprocess.run([str(BENCH), *argv], capture_output=True, text=True, timeout=300, env=environ,
                          cwd=site.parent)


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), stderr
    return lines[0]


def test_list_models_shows_the_plugin_and_reports_the_broken_ones(site: Path) -> None:
    proc = bench(site, "list", "models", "--names")
    assert proc.returncode == 2
    listed = proc.stdout.splitlines()
    assert "tiny-gan" in listed and "dcgan" in listed and listed == sorted(listed)
    assert not {"broken-gan", "not-a-model", "vae"} & set(listed)  # refused: not listed as usable
    line = one_line(proc.stderr)
    assert "plugin 'broken-gan' (entry point `broken-gan = bad_plugins.missing:Nope` in group " \
           "genfusion_bench.models of distribution bad-plugins 0.1.0) failed to load: ModuleNotFoundError" in line
    assert "plugin 'vae'" in line and "is refused: the name 'vae' is taken by models.vae" in line
    assert "plugin 'not-a-model'" in line and "must be a subclass of BenchModule" in line


def test_list_suites_shows_the_plugin_suite(site: Path) -> None:
    proc = bench(site, "list", "suites", "--names")
    assert proc.returncode == 2 and "my-gan" in proc.stdout.splitlines() and "quick" in proc.stdout.splitlines()
    line = one_line(proc.stderr)
    assert "plugin 'broken-suite'" in line and "bad-plugins 0.1.0" in line and "/no/such/suite.yaml" in line


def test_plugin_names_are_known_without_importing_them(site: Path) -> None:
    code = ("import sys; from bench import catalog; from bench.suites import load_suite; spec = load_suite('my-gan');"
            "print(spec.name, sorted(spec.tracks[0].models), 'tiny-gan' in catalog.registered('model'),"
            "'broken-metric' in catalog.registered('metric'), sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'lightning', 'bad_plugins') or m == 'my_gan.model'))")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["my-gan", "['dcgan',", "'tiny-gan']", "True", "True", "[]"]


def test_run_the_plugin_suite(site: Path) -> None:
    """`bench run --suite my-gan` runs the plugin's model next to a built-in, with every kind of broken plugin
    installed alongside: none of them is imported and the run exits 0."""
    out, marker = site.parent / "out", site.parent / "boom-imported"
    proc = bench(site, "run", "--suite", "my-gan", "--out", str(out), "--fast", BOOM_MARKER=str(marker))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not marker.exists(), "a broken plugin no run names was imported"
    rows = list(csv.DictReader((out / "results.csv").open()))
    tiny = [r for r in rows if r["model"] == "tiny-gan"]
    assert {r["metric"] for r in tiny} == {"fid", "kid"}
    assert {(r["status"], r["family"], r["suite"], r["datamodule"]) for r in tiny} == {
        ("ok", "gan", "my-gan", "digits")}
    assert {"tiny-gan", "dcgan"} <= {r["model"] for r in rows}
    assert "tiny-gan" in (out / "leaderboard.md").read_text()


def test_using_a_broken_plugin_is_one_line(site: Path) -> None:
    suite = site.parent / "uses-broken.yaml"
    text = (site / "my_gan" / "my-gan.yaml").read_text().replace("tiny-gan:", "broken-gan:")
    suite.write_text(text.replace("name: my-gan", "name: uses-broken"))
    out = site.parent / "out-broken"
    proc = bench(site, "run", "--suite", str(suite), "--out", str(out), "--dry-run")
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert "plugin 'broken-gan'" in line and "distribution bad-plugins 0.1.0" in line and "failed to load" in line
    assert not out.exists()
