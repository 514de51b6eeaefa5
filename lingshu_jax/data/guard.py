"""Endings of the data stream that are not "the next batch": a stop request while waiting for data, and a
source that yields nothing good.

- `StopRequest`: a predicate holder shared by the top iterator (`PipelineIterator.stop_when`, set by the
  trainer from its SIGTERM/SIGINT handler) and the packer, which checks it before every record, in
  whichever thread packs. When it turns true the packer raises `DataInterrupted`; grain's prefetch thread
  hands that exception to the waiting main thread, so a signal never leaves the trainer blocked on a queue.
- `SourceWatch`: counts, per source, the good samples and the rejected records (by class) that the packer
  sees. A source whose records in one full pass (its record count on this host, counted from the start
  or twice that after a resume, which may start mid-epoch) were all rejected is an error naming the
  source, its image root, the policy and the top rejection reasons with counts and a first file:line; so
  is a finite stream that ends without one good sample. Nothing else stops on it (skipping stays
  counted).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence


class DataInterrupted(Exception):
    """The data iterator stopped waiting because its stop predicate turned true (e.g. SIGTERM)."""


class StopRequest:
    """`stop()` is True once the predicate given to `set` returns True (None: never)."""

    def __init__(self):
        self.predicate: Callable[[], bool] | None = None

    def set(self, predicate: Callable[[], bool] | None) -> None:
        self.predicate = predicate

    def __call__(self) -> bool:
        p = self.predicate
        return bool(p is not None and p())

    def __getstate__(self):  # (never pickled with a live predicate into a worker)
        return {"predicate": None}


class SourceGuard:
    """What a `SourceWatch` needs to know about the sources: names, image roots, the number of records of
    each that one host sees in a full pass, and the policy text for messages."""

    def __init__(self, names: Sequence[str], roots: Sequence[str], pass_lengths: Sequence[int], policy: str):
        self.names, self.roots, self.policy = list(names), list(roots), policy
        self.pass_lengths = dict(zip(self.names, (max(1, int(n)) for n in pass_lengths)))
        self.root_of = dict(zip(self.names, self.roots))

    def watch(self, resumed: bool = False) -> "SourceWatch":
        return SourceWatch(self, factor=2 if resumed else 1)


class SourceWatch:
    """Per-iterator counters of one `SourceGuard` (not checkpointed: after a restore they start again)."""

    def __init__(self, guard: SourceGuard, factor: int = 1):
        self.guard, self.factor = guard, factor
        self.good: dict[str, int] = {}
        self.rejected: dict[str, dict[str, int]] = {}  # source -> class -> count
        self.first_where: dict[tuple[str, str], str] = {}
        self.any_good = False

    def saw_sample(self, stats: Mapping) -> None:
        for key in stats:
            if key.startswith("samples/"):
                name = key[len("samples/") :]
                self.good[name] = self.good.get(name, 0) + 1
                self.any_good = True

    def saw_skip(self, record: Mapping) -> None:
        name, kind = record.get("source", "?"), record.get("error", "?")
        by_kind = self.rejected.setdefault(name, {})
        by_kind[kind] = by_kind.get(kind, 0) + 1
        self.first_where.setdefault((name, kind), record.get("where", "?"))
        if self.good.get(name, 0) == 0:
            n = sum(by_kind.values())
            if n >= self.guard.pass_lengths.get(name, n + 1) * self.factor:
                raise ValueError(self.message([name], f"in a full pass ({n} records)"))

    def at_end(self) -> None:
        """The finite stream ended: an error if it never yielded a good sample (counts in the message)."""
        if self.factor == 1 and not self.any_good and self.rejected:  # (after a resume: seen only a part)
            raise ValueError(self.message(sorted(self.rejected), "before the data ran out (epochs ended)"))

    def message(self, names: Sequence[str], when: str) -> str:
        parts = []
        for name in names:
            kinds = sorted(self.rejected.get(name, {}).items(), key=lambda kv: -kv[1])
            top = ", ".join(f"{k} {c} (first at {self.first_where[(name, k)]})" for k, c in kinds[:3])
            parts.append(
                f"data source {name!r} (image root {self.guard.root_of.get(name, '?')}) yielded no good "
                f"record {when} under {self.guard.policy}; rejected: {top}"
            )
        return "; ".join(parts) + ". Check the source's paths, image root and format."


def next_batches(it, n: int) -> list[dict] | None:
    """`it.next_batches(n)` for a PipelineIterator; for any other iterator the next n items (None when it
    ends first)."""
    if hasattr(it, "next_batches"):
        return it.next_batches(n)
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            return None
    return out
