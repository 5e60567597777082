"""Token Recycling's static draft tree ("2.2.2"), as data.

Each entry is a node named by the candidate ranks along its path (rank = column of
the adjacency row); entries are in level order so parents come first. 80 nodes,
depth 6, level sizes 8, 21, 25, 15, 8, 3.
"""

from __future__ import annotations

__all__ = ["TOKEN_RECYCLING_TEMPLATE"]

# parent rank path -> number of children (ranks 0..count-1), level by level
_CHILDREN: dict[tuple[int, ...], int] = {
    (): 8,
    (0,): 8, (1,): 4, (2,): 3, (3,): 2, (4,): 1, (5,): 1, (6,): 1, (7,): 1,
    (0, 0): 8, (0, 1): 3, (0, 2): 2, (0, 3): 1, (0, 4): 1, (0, 5): 1, (0, 6): 1, (0, 7): 1,
    (1, 0): 2, (1, 1): 1, (2, 0): 1, (3, 0): 1, (4, 0): 1, (5, 0): 1,
    (0, 0, 0): 5, (0, 0, 1): 2, (0, 0, 2): 1, (0, 0, 3): 1, (0, 0, 4): 1,
    (0, 1, 0): 1, (0, 2, 0): 1, (1, 0, 0): 1, (2, 0, 0): 1, (3, 0, 0): 1,
    (0, 0, 0, 0): 3, (0, 0, 0, 1): 1, (0, 0, 0, 2): 1, (0, 0, 1, 0): 1, (0, 1, 0, 0): 1,
    (1, 0, 0, 0): 1,
    (0, 0, 0, 0, 0): 2, (0, 0, 0, 1, 0): 1,
}


def _level_order() -> tuple[tuple[int, ...], ...]:
    nodes: list[tuple[int, ...]] = []
    level = [()]
    while level:
        nxt = [parent + (r,) for parent in level for r in range(_CHILDREN.get(parent, 0))]
        nodes.extend(nxt)
        level = nxt
    return tuple(nodes)


TOKEN_RECYCLING_TEMPLATE: tuple[tuple[int, ...], ...] = _level_order()
"""Token Recycling's 80 template nodes as rank paths, in level order."""
