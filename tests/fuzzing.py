"""Fuzz cases for netdsl's front end: seeds, mutators and a random spec generator.

The promise under test: every input gives either a result or a netdsl diagnostic (a
``NetdslError``, which the CLI prints as one paragraph and exits 1 on), never another
exception, a hang or a memory blow-up. This module makes the inputs; ``tests/fuzz_worker.py``
runs them (in a memory-limited subprocess, with a time limit per stage). Both
``tests/test_fuzz.py`` and ``tools/fuzz.py`` use them.

Nothing here imports torch or netdsl at module level (the worker sets its memory limit
before importing anything heavy); the spec generator imports the torch-free layer
registry when first called.

A case is ``make_case(seed, index, seeds)``: deterministic in (seed, index), so a failure
is reproduced by its number alone (and its text is saved too).
"""

from __future__ import annotations

import dataclasses
import enum
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
SHARED_CAFFE = ROOT.parent / "shared" / "caffe"

#: Files the worker puts next to every case, for mutated imports to name.
SPECIAL_IMPORTS = (
    "/dev/zero", "/dev/null", "/dev/urandom", "fifo.net", "folder.net", "missing.net",
    "case.net", "case.prototxt", "binary.net", "", ".", "/", "/etc/passwd",
    "../../../../../../etc/hostname", "alexnet.net", "deep/../alexnet.net",
)


@dataclass(frozen=True)
class Seed:
    name: str
    text: str
    suffix: str  # ".net" or ".prototxt"


@dataclass
class Case:
    """One input: where it came from, what was done to it, and its bytes."""

    seed: int
    index: int
    origin: str
    suffix: str
    data: bytes
    mutations: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"s{self.seed}-c{self.index}"


def seed_files(root: Path = ROOT) -> list[Seed]:
    """Every shipped spec and every shared Caffe prototxt (skipped when absent)."""
    out = [Seed(p.name, p.read_text(encoding="utf-8"), ".net")
           for p in sorted((root / "specs").glob("*.net"))]
    caffe = root.parent / "shared" / "caffe"
    if caffe.is_dir():
        out += [Seed(p.name, p.read_text(encoding="utf-8"), ".prototxt")
                for p in sorted(caffe.rglob("*.prototxt"))]
    return out


# --------------------------------------------------------------------------- tokens

_TOKEN = re.compile(r"""
    (?P<ws>\s+) | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[fF]?)
  | (?P<var>\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>//|.)
""", re.VERBOSE | re.DOTALL)


def tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs covering ``text`` exactly (whitespace and comments included)."""
    return [(m.lastgroup or "punct", m.group()) for m in _TOKEN.finditer(text)]


def _join(toks: Sequence[tuple[str, str]]) -> str:
    return "".join(t for _, t in toks)


def _solid(toks: Sequence[tuple[str, str]], kind: str | None = None) -> list[int]:
    return [i for i, (k, _) in enumerate(toks)
            if k not in ("ws", "comment") and (kind is None or k == kind)]


#: Numbers no spec should have: zero, negatives, overflowing ints and floats, tiny,
#: huge and non-finite values (as words, since the grammar has no nan literal).
HOSTILE_NUMBERS = (
    "0", "-1", "1", "-0.0", "0.5", "2147483647", "2147483648", "4294967296",
    "9223372036854775807", str(2**63), str(2**64), "-" + str(2**63), "1e309", "-1e309",
    "1e-320", "1e6", "65536", "100000", "nan", "inf", "-inf", "1.5e300", "3f", "0x10",
    "9" * 400, "9" * 5000, "1" + "0" * 4301, "0." + "0" * 400 + "1",
)
PLAUSIBLE_NUMBERS = ("1", "2", "3", "4", "5", "7", "8", "16", "64", "0.5", "0.1", "1e-3")
HOSTILE_STRINGS = (
    '""', '"${"', '"${x"', '"${1/0}"', '"${$x}"', '"\\\\"', '"' + "a" * 10000 + '"',
    '"/dev/zero"', '"${i}${i}${i}"', '"\\u0000"', '"..."', "'\\''", '"é✓"',
    '"conv1"', '"data"', '"label"',
)
WORDS = ("group", "repeat", "let", "as", "import", "replace", "update", "remove", "insert",
         "after", "before", "layer", "layers", "input", "top", "bottom", "name", "type",
         "phase", "TEST", "TRAIN", "MAX", "AVE", "true", "false", "solver", "data", "shape",
         "dim", "param", "include", "exclude", "devices", "state", "input_dim")


def _tok(rng: random.Random, toks: list[tuple[str, str]]) -> str:
    solid = [t for k, t in toks if k not in ("ws", "comment")]
    return rng.choice(solid) if solid else "x"


def m_delete(rng: random.Random, text: str, big: bool) -> str:
    toks = tokens(text)
    idx = _solid(toks)
    for _ in range(rng.choice((1, 1, 2, 5))):
        if idx:
            toks[rng.choice(idx)] = ("ws", " ")
    return _join(toks)


def m_duplicate(rng: random.Random, text: str, big: bool) -> str:
    toks = tokens(text)
    idx = _solid(toks)
    if not idx:
        return text + text
    i = rng.choice(idx)
    j = min(len(toks), i + rng.choice((1, 1, 3, 12, 40)))
    return _join(toks[:j] + [("ws", " ")] + toks[i:j] + toks[j:])


def m_swap(rng: random.Random, text: str, big: bool) -> str:
    toks = tokens(text)
    idx = _solid(toks)
    if len(idx) < 2:
        return text
    a = rng.choice(idx)
    b = rng.choice(idx) if rng.random() < 0.5 else idx[min(idx.index(a) + 1, len(idx) - 1)]
    toks[a], toks[b] = toks[b], toks[a]
    return _join(toks)


def m_insert_token(rng: random.Random, text: str, big: bool) -> str:
    toks = tokens(text)
    pool = ("{", "}", "[", "]", "(", ")", ":", ",", ";", "$", "$x", "-", "*", "//", "%",
            "${", "\"", "'", "#", *WORDS, _tok(rng, toks))
    i = rng.randrange(len(toks) + 1)
    return _join(toks[:i] + [("ws", " "), ("name", rng.choice(pool)), ("ws", " ")] + toks[i:])


def m_number(rng: random.Random, text: str, big: bool) -> str:
    """Replace numbers with hostile ones (all of them, sometimes)."""
    toks = tokens(text)
    idx = _solid(toks, "number")
    if not idx:
        return m_insert_token(rng, text, big)
    pool = HOSTILE_NUMBERS if big else tuple(n for n in HOSTILE_NUMBERS if len(n) < 1000)
    if rng.random() < 0.5:  # plausible values instead: the net gets past parsing more often
        pool = PLAUSIBLE_NUMBERS
    for i in (idx if rng.random() < 0.1 else rng.sample(idx, min(len(idx), rng.choice((1, 3))))):
        toks[i] = ("number", rng.choice(pool))
    return _join(toks)


def m_string(rng: random.Random, text: str, big: bool) -> str:
    toks = tokens(text)
    idx = _solid(toks, "string")
    if not idx:
        return m_insert_token(rng, text, big)
    strings = [t for k, t in toks if k == "string"]
    toks[rng.choice(idx)] = ("string", rng.choice(HOSTILE_STRINGS + tuple(strings)))
    return _join(toks)


def m_name(rng: random.Random, text: str, big: bool) -> str:
    toks = tokens(text)
    idx = _solid(toks, "name")
    if not idx:
        return m_insert_token(rng, text, big)
    names = [t for k, t in toks if k == "name"]
    toks[rng.choice(idx)] = ("name", rng.choice(WORDS + tuple(names)))
    return _join(toks)


def m_truncate(rng: random.Random, text: str, big: bool) -> str:
    return text[:rng.randrange(len(text) + 1)]


def _depth(rng: random.Random, big: bool) -> int:
    return rng.choice((30, 200, 1100, 3000) + ((20000, 100000) if big else ()))


def m_deep_nesting(rng: random.Random, text: str, big: bool) -> str:
    """A value or block nested thousands deep, put where a number was or at the end."""
    n = _depth(rng, big)
    how = rng.randrange(5)
    if how == 0:
        value = "[" * n + "1" + "]" * n
    elif how == 1:
        value = "(" * n + "1" + ")" * n
    elif how == 2:
        value = "-" * n + "1"
    elif how == 3:
        value = "1" + " + 1" * n
    else:
        return text + "\nnest " + "{ nest " * n + "{ a: 1 }" + "}" * n + "\n"
    toks = tokens(text)
    idx = _solid(toks, "number")
    if not idx:
        return text + f"\nkernel_size: {value}\n"
    toks[rng.choice(idx)] = ("number", value)
    return _join(toks)


def _first_number(rng: random.Random, text: str, value: str) -> str:
    toks = tokens(text)
    idx = _solid(toks, "number")
    if idx:
        toks[rng.choice(idx)] = ("var", value)
        return _join(toks)
    return text + f"\nfuzz_field: {value}\n"


def m_let_chain(rng: random.Random, text: str, big: bool) -> str:
    """``let``s that grow: ints squared, strings doubled, long chains; used in a field."""
    n = rng.choice((10, 70, 200, 2000) + ((20000,) if big else ()))
    how = rng.randrange(4)
    if how == 0:    # doubling strings: 2**n characters
        lets = ['let s0 = "ab"'] + [f"let s{i} = $s{i-1} + $s{i-1}" for i in range(1, n)]
        use = f"$s{n-1}"
    elif how == 1:  # squaring ints: 2**(2**n)
        lets = ["let v0 = 2"] + [f"let v{i} = $v{i-1} * $v{i-1}" for i in range(1, n)]
        use = f"$v{n-1}"
    elif how == 2:  # interpolation doubling
        lets = ['let s0 = "xy"'] + [f'let s{i} = "${{s{i-1}}}${{s{i-1}}}"' for i in range(1, n)]
        use = f"$s{n-1}"
    else:           # a long chain of additions, and a cycle sometimes
        lets = ["let v0 = 1"] + [f"let v{i} = $v{i-1} + 1" for i in range(1, n)]
        if rng.random() < 0.3:
            lets[0] = f"let v0 = $v{n-1}"
        use = f"$v{n-1}"
    return "\n".join(lets) + "\n" + _first_number(rng, text, use)


def m_repeat(rng: random.Random, text: str, big: bool) -> str:
    count = rng.choice(("0", "-1", "3", "1000", "100000", "1e6", str(2**63), "1e309",
                        "2.5", '"3"', "$missing") + ((str(10**9),) if big else ()))
    inner = rng.choice(('layer { name: "r${i}" type: ReLU }',
                        'repeat 1000 as j { layer { name: "r${i}_${j}" type: ReLU } }',
                        "kernel_size: $i", ""))
    return text + f"\nrepeat {count} as i {{ {inner} }}\n"


def m_in_place(rng: random.Random, text: str, big: bool) -> str:
    """A long chain of in-place layers on some blob the spec names."""
    blobs = [t for k, t in tokens(text) if k == "string"] or ['"data"']
    blob = rng.choice(blobs)
    n = rng.choice((5, 300, 3000))
    kind = rng.choice(("ReLU", "Dropout", "Sigmoid", "Scale", "BatchNorm"))
    body = "".join(f'layer {{ name: "ip{i}" type: {kind} bottom: {blob} top: {blob} }}\n'
                   for i in range(n))
    return text + "\n" + body


def m_import(rng: random.Random, text: str, big: bool) -> str:
    path = rng.choice(SPECIAL_IMPORTS)
    return f'import "{path}"\n' + text


def m_nul(rng: random.Random, text: str, big: bool) -> str:
    i = rng.randrange(len(text) + 1)
    return text[:i] + "\x00" * rng.choice((1, 3)) + text[i:]


def m_control(rng: random.Random, text: str, big: bool) -> str:
    i = rng.randrange(len(text) + 1)
    junk = rng.choice(("\ufeff", "\r", "\x0b\x0c", "\u2028", "\x1b[31m", "\ud800", "𝟙"))
    return text[:i] + junk + text[i:]


Mutator = Callable[[random.Random, str, bool], str]
MUTATORS: dict[str, Mutator] = {
    "delete": m_delete, "duplicate": m_duplicate, "swap": m_swap, "insert": m_insert_token,
    "number": m_number, "string": m_string, "name": m_name, "truncate": m_truncate,
    "nesting": m_deep_nesting, "let_chain": m_let_chain, "repeat": m_repeat,
    "in_place": m_in_place, "import": m_import, "nul": m_nul, "control": m_control,
}
#: Token-level mutators are drawn more often than the structural ones.
WEIGHTS = {"number": 4, "delete": 3, "duplicate": 2, "swap": 2, "insert": 2, "string": 2,
           "name": 2, "truncate": 1, "nesting": 1, "let_chain": 1, "repeat": 1,
           "in_place": 1, "import": 1, "nul": 1, "control": 1}

#: Byte-level damage, after the text mutators: invalid UTF-8 of several kinds.
BAD_BYTES = (b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80")


def encode(rng: random.Random, text: str, mutations: list[str]) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.05:
        i = rng.randrange(len(data) + 1)
        data = data[:i] + rng.choice(BAD_BYTES) + data[i:]
        mutations.append("bad_utf8")
    return data


# --------------------------------------------------------------------------- generator


class Chooser(Protocol):
    """The choices a generator makes: from a ``random.Random`` or a hypothesis ``draw``."""

    def integer(self, lo: int, hi: int) -> int: ...

    def pick(self, options: Sequence[Any]) -> Any: ...


class RandomChooser:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def pick(self, options: Sequence[Any]) -> Any:
        return options[self.rng.randrange(len(options))]


SMALL_INTS = (0, 1, 1, 2, 3, 3, 5, 7, 16, -1, 2**31, 10**6)
FLOATS = ("0.5", "1e-4", "0", "-1", "2.0", "1e300", "0.75")


def _value(c: Chooser, default: Any, layers: Sequence[str]) -> str:
    """A value for a field whose default is ``default`` (a wrong kind, sometimes)."""
    if c.integer(0, 9) == 0:
        return str(c.pick(("true", "MAX", '"x"', "[1, 2]", "{ a: 1 }", "-3", "1e309",
                           "gaussian(0.01)", "$undefined", "max(1, 2)", "letter(30)")))
    if isinstance(default, bool):
        return str(c.pick(("true", "false")))
    if isinstance(default, enum.Enum):
        return str(c.pick([m.name for m in type(default)] + ["BOGUS", "0", "7"]))
    if isinstance(default, int):
        return str(c.pick(SMALL_INTS))
    if isinstance(default, float):
        return str(c.pick(FLOATS))
    if isinstance(default, str):
        return str(c.pick(('""', '"a"', f'"{c.pick(layers)}"')))
    if isinstance(default, tuple | list):
        n = c.integer(0, 3)
        return "[" + ", ".join(str(c.pick(SMALL_INTS[:8])) for _ in range(n)) + "]"
    if dataclasses.is_dataclass(default):
        return str(c.pick(("constant(0)", "gaussian(0.01)", "xavier()", "msra()",
                           "uniform(-1, 1)", "{ type: \"constant\" value: 1 }")))
    return str(c.pick(("1", "[]")))


def _defaults(params: Any) -> list[tuple[str, Any]]:
    out = []
    for f in dataclasses.fields(params):
        if f.default is not dataclasses.MISSING:
            out.append((f.name, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            out.append((f.name, f.default_factory()))
        else:
            out.append((f.name, 0))
    return out


def random_spec(c: Chooser) -> str:
    """A small .net spec from the grammar: an input, a chain of layers of any registered
    type with a few of their fields, and sometimes lets, repeats, groups and edits."""
    from netdsl.layers import TYPES

    types = sorted(TYPES)
    lines = [f'name: "fuzz{c.integer(0, 9)}"']
    two = c.integer(0, 3) == 0
    if two or c.integer(0, 9) == 0:
        lines.append('devices: ["gpu:0", "gpu:1"]' if two else
                     str(c.pick(('devices: ["gpu:0"]', "devices: []", 'devices: ["cpu"]'))))
    let = c.integer(0, 2) == 0
    if let:
        lines.append("let w = " + str(c.pick(("1", "2", "3", "0.5", "0", "-1", '"a"'))))
    dims = [str(c.pick((1, 1, 2, 3, 4, 8, 5, 17, 0))) for _ in range(c.integer(0, 4))]
    lines.append(f'input {{ name: "data" shape: [{", ".join(dims)}] }}')
    blobs = ["data"]
    for i in range(c.integer(0, 6)):
        kind = TYPES[c.pick(types)]
        fields = dict(_defaults(kind.Params))
        parts = [f'name: "l{i}"', f"type: {kind.name}"]
        if c.integer(0, 3) == 0:
            parts.append(f'bottom: "{c.pick(blobs)}"')
        if c.integer(0, 5) == 0:
            parts.append(f'top: "{c.pick(blobs)}"')
        given = {k: str(c.integer(1, 4)) for k in ("num_output", "kernel_size") if k in fields}
        if let and "num_output" in given and c.integer(0, 1) == 0:
            given["num_output"] = "2 * $w"
        for _ in range(c.integer(0, 3) if fields else 0):
            name = c.pick(sorted(fields))
            given.setdefault(name, _value(c, fields[name], blobs))
        parts += [f"{k}: {v}" for k, v in given.items()]
        if c.integer(0, 5) == 0:
            parts.append(str(c.pick(("phase: TEST", "include { phase: TRAIN }",
                                     "param { lr_mult: 0 }", "loss_weight: 2")
                                    + (('devices: ["gpu:1"]',) if two else ()))))
        blobs.append(f"l{i}")
        lines.append("layer { " + "  ".join(parts) + " }")
    extra = c.integer(0, 7)
    layers = blobs[1:]
    if extra == 0:
        count = c.pick(("2", "0") + (("$w",) if let else ()))
        lines.append(f'repeat {count} as i {{ layer {{ name: "r${{i}}" type: ReLU '
                     'bottom: "data" top: "data" } }')
    elif extra == 1:
        lines.insert(1, 'group g(a, b = 2) { layer { name: "x" type: ReLU } }')
        lines.append(f'layer {{ name: "gi" type: g bottom: "{c.pick(blobs)}" a: 1 }}')
    elif extra == 2 and layers:
        lines.append(f'remove "{c.pick(layers)}"')
    elif extra == 3 and layers:
        lines.append(f'update "{c.pick(layers)}" {{ num_output: 3 }}')
    elif extra == 4 and layers:
        lines.append(f'insert after "{c.pick(layers)}" {{ layer {{ name: "ins" type: ReLU }} }}')
    elif extra == 5 and layers:
        lines.append(f'replace "{c.pick(layers)}" {{ type: {TYPES[c.pick(types)].name} }}')
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- cases


def mutate(rng: random.Random, text: str, big: bool, mutations: list[str]) -> str:
    names = list(WEIGHTS)
    for name in rng.choices(names, [WEIGHTS[n] for n in names], k=rng.choice((1, 1, 2, 3))):
        text = MUTATORS[name](rng, text, big)
        mutations.append(name)
    return text


def make_case(seed: int, index: int, seeds: Sequence[Seed], big: bool = False,
              generated: float = 0.2) -> Case:
    """Case ``index`` of run ``seed``: a mutated seed file, or a mutated generated spec
    (a ``generated`` fraction). ``big`` allows the costlier hostile sizes (the tool)."""
    rng = random.Random(f"netdsl-fuzz/{seed}/{index}")
    mutations: list[str] = []
    if not seeds or rng.random() < generated:
        origin, suffix, text = "generated", ".net", random_spec(RandomChooser(rng))
        if rng.random() < 0.7:
            text = mutate(rng, text, big, mutations)
    else:
        s = rng.choice(seeds)
        origin, suffix = s.name, s.suffix
        text = mutate(rng, s.text, big, mutations)
    return Case(seed, index, origin, suffix, encode(rng, text, mutations), mutations)


# --------------------------------------------------------------------------- fixed cases

#: A small net that passes every stage, compile included: the base of the hostile cases.
TINY = """name: "tiny"
input { name: "data" shape: [1, 8, 8] }
layer { name: "conv1" type: Convolution num_output: 2 kernel_size: 3 stride: 1
        weight_filler: gaussian(0.01) }
