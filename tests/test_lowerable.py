"""What ``shapes`` accepts, ``compile`` accepts too (issue 14).

A table of hostile snippets: each either makes ``netdsl shapes`` refuse it, with a
``file:line:col`` diagnostic and exit 1, or compiles, and then runs forward and backward.
Before, each of the refused ones passed ``shapes`` and failed in lowering with a traceback
(or an allocation of terabytes), and STOCHASTIC pooling in TRAIN was refused at run time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import netdsl
from netdsl import compiler
from netdsl.cli import main
from netdsl.diagnostics import PlacementError, ShapeError, UsageError
from netdsl.shapes import MAX_BLOB_BYTES, infer_shapes, max_blob_bytes

DATA = 'input { name: "data" shape: [3, 8, 8] }\n'
CONV = 'layer { name: "c" type: Convolution bottom: "data" num_output: 4 kernel_size: 3 '
IP = 'layer { name: "fc" type: InnerProduct bottom: "data" num_output: 4 '
BIG = "9" * 23  # past int64

# (id, spec text, None if it lowers, else (line, column, message fragment) of the refusal)
CASES: list[tuple[str, str, tuple[int, int, str] | None]] = [
    ("gaussian-std-negative", DATA + CONV + "weight_filler: gaussian(-1) }\n",
     (2, 81, "std must be positive, got -1")),
    ("gaussian-std-zero", DATA + CONV + 'weight_filler { type: "gaussian" std: 0 } }\n',
     (2, 81, "std must be positive")),
    ("gaussian-std-nan", DATA + CONV + 'weight_filler { type: "gaussian" std: nan } }\n',
     (2, 81, "std is NaN")),
    ("gaussian-mean-inf", DATA + CONV + 'weight_filler { type: "gaussian" mean: inf } }\n',
     (2, 81, "mean is infinite")),
    ("gaussian-std-past-float32", DATA + CONV + "weight_filler: gaussian(1e39) }\n",
     (2, 81, "past float32's range")),
    ("uniform-infinite", DATA + CONV + "weight_filler: uniform(-1e400, 1e400) }\n",
     (2, 81, "min is infinite")),
    ("uniform-inverted", DATA + CONV + "weight_filler: uniform(1, -1) }\n",
     (2, 81, "min 1 is more than max -1")),
    ("uniform-too-wide", DATA + CONV + "weight_filler: uniform(-3e38, 3e38) }\n",
     (2, 81, "wider than float32")),
    ("constant-nan", DATA + CONV + 'bias_filler { type: "constant" value: nan } }\n',
     (2, 81, "value is NaN")),
    ("xavier-sparse", DATA + IP + 'weight_filler { type: "xavier" sparse: 2 } }\n',
     (2, 68, "sparse is only supported by the gaussian filler")),
    ("gaussian-sparse-past-outputs",
     DATA + IP + 'weight_filler { type: "gaussian" std: 0.1 sparse: 9 } }\n',
     (2, 68, "sparse 9 is more than the blob's 4 outputs")),
    ("bilinear-2d-weight", DATA + IP + "weight_filler: bilinear() }\n",
     (2, 68, "the bilinear filler needs a 4-D blob, got [4, 192]")),
    ("dummy-data-std", 'layer { name: "d" type: DummyData top: "d" shape { dim: [2, 3] } '
     'data_filler { type: "gaussian" std: -2 } }\n', (1, 66, "std must be positive")),
    ("dummy-data-bilinear", 'layer { name: "d" type: DummyData top: "d" shape { dim: [2, 3] '
     '} data_filler { type: "bilinear" } }\n', (1, 66, "needs a 4-D blob, got [2, 3]")),
    ("num-output-past-int64",
     DATA + f'layer {{ name: "c" type: Convolution bottom: "data" num_output: {BIG} '
     "kernel_size: 3 }\n", (2, 52, "num_output must fit in 64 bits")),
    ("num-output-float-past-int64",
     DATA + 'layer { name: "fc" type: InnerProduct bottom: "data" num_output: 1e30 }\n',
     (2, 54, "num_output must fit in 64 bits")),
    ("kernel-past-int64", DATA + 'layer { name: "c" type: Convolution bottom: "data" '
     f"num_output: 4 kernel_size: {BIG} }}\n", (2, 66, "kernel_size must fit in 64 bits")),
    ("stride-past-int64", DATA + CONV + f"stride: {BIG} }}\n",
     (2, 81, "stride must fit in 64 bits")),
    ("dim-past-int64", f'input {{ name: "data" shape: [3, {BIG}, 8] }}\n',
     (1, 33, "shape must fit in 64 bits")),
    ("num-output-too-large", DATA + IP.replace("num_output: 4", "num_output: 100000000000000")
     + "}\n", (2, 54, "top 'fc' [1, 100000000000000] would take 400,000,000,000,000 bytes")),
    ("weight-too-large", 'input { name: "data" shape: [3000000] }\n'
     'layer { name: "fc" type: InnerProduct bottom: "data" num_output: 100000 }\n',
     (2, 54, "parameter 'fc.weight' [100000, 3000000] would take 1,200,000,000,000 bytes")),
    ("input-too-large", 'input { name: "data" shape: [3, 1000000, 1000000] }\n',
     (1, 22, "top 'data' [1, 3, 1000000, 1000000] would take")),
    ("stochastic-pad", DATA + 'layer { name: "p" type: Pooling bottom: "data" '
     "pool: STOCHASTIC kernel_size: 3 pad: 1 }\n", (2, 80, "padding only for MAX and AVE")),
    ("convolution-1d-blob", 'input { name: "data" shape: [8] }\n'
     'layer { name: "c" type: Convolution bottom: "data" num_output: 4 kernel_size: 3 }\n',
     (2, 37, "its bottom has shape [1, 8]")),
    ("deconvolution-1d-blob", 'input { name: "data" shape: [8] }\n'
     'layer { name: "c" type: Deconvolution bottom: "data" num_output: 4 kernel_size: 3 }\n',
     (2, 39, "its bottom has shape [1, 8]")),
    ("pooling-1d-blob", 'input { name: "data" shape: [8] }\n'
     'layer { name: "c" type: Pooling bottom: "data" kernel_size: 3 }\n',
     (2, 33, "its bottom has shape [1, 8]: needs 4 axes")),
    ("convolution-4-spatial-axes", 'input { name: "data" shape: [2, 5, 5, 5, 5] }\n'
     'layer { name: "c" type: Convolution bottom: "data" num_output: 4 kernel_size: 3 }\n',
     (2, 37, "4 spatial axes: netdsl lowers 1 to 3")),
    ("deconvolution-4-spatial-axes", 'input { name: "data" shape: [2, 5, 5, 5, 5] }\n'
     'layer { name: "c" type: Deconvolution bottom: "data" num_output: 4 kernel_size: 3 }\n',
     (2, 39, "4 spatial axes")),
    # accepted, and they lower
    ("stochastic-pooling-train", DATA + 'layer { name: "p" type: Pooling bottom: "data" '
     'pool: STOCHASTIC kernel_size: 2 stride: 2 }\n'
     'layer { name: "fc" type: InnerProduct bottom: "p" num_output: 2 }\n', None),
    ("convolution-1-spatial-axis", 'input { name: "data" shape: [3, 8] }\n'
     'layer { name: "c" type: Convolution bottom: "data" num_output: 4 kernel_size: 3 '
     "weight_filler: gaussian(0.1) }\n", None),
    ("uniform-wide-but-finite", DATA + CONV + "weight_filler: uniform(-1e38, 1e38) }\n",
     None),
    ("gaussian-sparse-at-outputs",
     DATA + IP + 'weight_filler { type: "gaussian" std: 0.1 sparse: 4 } }\n', None),
    ("dummy-data-bilinear-4d", 'layer { name: "d" type: DummyData top: "d" shape { dim: '
     '[2, 3, 4, 4] } data_filler { type: "bilinear" } }\n', None),
]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hostile.net"
    path.write_text(text)
    return path


def _feed(net: netdsl.CompiledNet) -> dict[str, torch.Tensor]:
    return {name: torch.rand(net.shapes.blobs[name]) for name in net.inputs}


@pytest.mark.parametrize("text,refusal", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_shapes_refuses_it_or_it_lowers(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        text: str, refusal: tuple[int, int, str] | None
                                        ) -> None:
    path = _write(tmp_path, text)
    status = main(["shapes", str(path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if refusal is not None:
        line, col, message = refusal
        assert status == 1, err
        first = err.splitlines()[0]
        assert first.startswith(f"{path}:{line}:{col}: error: "), err
        assert message in first, err
        return
    assert status == 0, err
    for phase in ("train", "test"):
        net = netdsl.compile(path, phase, devices="cpu", seed=0)
        out = net(**_feed(net))  # (uniform(-1e38, 1e38) weights may overflow: no matter)
        if phase == "train":
            total = sum(v.sum() for v in out.values() if v.requires_grad)
            if isinstance(total, torch.Tensor):
                total.backward()  # type: ignore[no-untyped-call]


def test_an_int_past_float64_for_a_float_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NETDSL_MAX_INT_BITS", "4096")
    two_256 = 2**256
    path = _write(tmp_path, f"let a = {two_256}\nlet b = $a * $a * $a * $a * $a\n" + DATA
                  + CONV + "weight_filler: gaussian($b) }\n")
    assert main(["shapes", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "'std' must be a number, got" in err and "too large for a floating-point" in err


def test_lower_refuses_what_shapes_refuses(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, DATA + CONV + "weight_filler: gaussian(-1) }\n")
    assert main(["lower", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "std must be positive" in err


# --- the limit on one blob --------------------------------------------------------------


def test_the_blob_limit_defaults_to_one_tebibyte(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NETDSL_MAX_BLOB_BYTES", raising=False)
    assert max_blob_bytes() == MAX_BLOB_BYTES == 2**40


def test_the_blob_limit_is_raised_and_lowered_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = netdsl.load(_write(tmp_path, DATA + IP + "}\n"), "train")
    monkeypatch.setenv("NETDSL_MAX_BLOB_BYTES", "3000")  # fc.weight is 4 * 192 * 4 = 3072
    with pytest.raises(ShapeError, match=r"parameter 'fc.weight' \[4, 192\] would take 3,072 "
                       "bytes") as e:
        infer_shapes(net)
    assert e.value.hint is not None and "NETDSL_MAX_BLOB_BYTES=3072" in e.value.hint
    monkeypatch.setenv("NETDSL_MAX_BLOB_BYTES", "3072")
    infer_shapes(net)
    monkeypatch.setenv("NETDSL_MAX_BLOB_BYTES", "2e12")
    assert max_blob_bytes() == 2 * 10**12
    monkeypatch.setenv("NETDSL_MAX_BLOB_BYTES", "1e30")  # no higher than int64 allows
    assert max_blob_bytes() == 2**63 - 1
    for bad in ("lots", "0", "-5", "1e400"):
        monkeypatch.setenv("NETDSL_MAX_BLOB_BYTES", bad)
        with pytest.raises(UsageError, match="NETDSL_MAX_BLOB_BYTES"):
            infer_shapes(net)


# --- the memory there is ----------------------------------------------------------------


def test_compile_refuses_a_net_larger_than_the_memory_there_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, DATA + IP + "}\n" + 'layer { name: "r" type: ReLU bottom: "fc" '
                  'top: "fc" }\n')
    # fc.weight 3,072 + fc.bias 16 + data 768 + fc 16 (ReLU in place: counted once)
    need = 3072 + 16 + 768 + 16
    allocated: list[object] = []

    def lower_program(*args: object, **kwargs: object) -> None:
        allocated.append(args)
        pytest.fail("allocated before checking the memory")

    monkeypatch.setattr(compiler, "lower_program", lower_program)
    monkeypatch.setattr(compiler, "device_memory", lambda device: need - 1)
    with pytest.raises(PlacementError) as e:
        netdsl.compile(path, devices="cpu")
    assert not allocated
    assert f"needs 3.8 KiB ({need:,} bytes) on cpu" in e.value.message
    assert "cpu has 3.8 KiB of memory" in e.value.message
    assert e.value.hint is not None and "'fc.weight' [4, 192]: 3.0 KiB" in e.value.hint
    assert e.value.span.line == 2  # the layer with the largest blob
    assert main(["lower", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"({need:,} bytes) on cpu" in err
    monkeypatch.undo()
    monkeypatch.setattr(compiler, "device_memory", lambda device: need)
    netdsl.compile(path, devices="cpu")


def test_the_memory_of_a_cpu_is_its_physical_memory() -> None:
    there = compiler.device_memory(torch.device("cpu"))
    assert there is None or there > 2**20
    assert compiler.device_memory(torch.device("meta")) is None
