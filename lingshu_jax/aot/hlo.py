"""Reading a compiled (optimized, scheduled) HLO module's text: loops, collectives, matmul FLOPs, op bytes.

`compiled.cost_analysis()` counts each while-loop body once (layer scans, gradient-accumulation scans, the
compiler's own loops). Here every computation gets a *multiplier*: how many times it runs per step,
the product of the trip counts of the while loops around it. A loop's trip count is read from its condition
computation (`compare(counter, constant(N)), direction=LT`, the counter starting at 0, as `lax.scan` and
`fori_loop` lower) or from `known_trip_count` in its backend config; a loop whose count cannot be read
counts once (or `parse(..., unknown_trip_count=N)` times) and is listed in `Module.unknown_trip_counts`. Both branches of a `conditional` count fully
(an upper bound).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import defaultdict

import numpy as np

DTYPE_BYTES = {
    "pred": 1, "s4": 0.5, "u4": 0.5, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4,
    "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16, "f8e4m3fn": 1, "f8e5m2": 1,
    "f8e4m3b11fnuz": 1, "f8e4m3fnuz": 1, "f8e5m2fnuz": 1,
}  # fmt: skip
COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
_ARRAY = re.compile(r"\b(" + "|".join(DTYPE_BYTES) + r")\[([\d,]*)\]")
_HEADER = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s*\(.*\{\s*$")
_INSTR = re.compile(r"^\s*(ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
# ops that move no data of their own
FREE_OPS = {
    "parameter", "get-tuple-element", "tuple", "bitcast", "constant", "while", "call", "conditional",
    "after-all", "partition-id", "replica-id", "opt-barrier", "async-start", "async-update", "async-done",
    "copy-done", "all-gather-done", "all-reduce-done", "collective-permute-done", "send-done", "recv-done",
}  # fmt: skip


@dataclasses.dataclass
class Instr:
    name: str
    shape: str  # the result type text, e.g. "bf16[8,128]{1,0}" or "(f32[], s32[4])"
    opcode: str
    operands: list[str]
    args: str  # the operand list as written, e.g. "(%a, %b)" or "(5)" for a constant
    attrs: str  # everything after the operand list


@dataclasses.dataclass
class Module:
    computations: dict[str, list[Instr]]
    entry: str
    multiplier: dict[str, float]  # computation -> executions per step
    fused: set[str]  # computations that are fusion bodies (their ops touch no HBM of their own)
    trip_counts: dict[str, int]  # while instruction name -> trip count
    unknown_trip_counts: list[str]

    def instructions(self):
        """(computation, multiplier, instruction) for every instruction of every reached computation."""
        for comp, instrs in self.computations.items():
            m = self.multiplier.get(comp, 0.0)
            if m:
                for ins in instrs:
                    yield comp, m, ins


def array_bytes(type_text: str) -> list[float]:
    """Bytes of each array in a type text (tuples give several)."""
    out = []
    for dtype, dims in _ARRAY.findall(type_text.split("{")[0] if "(" not in type_text else type_text):
        n = math.prod(int(d) for d in dims.split(",") if d) if dims else 1
        out.append(n * DTYPE_BYTES[dtype])
    return out


def dims_of(type_text: str) -> list[int]:
    m = _ARRAY.search(type_text)
    if not m:
        return []
    return [int(d) for d in m.group(2).split(",") if d]


def parse(text: str, unknown_trip_count: int = 1) -> Module:
    """Optimized HLO text -> Module. `unknown_trip_count`: the count assumed for a while loop whose count
    cannot be read (a data-dependent loop, e.g. a decode loop that stops early: its maximum)."""
    comps: dict[str, list[Instr]] = {}
    entry, current = "", None
    for line in text.splitlines():
        if current is None:
            h = _HEADER.match(line)
            if h:
                current = h.group(2)
                comps[current] = []
                if h.group(1):
                    entry = current
            continue
        if line.strip() == "}":
            current = None
            continue
        m = _INSTR.match(line)
        if m:
            comps[current].append(_instr(m.group(2), m.group(3)))
    if not entry:
        raise ValueError("HLO text has no ENTRY computation")
    return _with_multipliers(comps, entry, unknown_trip_count)


def _instr(name: str, rest: str) -> Instr:
    rest = rest.strip()
    if rest.startswith("("):
        shape, rest = _balanced(rest, "(", ")")
    else:
        shape, _, rest = rest.partition(" ")
    rest = rest.strip()
    opcode, _, rest = rest.partition("(")
    args, tail = _balanced("(" + rest, "(", ")")
    operands = re.findall(r"%([\w.\-]+)", args)
    return Instr(name, shape, opcode.strip(), operands, args, tail)


def _balanced(s: str, open_: str, close: str) -> tuple[str, str]:
    depth = 0
    for i, ch in enumerate(s):
        if ch == open_:
            depth += 1
        elif ch == close:
            depth -= 1
            if depth == 0:
                return s[: i + 1], s[i + 1 :]
    return s, ""


def _called(ins: Instr, key: str) -> list[str]:
    m = re.search(key + r"=%?([\w.\-]+)", ins.attrs)
    return [m.group(1)] if m else []


def _constant(instrs: dict[str, Instr], name: str) -> int | None:
    i = instrs.get(name)
    v = re.fullmatch(r"\((-?\d+)\)", i.args) if i is not None and i.opcode == "constant" else None
    return int(v.group(1)) if v else None


def _gte_index(instrs: dict[str, Instr], name: str) -> int | None:
    i = instrs.get(name)
    m = re.search(r"index=(\d+)", i.attrs) if i is not None and i.opcode == "get-tuple-element" else None
    return int(m.group(1)) if m else None


def _loop_step(body: list[Instr], index: int) -> int:
    """The increment of the loop counter at tuple `index` in the body (`counter + c` at the root); 1 if unseen.
    XLA's windowed einsums (collective matmuls) count 0, 2, 4... over two shards per iteration."""
    by_name = {i.name: i for i in body}
    root = body[-1] if body else None
    if root is None or root.opcode != "tuple" or index >= len(root.operands):
        return 1
    nxt = by_name.get(root.operands[index])
    if nxt is None or nxt.opcode != "add":
        return 1
    for a, b in (nxt.operands, nxt.operands[::-1]):
        if _gte_index(by_name, a) == index and (c := _constant(by_name, b)):
            return c
    return 1


