"""Unit conversions used across aiida-mlqm (CODATA 2018, as ASE and aiida-pyscf's pint registry use).

Stored quantities are in eV, eV/Å and Å; PySCF works in Hartree and Bohr. Imports nothing, so job scripts and
``models/`` can use it too.
"""
from __future__ import annotations

ENERGY_UNIT = 'eV'  # stored energies (result Dicts, datasets, tables)
FORCES_UNIT = 'eV/Å'
HARTREE_TO_EV = 27.211386245988
BOHR_TO_ANGSTROM = 0.529177210903
EV_TO_KCAL_PER_MOL = 23.060547830619