layer { name: "relu1" type: ReLU bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: Pooling pool: MAX kernel_size: 2 stride: 2 }
layer { name: "ip1" type: InnerProduct num_output: 3 }
layer { name: "prob" type: Softmax }
"""


def hostile_cases(big: bool = False) -> list[Case]:
    """Every hostile input of each kind once, on ``TINY``: each hostile number in each
    numeric field, each special import, each nesting form and depth, each growing ``let``,
    each repeat count, long in-place chains, NUL bytes, control characters and invalid
    UTF-8. Deterministic; ``big`` adds the costlier sizes."""
    out: list[str] = []
    names: list[str] = []

    def add(name: str, text: str) -> None:
        names.append(name)
        out.append(text)

    toks = tokens(TINY)
    pool = HOSTILE_NUMBERS if big else tuple(n for n in HOSTILE_NUMBERS if len(n) < 1000)
    spots = _solid(toks, "number")
    for k, num in enumerate(pool):  # each number in two of the fields, round robin
        for i in (spots[k % len(spots)], spots[(k + 5) % len(spots)]):
            add(f"number {toks[i][1]}->{num[:12]}",
                _join(toks[:i] + [("number", num)] + toks[i + 1:]))
    for p in SPECIAL_IMPORTS:
        add(f"import {p!r}", f'import "{p}"\n' + TINY)
    for n in (30, 1100) + ((3000, 20000, 100000) if big else ()):
        for form, value in (("list", "[" * n + "1" + "]" * n), ("parens", "(" * n + "1" + ")" * n),
                            ("minus", "-" * n + "1"), ("sum", "1" + " + 1" * n),
                            ("call", "max(" * n + "1" + ", 1)" * n)):
            add(f"nesting {form} {n}", TINY.replace("num_output: 3", f"num_output: {value}"))
        add(f"nesting blocks {n}", TINY + "nest " + "{ nest " * n + "{ a: 1 }" + "}" * n + "\n")
        add(f"nesting groups {n}", "".join(f"group g{i}() {{ layer {{ type: g{i + 1} }} }}\n"
                                           for i in range(n)) + TINY)
    for n in (64, 2000) + ((20000,) if big else ()):
        for form, lets, use in (
            ("string doubling", ['let s0 = "ab"'] + [f"let s{i} = $s{i-1} + $s{i-1}"
                                                     for i in range(1, n)], f"$s{n-1}"),
            ("interpolation", ['let s0 = "xy"'] + [f'let s{i} = "${{s{i-1}}}${{s{i-1}}}"'
                                                   for i in range(1, n)], f"$s{n-1}"),
            ("int squaring", ["let v0 = 2"] + [f"let v{i} = $v{i-1} * $v{i-1}"
                                                for i in range(1, n)], f"$v{n-1}"),
            ("power", ["let v0 = 10"] + [f"let v{i} = $v{i-1} * $v{i-1} * $v{i-1}"
                                          for i in range(1, n)], f"$v{n-1} % 7"),
            ("chain", ["let v0 = 1"] + [f"let v{i} = $v{i-1} + 1" for i in range(1, n)],
             f"$v{n-1}"),
            ("cycle", [f"let v0 = $v{n-1}"] + [f"let v{i} = $v{i-1}" for i in range(1, n)],
             f"$v{n-1}"),
        ):
            add(f"let {form} {n}", "\n".join(lets) + "\n"
                + TINY.replace("num_output: 3", f"num_output: {use}"))
    big_counts = ("20000", "100000") if big else ()
    for count in ("0", "-1", "3", "2000", "1e6", str(2**63), "1e309", "2.5", '"3"', "$nope",
                  *big_counts):
        add(f"repeat {count}", TINY + f'repeat {count} as i {{ layer {{ name: "r${{i}}" '
            'type: ReLU bottom: "prob" top: "prob" } }\n')
    add("repeat nested", TINY + 'repeat 1000 as i { repeat 1000 as j { layer { '
        'name: "r${i}_${j}" type: ReLU bottom: "prob" top: "prob" } } }\n')
    for n in (300, 1000) + ((10000,) if big else ()):
        add(f"in-place {n}", TINY + "".join(
            f'layer {{ name: "ip{i}" type: ReLU bottom: "prob" top: "prob" }}\n'
            for i in range(n)))
    add("long line", TINY + "a: 1 " * 20000 + "}\n")
    add("long string", TINY + 'name: "' + "x" * 100000 + '" }\n')
    add("many lines", TINY + "# c\n" * 100000 + "}\n")
    for junk in ("\x00", "\x00" * 3, "\ufeff", "\r", "\x0b\x0c", "\u2028", "\x1b[31m", "\ud800"):
        for where in (0, len(TINY) // 2, len(TINY)):
            add(f"control {junk!r} at {where}", TINY[:where] + junk + TINY[where:])
    cases = [Case(-1, i, name, ".net", text.encode("utf-8", "surrogatepass"), [name])
             for i, (name, text) in enumerate(zip(names, out, strict=True))]
    raw = TINY.encode()
    for bad in BAD_BYTES:
        for where in (0, len(raw) // 2, len(raw)):
            cases.append(Case(-1, len(cases), f"bad utf-8 {bad!r} at {where}", ".net",
                              raw[:where] + bad + raw[where:], ["bad_utf8"]))
    return cases
