"""Small molecules (Å) shared by the job tests; a plain module, since ``conftest`` is not importable by name."""

from __future__ import annotations

WATER = [('O', (0.0, 0.0, 0.1173)), ('H', (0.0, 0.7572, -0.4692)), ('H', (0.0, -0.7572, -0.4692))]
OH = [('O', (0.0, 0.0, 0.0)), ('H', (0.0, 0.0, 0.9697))]
H2 = [('H', (0.0, 0.0, 0.0)), ('H', (0.0, 0.0, 0.7414))]
O2 = [('O', (0.0, 0.0, 0.0)), ('O', (0.0, 0.0, 1.2075))]
