"""Plugins: layer types registered from the user's own module, named by ``plugins: [...]``
in a spec or ``--plugin`` on the command line, with the diagnostics, reference entry and
lowering of a built-in type."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import netdsl
from netdsl import caffe_compat
from netdsl.cli import main, make_parser
from netdsl.diagnostics import ShapeError, SpecError
from netdsl.layers import REGISTRY, TYPES, LayerTypeClash, register
from netdsl.layers.base import LayerType, NoParams
from netdsl.plugins import PLUGINS, load_plugin
from netdsl.reference import layer_reference
from netdsl.shapes import infer_shapes

HARDSWISH = '''\
"""A plugin: the Hardswish activation as a netdsl layer type."""

from dataclasses import dataclass, field
from pathlib import Path

from netdsl.plugins import Call, Kernel, LayerType, Shape, ShapeContext, doc, register

with open(Path(__file__).with_name("loads.txt"), "a") as f:  # count the imports
    f.write("loaded\\n")


@dataclass(frozen=True)
class HardswishParams:
    scale: float = field(default=1.0, metadata=doc("multiply the output by this"))


def hardswish(x, scale=1.0):
    import torch.nn.functional as F

    return F.hardswish(x) * scale


@register
class Hardswish(LayerType[HardswishParams]):
    """x * relu6(x + 3) / 6, times scale (a plugin type)."""

    Params = HardswishParams

    def shape(self, p: HardswishParams, bottoms: tuple[Shape, ...], ctx: ShapeContext):
        if len(bottoms[0]) < 2:
            raise ctx.error(f"needs a batch and channels, got {list(bottoms[0])}")
        return (bottoms[0],)

    def macs(self, p, bottoms, tops):
        n = 1
        for d in tops[0]:
            n *= d
        return n

    def lower(self, p: HardswishParams, bottoms, tops) -> Kernel:
        return Call(hardswish, {"scale": p.scale})
'''

NET = """\
name: "hs"
input { name: "data" shape: [3, 8, 8] batch: 2 }
layer { name: "conv" type: Convolution bottom: "data" num_output: 4 kernel_size: 3 }
layer { name: "hs" type: Hardswish bottom: "conv" scale: 2 }
"""


@pytest.fixture(autouse=True)
def _registry() -> Iterator[None]:
    """Each test starts from netdsl's own types and leaves them as it found them."""
    saved = dict(REGISTRY), dict(TYPES), dict(PLUGINS)
    modules = set(sys.modules)
    yield
    for d, old in zip((REGISTRY, TYPES, PLUGINS), saved, strict=True):
        d.clear()
        d.update(old)  # type: ignore[attr-defined]
    for name in set(sys.modules) - modules:
        if name.split(".")[0] in ("mypkg", "clashpkg", "brokenpkg"):
            del sys.modules[name]
    caffe_compat._caffe_blocks.cache_clear()


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``mypkg.layers`` (the Hardswish plugin) importable from ``tmp_path/plugins``."""
    root = tmp_path / "plugins"
    (root / "mypkg").mkdir(parents=True)
    (root / "mypkg" / "__init__.py").write_text("")
    (root / "mypkg" / "layers.py").write_text(HARDSWISH)
    monkeypatch.syspath_prepend(str(root))
    return root


def write(tmp_path: Path, text: str, name: str = "net.net") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def loads(plugin_dir: Path) -> int:
    f = plugin_dir / "mypkg" / "loads.txt"
    return len(f.read_text().splitlines()) if f.exists() else 0


def test_a_spec_names_its_plugins(tmp_path: Path, plugin_dir: Path) -> None:
    assert "Hardswish" not in REGISTRY
    path = write(tmp_path, 'plugins: ["mypkg.layers"]\n' + NET)
    net = netdsl.load(path)
    assert net.layer("hs").params.scale == 2.0
    table = infer_shapes(net)
    assert table.blobs["hs"] == (2, 4, 6, 6)
    assert table.of("hs").macs == 2 * 4 * 6 * 6  # the plugin's own hook
    compiled = netdsl.compile(net, "train", "cpu", seed=0)
    out = compiled(data=torch.randn(2, 3, 8, 8), outputs=["conv", "hs"])
    torch.testing.assert_close(out["hs"], F.hardswish(out["conv"]) * 2)
    assert "hardswish(conv, scale = 2.0)" in compiled.code


def test_the_plugin_flag_on_the_command_line(
        tmp_path: Path, plugin_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, NET)
    assert main(["shapes", str(path)]) == 1  # not loaded: an unknown type
    err = capsys.readouterr().err
    assert "unknown layer type 'Hardswish'" in err
    assert main(["shapes", str(path), "--plugin", "mypkg.layers", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["blobs"]["hs"] == [2, 4, 6, 6]
    assert main(["lower", str(path), "--plugin", "mypkg.layers"]) == 0
    assert "hs = mypkg_layers_hardswish(conv, scale = 2.0)" in capsys.readouterr().out


def test_the_plugin_reaches_the_runtime(
        tmp_path: Path, plugin_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, NET)
    argv = ["time", str(path), "--plugin", "mypkg.layers", "--iterations", "1",
            "--devices", "cpu", "--format", "json"]
    assert main(argv) == 0
    timed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert "hs" in [lay["name"] for lay in timed[-1]["layers"]]
    training = netdsl.load_training(path, plugins=["mypkg.layers"])
    assert training.train_net.layer("hs").type == "Hardswish"


def test_every_spec_command_takes_plugin() -> None:
    Parser = argparse.ArgumentParser

    def walk(p: Parser, name: str) -> Iterator[tuple[str, Parser]]:
        yield name, p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, q in action.choices.items():
                    yield from walk(q, f"{name} {sub}")

    for name, p in walk(make_parser(), "netdsl"):
        dests = {a.dest for a in p._actions}
        if "spec" in dests:
            assert "plugins" in dests, f"{name} has no --plugin"


def test_plugin_types_get_the_diagnostics_of_built_in_ones(
        tmp_path: Path, plugin_dir: Path) -> None:
    head = 'plugins: ["mypkg.layers"]\n'
    bad = write(tmp_path, head + NET.replace("scale: 2", "scael: 2"))
    with pytest.raises(SpecError) as info:
        netdsl.load(bad)
    assert info.value.message == "unknown field 'scael' for Hardswish layer 'hs'"
    assert info.value.hint == "did you mean 'scale'?"
    assert info.value.span.line == 5
    typo = write(tmp_path, head + NET.replace("type: Hardswish", "type: Hardswsh"))
    with pytest.raises(SpecError) as info:
        netdsl.load(typo)
    assert info.value.message == "unknown layer type 'Hardswsh'"
    assert info.value.hint == "did you mean 'Hardswish'?"
    flat = write(tmp_path, head + 'input { name: "v" shape: [] batch: 5 }\n'
                 'layer { name: "hs" type: Hardswish bottom: "v" }\n')
    with pytest.raises(ShapeError) as shape_info:
        infer_shapes(netdsl.load(flat))
    assert shape_info.value.message == "Hardswish 'hs': needs a batch and channels, got [5]"
    assert shape_info.value.span.line == 3


def test_plugin_types_are_in_the_reference(plugin_dir: Path) -> None:
    assert "#### Hardswish" not in layer_reference()
    load_plugin("mypkg.layers")
    ref = layer_reference()
    assert "[Hardswish](#hardswish)" in ref
    assert "#### Hardswish\n\nx * relu6(x + 3) / 6, times scale (a plugin type)." in ref
    assert "| `scale` | float | 1.0 | multiply the output by this |" in ref


def test_a_plugin_is_imported_once(
        tmp_path: Path, plugin_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, 'plugins: ["mypkg.layers", "mypkg.layers"]\n' + NET)
    netdsl.load(path)
    netdsl.load(path, "test", plugins=["mypkg.layers"])
    assert main(["shapes", str(path), "--plugin", "mypkg.layers"]) == 0
    capsys.readouterr()
    assert loads(plugin_dir) == 1


def test_a_plugin_that_cannot_be_imported_names_the_module_and_the_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, 'name: "x"\nplugins: ["nopkg_here.layers"]\n' + NET)
    with pytest.raises(SpecError) as info:
        netdsl.load(path)
    e = info.value
    assert e.message == ("cannot import plugin module 'nopkg_here.layers': no module named "
                         "'nopkg_here'")
    assert (e.span.path, e.span.line, e.span.col) == (str(path), 2, 11)
    assert e.notes[0][0].startswith("Python looked in sys.path: ")
    assert "PYTHONPATH" in (e.hint or "")
    assert main(["shapes", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:2:11: error: cannot import plugin module")
    assert "Traceback" not in err
    assert main(["shapes", str(write(tmp_path, NET, "plain.net")), "--plugin", "nopkg_here"]) == 1
    assert capsys.readouterr().err.startswith(
        "--plugin nopkg_here: error: cannot import plugin module 'nopkg_here'")


def test_a_plugin_that_raises_points_at_its_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "brokenpkg").mkdir()
    (tmp_path / "brokenpkg" / "__init__.py").write_text("")
    (tmp_path / "brokenpkg" / "layers.py").write_text("x = 1\nraise ValueError('no good')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(tmp_path, 'plugins: "brokenpkg.layers"\n' + NET)
    with pytest.raises(SpecError) as info:
        netdsl.load(path)
    e = info.value
    assert e.message == "importing plugin module 'brokenpkg.layers' failed: ValueError: no good"
    assert e.span.line == 1
    assert e.notes[0][0] == "raised here"
    where = e.notes[0][1]
    assert where is not None
    assert (where.path, where.line) == (str(tmp_path / "brokenpkg" / "layers.py"), 2)


def test_a_taken_name_is_an_error_naming_both(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    relu = REGISTRY["ReLU"]
    (tmp_path / "clashpkg").mkdir()
    (tmp_path / "clashpkg" / "__init__.py").write_text("")
    (tmp_path / "clashpkg" / "layers.py").write_text(
        "from netdsl.plugins import LayerType, NoParams, register\n\n"
        "@register\nclass Mine(LayerType[NoParams]):\n    '''Mine.'''\n\n"
        "@register\nclass ReLU(LayerType[NoParams]):\n    '''Another ReLU.'''\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(tmp_path, 'plugins: ["clashpkg.layers"]\n' + NET)
    with pytest.raises(SpecError) as info:
        netdsl.load(path)
    assert info.value.message == (
        "plugin module 'clashpkg.layers': layer type name 'ReLU' of clashpkg.layers.ReLU is "
        "already registered by netdsl.layers.relu.ReLU")
    assert info.value.span.line == 1
    assert REGISTRY["ReLU"] is relu and TYPES["ReLU"] is relu


def test_register_checks_names_before_changing_anything() -> None:
    class Spelt(LayerType[NoParams]):
        """Spelt like a V1 enum."""

        caffe_names = ("FreshName", "RELU")

    with pytest.raises(LayerTypeClash, match="'RELU' of .*Spelt is already registered by "
                       "netdsl.layers.relu.ReLU"):
        register(Spelt)
    assert "Spelt" not in TYPES and "FreshName" not in REGISTRY
    with pytest.raises(TypeError):
        register(int)  # type: ignore[type-var]


def test_plugins_must_be_module_names(tmp_path: Path) -> None:
    for value, message in (("[3]", "a plugin must be a module name (a string)"),
                           ('["my-pkg"]', "'my-pkg' is not a Python module name")):
        path = write(tmp_path, f"plugins: {value}\n" + NET)
        with pytest.raises(SpecError) as info:
            netdsl.load(path)
        assert info.value.message == message
        assert info.value.span.line == 1


def test_an_imported_spec_brings_its_plugins(tmp_path: Path, plugin_dir: Path) -> None:
    write(tmp_path, 'plugins: ["mypkg.layers"]\n' + NET, "base.net")
    path = write(tmp_path, 'import "base.net"\nname: "child"\n', "child.net")
    assert netdsl.load(path).layer("hs").type == "Hardswish"


def test_convert_takes_plugin(
        tmp_path: Path, plugin_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, NET)
    out = tmp_path / "hs.prototxt"
    assert main(["convert", str(path), "--to", "prototxt", "-o", str(out),
                 "--plugin", "mypkg.layers"]) == 0
    text = out.read_text()
    assert 'type: "Hardswish"' in text and "hardswish_param { scale: 2 }" in text
    back = infer_shapes(netdsl.load(out)).blobs
    assert back == infer_shapes(netdsl.load(path)).blobs


