"""Stage 5: :class:`syntax.File` -> :class:`syntax.Spec`: imports, variables, groups, edits.

The output is flat: top-level fields whose values are literals (scalars, lists and blocks
of literals). Nothing after this stage sees an import, a variable or a group.

Modules, in the order ``resolver.py`` chains them: ``imports`` (the import tree, cycles,
merging), ``expressions`` (scopes, lets, evaluation, ``${}``; ``functions`` holds the
built-ins), ``overrides`` (``--set``), ``groups`` (groups, repeat, naming, wiring),
``edits`` (replace, update, remove, insert); ``common`` holds the helpers they share.

Semantics
=========

**Imports.** ``import "x.net"`` is relative to the importing file's folder. All imports
are loaded first (``load(path, span)`` gets an absolute path); a cycle is an error at
the import statement that starts it (in the file imported again), showing the chain
(``a.net -> b.net -> a.net``) with a note at each further import in it,
and a file that cannot be read is an error at the import statement naming the resolved
path. Each file is resolved on its own (imports merged, then its own items expanded,
then its own edits applied), so an imported file's edits see only that file's layers.
Merging an importer over what it imports (imported items first, at their positions):

* a top-level non-block field replaces all imported fields with the same key;
* a ``layer {}`` whose name equals an imported layer's name replaces that layer at its
  position; if it says a phase (``phase:`` or ``include { phase }``) it replaces the
  imported layer(s) of that name and phase (or, if none, those without a phase). A name
  that is an imported group instance's (``t1``) stands for all its layers (``t1/...``),
  so a variant can re-instantiate an imported instance with other arguments;
* any other block merges field by field, recursively, into the imported blocks with the
  same key and the same ``name`` (none for ``solver {}``), with the same phase rule,
  except that an importer's block without a phase merges into every phase's block (so
  ``data { root: "/x" }`` changes the TRAIN and the TEST source at once). Inside a merged
  block a key (repeated or not) replaces all the imported occurrences of that key.

Variables (``let``), group definitions and the names they define are shared by the
whole import tree: the importer's ``let`` (and then ``--set``) overrides the imported
one *everywhere*, including inside the imported file's layers (late binding: that is
what makes a variant a few lines). Defining the same variable or group twice in one
file is an error.

**Expressions.** Lets are evaluated lazily, in any order, once, with cycle detection;
every top-level let is evaluated at the end so that an error in an unused one is still
reported. ``let`` inside any ``{ }`` body (a group, a repeat, a layer) is local to that
body. Arithmetic ``+ - * / // %`` and unary minus on ints and floats (``/`` always
gives a float, ``//`` floors), ``+`` also joins strings and lists. Functions:
``int round floor ceil min max abs str letter`` and the filler constructors
``constant gaussian uniform xavier msra bilinear positive_unitball``, which return a
filler block. ``letter(n)`` counts like spreadsheet columns: a..z, aa, ab, ...
In ``"conv${i + 1}"`` the text inside ``${...}`` is an expression in which a bare name is
a variable (``$i`` works too); its columns in error messages assume no escapes precede it
in the string.

**Groups.** ``group NAME(p1, p2 = default) { ... }`` is instantiated by a layer whose
type is NAME (``type: NAME`` with named arguments as fields, or ``type: NAME(a, b)``
positionally, or both). In the body: the params, ``$name`` (the instance's name),
``$bottom``/``$bottoms`` (its bottoms; ``$bottom`` defaults to the previous layer's first
top, as an omitted bottom does in ``build``), ``$top``/``$tops`` (default: its name).
Defaults are evaluated lazily in the group's scope, so they may use earlier params.
Naming is hygienic by *how a name is written*: an inner name or top written as a plain
literal (``name: "conv"``) is local and becomes ``inst/conv``; a literal inner bottom
naming a local name or top is prefixed the same way; anything computed -- interpolated
(``"${name}_branch2a"``) or taken from a variable (``$bottom``, ``$top``, an argument) --
is left as it is. That is how ``resnet50.net`` keeps Caffe's names (``res2a_branch2a``)
and how a body reads its input (``bottom: $bottom``). A computed inner name must itself
be unique per instance (include ``${name}``). The instance's output blob is the first top
of the body's last layer; a ``bottom: "inst"`` anywhere reads it (resolved at the very
end, so an importer may still replace the instance, and only where no layer makes a blob
called "inst"), and an explicit instance ``top:`` other than its name renames that blob.
The instance's ``devices``, ``phase``, ``include`` and ``exclude`` are copied onto every
inner layer that does not set its own (phase, include and exclude count as one setting).
Nesting deeper than 32 instances or making more than 100,000 layers is a "runaway
expansion" error. These and the other front-end limits (nesting depth, integer digits and
bits, string length, value size, imports) are in ``netdsl/limits.py``; each is checked
before the work it bounds, and ``NETDSL_MAX_<NAME>`` raises it.

**Repeat.** ``repeat N as i { ... }`` expands its items N times with ``$i`` = 0..N-1, at
top level, in group bodies, in insert bodies and inside any block (to repeat fields).
N must be a positive integer (at most 100,000).

**Edits** (``replace``, ``update``, ``remove``, ``insert``) run after the file's items are
expanded and merged with its imports, in file order, on the flat layer list; a target
name is interpolated and names every layer so called (Caffe's TRAIN/TEST pairs).
``replace`` keeps the old layer's wiring (name, bottom, top, devices, phase, include,
exclude -- unless the new body sets them) and takes the rest from its body; without a
``type`` it acts as ``update``; a group type makes it an instance wired in the old
layer's place. ``update`` replaces all occurrences of each key it sets (blocks are
replaced, not merged). ``remove`` rewires the readers of the removed layer's tops to its
bottoms, pairwise, up to and including the first layer that rewrites that blob in place
(which keeps its top and so takes over the blob). ``insert after``/``before`` chains the
new layers from the target's first top (after) or first bottom (before), fills each
missing top with the layer's name, and moves every later reader of that blob (the
target itself, for ``before``), in-place writers included, to the last new top.

**Errors** inside expanded code are raised at the span inside the group/repeat body, with
notes naming the instance and repeat iteration they were expanded from; layer fields
carry the same notes (``Field.notes``) for later stages.

``--set`` overrides (``overrides``): ``name=value`` replaces an existing let (value parsed
as an expression; text that does not parse is a string); ``a.b=value`` sets field ``b``
inside top-level block ``a`` (or, if there is none, the layer named ``a``; else the
block is created), the value parsed as a literal, else taken as a string.
"""

from .functions import FUNCTIONS
from .imports import Loader, default_loader
from .resolver import resolve

__all__ = ["FUNCTIONS", "Loader", "default_loader", "resolve"]