def _trip_count(ins: Instr, comps: dict[str, list[Instr]]) -> int | None:
    """Iterations of a while loop: the backend's known_trip_count, else `counter < limit` in the condition
    with the counter's step read from the body (counting from 0)."""
    m = re.search(r'"known_trip_count":\{"n":"(\d+)"', ins.attrs)
    if m:
        return int(m.group(1))
    for cond in _called(ins, "condition"):
        instrs = comps.get(cond, [])
        by_name = {i.name: i for i in instrs}
        for i in instrs:
            if i.opcode == "compare" and "direction=LT" in i.attrs and len(i.operands) == 2:
                counter, limit = i.operands
                n = _constant(by_name, limit)
                if n is None:
                    continue
                index = _gte_index(by_name, counter)
                step = 1
                if index is not None:
                    step = max(
                        1, max((_loop_step(comps.get(b, []), index) for b in _called(ins, "body")), default=1)
                    )
                return -(-n // step)
    return None


def _with_multipliers(comps: dict[str, list[Instr]], entry: str, unknown_count: int = 1) -> Module:
    mult: dict[str, float] = defaultdict(float)
    fused: set[str] = set()
    trips: dict[str, int] = {}
    unknown: list[str] = []

    def visit(comp: str, m: float, depth: int = 0):
        if comp not in comps or depth > 64:
            return
        mult[comp] += m
        for ins in comps[comp]:
            if ins.opcode == "while":
                n = _trip_count(ins, comps)
                if n is None:
                    unknown.append(ins.name)
                    n = unknown_count
                trips[ins.name] = n
                for c in _called(ins, "body"):
                    visit(c, m * n, depth + 1)
            elif ins.opcode == "fusion":
                for c in _called(ins, "calls"):
                    fused.add(c)
                    visit(c, m, depth + 1)
            elif ins.opcode == "conditional":
                names = re.findall(r"%([\w.\-]+)", _attr_block(ins.attrs, "branch_computations"))
                names += _called(ins, "true_computation") + _called(ins, "false_computation")
                for c in names:
                    visit(c, m, depth + 1)
            elif ins.opcode in ("call", "async-start") or ins.opcode.endswith("-start"):
                for c in _called(ins, "calls") + _called(ins, "to_apply") * (ins.opcode == "call"):
                    visit(c, m, depth + 1)

    visit(entry, 1.0)
    return Module(comps, entry, dict(mult), fused, trips, unknown)


def _attr_block(attrs: str, key: str) -> str:
    i = attrs.find(key + "={")
    return _balanced(attrs[i + len(key) + 1 :], "{", "}")[0] if i >= 0 else ""


# --------------------------------------------------------------------------------------- collectives
def collective_kind(opcode: str) -> str | None:
    base = opcode.removesuffix("-start")
    return base if base in COLLECTIVES else None


def group_size(attrs: str, num_devices: int) -> int:
    """Participants per group from replica_groups (explicit, iota or mesh form); all devices if absent."""
    m = re.search(r"replica_groups=\[(\d+),(\d+)\]<=", attrs)
    if m:
        return int(m.group(2))
    m = re.search(r"replica_groups=\{\{([\d,]*)\}", attrs)
    if m:
        return len(m.group(1).split(","))
    m = re.search(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}", attrs)
    if m:
        sizes = dict(re.findall(r"'(\w+)'=(\d+)", m.group(1)))
        return math.prod(int(sizes.get(a, 1)) for a in re.findall(r"'(\w+)'", m.group(2))) or num_devices
    m = re.search(r"source_target_pairs=\{([^}]*(?:\}[^}]*)*)\}", attrs)
    return num_devices if not m else 2


def replica_groups(attrs: str) -> list[list[int]] | None:
    """Explicit device groups when the text gives them (explicit or iota form), else None."""
    m = re.search(r"replica_groups=\[(\d+),(\d+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?", attrs)
    if m:
        g, n = int(m.group(1)), int(m.group(2))
        dims = [int(x) for x in m.group(3).split(",")]
        ids = np.arange(math.prod(dims)).reshape(dims)
        if m.group(4):
            ids = ids.transpose([int(x) for x in m.group(4).split(",")])
        return ids.reshape(g, n).tolist()
    m = re.search(r"replica_groups=\{(\{[\d,]*\}(?:,\{[\d,]*\})*)\}", attrs)
    if m:
        return [[int(x) for x in grp.split(",") if x] for grp in re.findall(r"\{([\d,]*)\}", m.group(1))]
    return None


def collective_buffer_bytes(kind: str, ins: Instr, shapes: dict[str, str]) -> float:
    """The full-size buffer of a collective: gathered result (all-gather), scattered input
    (reduce-scatter), the reduced / exchanged / permuted arrays (all-reduce, all-to-all, permute)."""
    result = [b for b in array_bytes(ins.shape) if b >= 4] or array_bytes(ins.shape)
    operands = [b for op in ins.operands for b in array_bytes(shapes.get(op, ""))]
    if kind == "all-gather":
        return max(result, default=0.0)
    if kind == "reduce-scatter":
        return max(operands + result, default=0.0)
    if kind == "collective-permute":
        return max(operands or result, default=0.0)
    if ins.opcode.endswith("-start") and operands:
        return float(sum(operands))
    return float(sum(result))


def wire_fraction(kind: str, n: int) -> float:
    """Bytes each participant sends per buffer byte (ring algorithms)."""
    if n <= 1:
        return 0.0
    return {"all-reduce": 2 * (n - 1) / n, "collective-permute": 1.0}.get(kind, (n - 1) / n)


# ------------------------------------------------------------------------------------------- flops
def matmul_flops(ins: Instr, shapes: dict[str, str]) -> float:
    """2 * output elements * contraction size for dot / convolution (as TPU HLO writes matmuls)."""
    out = math.prod(dims_of(ins.shape) or [0])
    if ins.opcode == "dot":
        lhs = dims_of(shapes.get(ins.operands[0], "")) if ins.operands else []
        m = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", ins.attrs)
        k = math.prod(lhs[int(i)] for i in m.group(1).split(",") if i) if (m and lhs) else 1
        return 2.0 * out * k
    if ins.opcode == "convolution" and len(ins.operands) >= 2:
        rhs = dims_of(shapes.get(ins.operands[1], ""))
        m = re.search(r"dim_labels=\w*_(\w+)->", ins.attrs)
        if not rhs or not m or "i" not in m.group(1):
            return 0.0
        k = rhs[m.group(1).index("i")]
        w = re.search(r"window=\{size=([\dx]+)(?: pad=([\d_x-]+))?", ins.attrs)
        if w:
            sizes = [int(x) for x in w.group(1).split("x")]
            pads = [tuple(int(v) for v in p.split("_")) for p in w.group(2).split("x")] if w.group(2) else []
            d = re.search(r"lhs_dilate=([\dx]+)", ins.attrs)
            dilate = [int(x) for x in d.group(1).split("x")] if d else [1] * len(sizes)
            for j, size in enumerate(sizes):
                # XLA writes batched matmuls as windows that meet one real tap per output: padded by
                # size-1 on both sides, or over an input dilated by the window size
                if not (j < len(pads) and pads[j] == (size - 1, size - 1) and size > 1):
                    k *= -(-size // dilate[j])
        return 2.0 * out * k
    return 0.0


def in_place_bytes(ins: Instr, module: Module, shapes: dict[str, str]) -> float:
    """HBM bytes that operand + result accounting overstates for an in-place dynamic-update-slice (alone or
    as the root of a fusion): it writes its update into the buffer it aliases, so the buffer is neither
    read nor written whole; the update's bytes (read and written) stay counted. 0 for any other op."""
    if ins.shape.startswith("("):
        return 0.0
    if ins.opcode == "dynamic-update-slice":
        dus, table = ins, shapes
    elif ins.opcode == "fusion":
        dus, table = None, {}
        for c in _called(ins, "calls"):
            body = module.computations.get(c, [])
            roots = [
                i
                for i in body
                if i.opcode == "dynamic-update-slice" and dims_of(i.shape) == dims_of(ins.shape)
            ]
            if body and roots and roots[-1] is body[-1]:
                dus, table = roots[-1], shape_table(body)
        if dus is None:
            return 0.0
    else:
        return 0.0
    buffer = sum(array_bytes(ins.shape))
    update = sum(array_bytes(table.get(dus.operands[1], ""))) if len(dus.operands) > 1 else 0.0
    return max(0.0, 2 * buffer - update)  # the update stays: read once (an operand), written once


def _sliced_parameter_bytes(ins: Instr, module: Module) -> dict[int, float]:
    """Fusion operand index -> bytes actually read, for operands that the fused computation only reads
    through dynamic-slices (a scan body's per-layer slice of stacked weights reads one layer, not all)."""
    out: dict[int, float] = {}
    for c in _called(ins, "calls"):
        body = module.computations.get(c, [])
        params = {
            i.name: int(i.args.strip("()"))
            for i in body
            if i.opcode == "parameter" and i.args.strip("()").isdigit()
        }
        users: dict[str, list[Instr]] = defaultdict(list)
        for i in body:
            for op in i.operands:
                if op in params:
                    users[op].append(i)
        for name, idx in params.items():
            us = users.get(name, [])
            if us and all(u.opcode == "dynamic-slice" and u.operands[:1] == [name] for u in us):
                out[idx] = sum(sum(array_bytes(u.shape)) for u in us)
    return out


def hbm_bytes(ins: Instr, module: Module, shapes: dict[str, str]) -> float:
    """Bytes a top-level op reads and writes in HBM: its operands and result, except that
    - an async op's `-done` half moves nothing of its own (its `-start` is counted),
    - an async copy moves its operand twice (read, write), a (dynamic) slice its result twice,
    - a fusion reads only the slices of operands it uses through dynamic-slices,
    - an in-place dynamic-update-slice moves its update, not its buffer (`in_place_bytes`)."""
    if ins.opcode.endswith("-done"):
        return 0.0
    operand = [sum(array_bytes(shapes.get(op, ""))) for op in ins.operands]
    result = sum(array_bytes(ins.shape))
    if ins.opcode == "copy-start":
        return 2.0 * sum(operand)
    if ins.opcode in ("dynamic-slice", "slice"):
        return 2.0 * result
    if ins.opcode == "slice-start":  # result tuple: (operands, slice, context)
        return 2.0 * max(0.0, result - sum(operand))
    if ins.opcode == "fusion":
        for idx, read in _sliced_parameter_bytes(ins, module).items():
            if idx < len(operand):
                operand[idx] = min(operand[idx], read)
    return result + sum(operand) - in_place_bytes(ins, module, shapes)


def shape_table(instrs: list[Instr]) -> dict[str, str]:
    return {i.name: i.shape for i in instrs}
