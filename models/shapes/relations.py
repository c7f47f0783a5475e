"""Spatial relations on the shapes world's 3x3 grid: what "above", "below", "left of", "right
of" and "next to" mean, and a search for a layout that satisfies them.

Cells are numbered 0-8 in reading order (row = index // 3 from the top, column = index % 3 from
the left), the order of ``models.shapes.world.POSITIONS``. A relation holds between two *groups*
of objects (``first`` and ``second``):

- ``above``: every object of ``first`` is in a higher row than every object of ``second`` (its
  centre is at least one cell higher), in any column; ``below`` the other way round.
- ``left of``: every object of ``first`` is in a column further left than every object of
  ``second``, in any row; ``right of`` the other way round.
- ``next to``: every object of either group shares a cell edge (left, right, up or down; not a
  diagonal) with at least one object of the other group.

How badly a relation is broken is a share in [0, 1]: for the four directions the share of
(first, second) object pairs in the wrong order, for ``next to`` the share of objects with no
neighbour in the other group.
"""

from __future__ import annotations

from typing import Mapping, Sequence

RELATIONS: tuple[str, ...] = ("above", "below", "left of", "right of", "next to")
CELLS = 9

#: (relation, first group's indices, second group's indices) -- indices into a list of objects
RelationTriple = tuple[str, tuple[int, ...], tuple[int, ...]]


def _row_col(cell: int) -> tuple[int, int]:
    return divmod(cell, 3)


def _in_order(kind: str, a: int, b: int) -> bool:
    """Whether cell ``a`` stands in the directional relation ``kind`` to cell ``b``."""
    (ra, ca), (rb, cb) = _row_col(a), _row_col(b)
    return {"above": ra < rb, "below": ra > rb, "left of": ca < cb, "right of": ca > cb}[kind]


def neighbours(a: int, b: int) -> bool:
    """Whether cells ``a`` and ``b`` share an edge."""
    (ra, ca), (rb, cb) = _row_col(a), _row_col(b)
    return abs(ra - rb) + abs(ca - cb) == 1


def broken(kind: str, first: Sequence[int], second: Sequence[int]) -> tuple[float, list[tuple[int | None, int | None]]]:
    """How badly ``first`` ``kind`` ``second`` is broken by objects in these cells: the share in
    [0, 1] (0: it holds) and the culprits, as (first cell, second cell) pairs in the wrong order
    for the directions, and (cell, None) / (None, cell) for objects with no neighbour for
    ``next to``. A group with no object breaks nothing (a missing object is its own failure)."""
    if kind not in RELATIONS:
        raise ValueError(f"unknown relation {kind!r}")
    if not first or not second:
        return 0.0, []
    culprits: list[tuple[int | None, int | None]]
    if kind == "next to":
        culprits = [(a, None) for a in first if not any(neighbours(a, b) for b in second)]
        culprits += [(None, b) for b in second if not any(neighbours(a, b) for a in first)]
        return len(culprits) / (len(first) + len(second)), culprits
    culprits = [(a, b) for a in first for b in second if not _in_order(kind, a, b)]
    return len(culprits) / (len(first) * len(second)), culprits


def _hopeless(relations: Sequence[RelationTriple], cells: Mapping[int, int]) -> bool:
    """Whether a partial layout already breaks a relation whatever the unplaced objects do."""
    taken = set(cells.values())
    for kind, first, second in relations:
        if kind != "next to":
            if any(a in cells and b in cells and not _in_order(kind, cells[a], cells[b]) for a in first for b in second):
                return True
            continue
        for group, other in ((first, second), (second, first)):
            for i in group:
                if i not in cells:
                    continue
                around = [c for c in range(CELLS) if neighbours(cells[i], c)]
                hosts = {cells[j] for j in other if j in cells}
                if not any(c in hosts or c not in taken for c in around):
                    return True
    return False


def arrange(
    count: int,
    relations: Sequence[RelationTriple],
    *,
    fixed: Mapping[int, int] | None = None,
    preferred: Mapping[int, int] | None = None,
    order: Sequence[int] = (4, 0, 1, 2, 3, 5, 6, 7, 8),
) -> list[int] | None:
    """A distinct cell for each of ``count`` objects such that every relation holds, or ``None``
    when no layout does.

    :param fixed: cells objects must keep (positions a prompt names).
    :param preferred: cells objects should keep if they can (where an image put them); the
        layout moves as few of them as possible.
    :param order: the cells tried first for an object with no preference (ties go to the
        earliest layout in this order); the centre first by default.
    """
    fixed, preferred = dict(fixed or {}), dict(preferred or {})
    if count > CELLS or len(set(fixed.values())) < len(fixed):
        return None
    # fixed objects first, then the preferred ones, then the rest
    objects = sorted(range(count), key=lambda i: (i not in fixed, i not in preferred, i))
    best: tuple[int, list[int]] | None = None

    def search(k: int, cells: dict[int, int], moved: int) -> None:
        nonlocal best
        if best is not None and moved >= best[0]:
            return
        if k == count:
            if not any(broken(kind, [cells[i] for i in a], [cells[j] for j in b])[0] for kind, a, b in relations):
                best = (moved, [cells[i] for i in range(count)])
            return
        i = objects[k]
        taken = set(cells.values())
        if i in fixed:
            options = [fixed[i]]
        else:
            options = ([preferred[i]] if i in preferred else []) + [c for c in order if c != preferred.get(i)]
        for cell in options:
            if cell in taken:
                continue
            cells[i] = cell
            if not _hopeless(relations, cells):
                search(k + 1, cells, moved + (i in preferred and cell != preferred[i]))
            del cells[i]

    search(0, {}, 0)
    return None if best is None else best[1]
