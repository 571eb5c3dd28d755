"""The chemistry rules, each with one owner and no AiiDA import.

=================  ==========================================================================================
module             owns
=================  ==========================================================================================
``readers``        library files (SMILES/CSV, xyz folder, extxyz, ASE db, pymatgen, G2) -> plain-JSON records
``smiles``         reading a SMILES (RDKit), the charge and multiplicity it implies, 3D embedding
``molecule``       electrons, charge and multiplicity; :class:`~.molecule.Rejection` and its kinds
``basis``          basis names of PySCF's library, coverage per element, functions per atom
``geometry``       geometry sanity (finite, not too close), fragments, point group, bonds from a geometry
``entries``        the per-entry checks of ``mlqm.build`` that need no embedding
``level``          :class:`~.level.LevelOfTheory`: method, basis, functional, options, label, cost estimate
=================  ==========================================================================================
"""
