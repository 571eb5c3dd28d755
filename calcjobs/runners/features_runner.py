"""Multireference features of one molecule on its given geometry, in one cheap PySCF job (method selection).

Copied verbatim into job folders beside ``pyscf_runner.py``, which calls :func:`run_features` for
``parameters['method'] == 'features'``. Like that runner it imports only the standard library, numpy and PySCF, and
reads only validated data: the option names are checked against :data:`FEATURE_OPTION_KEYS` and every value is a
number, a boolean or a name from a fixed set.

What it computes, all on the geometry it is given (never re-optimised), all in atomic units (Hartree) unless a name
says otherwise:

- Mean field: RHF (closed shell) or ROHF (open shell) and UHF; ``e_restricted_minus_uhf``; ``<S^2>`` of the UHF and its
  excess over S(S+1); the lowest eigenvalues of the orbital Hessian (RHF internal and RHF->UHF, UHF internal), the UHF
  following an RHF->UHF instability (Seeger & Pople 1977); UHF natural-orbital occupations (UNO, Pulay & Hamilton 1988).
- Fractional occupation number weighted density (FOD, Grimme & Hansen 2015): Fermi-smeared DFT at ``fod_temperature``
  (default 5000 K), ``N_FOD = sum_i (delta_1 - delta_2 f_i) f_i`` over spin orbitals.
- Correlated but cheap: frozen-core MP2 amplitudes (largest ``|t2|``, the D2 diagnostic of Nielsen & Janssen 1999 on the
  MP2 doubles), MP2 natural-orbital occupations (unrelaxed density), and the singles that the MP2 doubles induce in
  one CCSD amplitude update (second-order T1 and D1 estimates, which track the CCSD T1/D1 the label uses).
- Excitations: lowest CIS (TDA) singlet and triplet and TDHF (RPA) singlet of the restricted reference; lowest CIS and
  TDHF roots of the UHF for open shells.
- Composition and geometry: element counts, electrons, unpaired electrons, charge, and the largest ratio of an atom's
  nearest-neighbour distance to the sum of covalent radii (a stretched or broken bond shows here).

A feature that does not apply (D1 for an open shell, RHF values for a doublet) is ``None``; the classifier treats it
as missing. The result also carries per-stage timings, so the cost can be compared with the CCSD(T) run it replaces.
"""

from __future__ import annotations

import math
import time

import numpy

FEATURE_OPTION_KEYS = {
    'fod_xc',
    'fod_temperature',
    'fod_grid_level',
    'excited_states',
    'second_order_singles',
    'stability_cycles',
    'fractional_threshold',
    'density_fit',
    'tdhf',
}
FOD_FUNCTIONALS = {'tpss', 'pbe', 'b3lyp', 'pbe0'}
DEFAULT_OPTIONS = {
    # Grimme & Hansen 2015 use TPSS at 5000 K; PBE on a coarse grid gives the same picture at a fraction of the cost
    'fod_xc': 'pbe',
    'fod_temperature': 5000.0,
    'fod_grid_level': 0,
    'excited_states': 1,
    'second_order_singles': True,
    'stability_cycles': 3,
    'fractional_threshold': 0.02,
    'density_fit': False,
    # the lowest TDHF root added nothing to the grouped-CV AUC over the CIS roots (0.921 with and without it, 50
    # geometries, 3 seeds) and was the slowest step on some molecules
    'tdhf': False,
}
# The options of the first shipped classifier (all at the diagnostic's basis), kept for cost comparisons.
PREVIOUS_OPTIONS = {**DEFAULT_OPTIONS, 'density_fit': False, 'tdhf': True, 'excited_states': 2}
KELVIN_TO_HARTREE = 3.166811563e-6
# Covalent radii in Å (Cordero et al. 2008) for the nearest-neighbour ratio; elements without one give None.
COVALENT_RADII = {
    'H': 0.31, 'He': 0.28, 'Li': 1.28, 'Be': 0.96, 'B': 0.84, 'C': 0.76, 'N': 0.71, 'O': 0.66, 'F': 0.57, 'Ne': 0.58,
    'Na': 1.66, 'Mg': 1.41, 'Al': 1.21, 'Si': 1.11, 'P': 1.07, 'S': 1.05, 'Cl': 1.02, 'Ar': 1.06, 'Br': 1.20, 'I': 1.39,
}  # fmt: skip
COMPOSITION_ELEMENTS = ('H', 'B', 'C', 'N', 'O', 'F', 'S', 'Cl')


def check_options(options: dict) -> dict:
    """Return ``options`` merged over the defaults; raise ``ValueError`` on an unknown key or a value out of range."""
    if not isinstance(options, dict):
        raise ValueError('parameters.features must be an object')  # noqa: TRY004 -- one exception type for bad input
    unknown = sorted(str(key) for key in options if key not in FEATURE_OPTION_KEYS)
    if unknown:
        raise ValueError(f'unknown keys in parameters.features: {unknown}; valid: {sorted(FEATURE_OPTION_KEYS)}')
    merged = {**DEFAULT_OPTIONS, **options}
    if merged['fod_xc'] not in FOD_FUNCTIONALS:
        raise ValueError(f'features.fod_xc must be one of {sorted(FOD_FUNCTIONALS)}')
    checks = {
        'fod_temperature': (float, 100.0, 50000.0),
        'fod_grid_level': (int, 0, 9),
        'excited_states': (int, 1, 20),
        'stability_cycles': (int, 0, 10),
        'fractional_threshold': (float, 1e-4, 0.5),
    }
    for key, (kind, low, high) in checks.items():
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
            raise ValueError(f'features.{key} must be a number in [{low}, {high}], got {value!r}')
        merged[key] = kind(value)
    for key in ('second_order_singles', 'density_fit', 'tdhf'):
        if not isinstance(merged[key], bool):
            raise ValueError(f'features.{key} must be true or false')
    return merged


def _davidson_lowest(hop, hdiag, x0):
    """Lowest eigenvalue and eigenvector of an orbital Hessian by Davidson, preconditioned as PySCF's stability does."""
    from pyscf import lib

    hdiag = numpy.asarray(hdiag).ravel()

    def precond(dx, e, x0):
        hdiagd = hdiag - e
        hdiagd[abs(hdiagd) < 1e-8] = 1e-8
        return dx / hdiagd

    x0[numpy.argmin(hdiag)] = 1.0  # symmetry may break: start along the softest direction too
    value, vector = lib.davidson(hop, x0, precond, tol=1e-5, max_cycle=100, verbose=0)
    return float(value), vector


def _rotated(mo_coeff, mo_occ, dx):
    from pyscf.scf.stability import _rotate_mo

    return _rotate_mo(mo_coeff, mo_occ, dx)


def _rhf_stability(mf):
    """Lowest eigenvalues of the RHF internal and RHF->UHF stability matrices (the values PySCF's analysis logs).

    :return: ``(internal, external, uhf_guess_mo)``, the last one the orbital pair that follows the RHF->UHF
        instability (the RHF orbitals twice when there is none).
    """
    from pyscf.scf.stability import _gen_hop_rhf_external
    from pyscf.soscf import newton_ah

    g, hop, hdiag = newton_ah.gen_g_hop_rhf(mf, mf.mo_coeff, mf.mo_occ, with_symmetry=False)
    hdiag = hdiag * 2
    x0 = numpy.zeros_like(g)
    x0[g != 0] = 1.0 / hdiag[g != 0]
    internal, _ = _davidson_lowest(lambda x: hop(x).real * 2, hdiag, x0)
    _, _, hop_external, hdiag_external = _gen_hop_rhf_external(mf, with_symmetry=False)
    x0 = numpy.zeros_like(hdiag_external)
    x0[hdiag_external > 1e-5] = 1.0 / hdiag_external[hdiag_external > 1e-5]
    external, vector = _davidson_lowest(hop_external, hdiag_external, x0)
    guess = (mf.mo_coeff, mf.mo_coeff)
    if external < -1e-5:
        guess = (_rotated(mf.mo_coeff, mf.mo_occ, vector), mf.mo_coeff)
    return internal, external, guess


def _uhf_internal_stability(mf):
    """Lowest eigenvalue of the UHF internal stability matrix and the orbitals that follow it when it is negative."""
    from pyscf.soscf import newton_ah

    g, hop, hdiag = newton_ah.gen_g_hop_uhf(mf, mf.mo_coeff, mf.mo_occ, with_symmetry=False)
    hdiag = hdiag * 2
    x0 = numpy.zeros_like(g)
    x0[g != 0] = 1.0 / hdiag[g != 0]
    value, vector = _davidson_lowest(lambda x: hop(x).real * 2, hdiag, x0)
    if value >= -1e-5:
        return value, None
    nocca = numpy.count_nonzero(mf.mo_occ[0] > 0)
    nvira = numpy.count_nonzero(mf.mo_occ[0] == 0)
    mo = (
        _rotated(mf.mo_coeff[0], mf.mo_occ[0], vector[: nocca * nvira]),
        _rotated(mf.mo_coeff[1], mf.mo_occ[1], vector[nocca * nvira :]),
    )
    return value, mo


def _natural_occupations(mol, density_ao) -> numpy.ndarray:
    """Spin-summed natural occupations of an AO density: eigenvalues of S^1/2 D S^1/2, sorted descending."""
    overlap = mol.intor_symmetric('int1e_ovlp')
    values, vectors = numpy.linalg.eigh(overlap)
    root = (vectors * numpy.sqrt(numpy.clip(values, 0, None))) @ vectors.T
    occupations = numpy.linalg.eigvalsh(root @ density_ao @ root)
    return numpy.sort(occupations)[::-1]


def _occupation_features(prefix: str, occupations: numpy.ndarray, nelectron: int, threshold: float) -> dict:
    """HONO/LUNO occupations, the number of fractional ones and the weight outside the closed-shell picture."""
    occupations = numpy.asarray(occupations, dtype=float)
    # a closed-shell determinant fills nelectron/2 spatial orbitals; open shells have half-filled ones in the middle
    npair = nelectron // 2
    unpaired = nelectron - 2 * npair
    homo_index = npair - 1
    lumo_index = npair + unpaired
    features = {
        f'{prefix}_hono': float(occupations[homo_index]) if homo_index >= 0 else None,
        f'{prefix}_luno': float(occupations[lumo_index]) if lumo_index < occupations.size else None,
        f'{prefix}_fractional_count': int(numpy.sum((occupations > threshold) & (occupations < 2 - threshold))),
        f'{prefix}_virtual_sum': float(numpy.clip(occupations[lumo_index:], 0, None).sum()),
    }
    # deviation from an idempotent density, sum n (2 - n) / 2 (Head-Gordon's effectively unpaired electrons' cousin)
    features[f'{prefix}_nonidempotency'] = float(numpy.sum(numpy.clip(occupations * (2 - occupations), 0, None)) / 2)
    return features


def _t2_features(t2, frozen_t2_prefix: str = 'mp2') -> dict:
    """Largest MP2 doubles and the D2 diagnostic (Nielsen & Janssen 1999) of a restricted or unrestricted t2."""
    if isinstance(t2, numpy.ndarray):
        blocks = [t2]
    else:
        blocks = list(t2)
    amplitudes = numpy.sort(numpy.concatenate([numpy.abs(block).ravel() for block in blocks]))[::-1]
    features = {
        f'{frozen_t2_prefix}_t2_max': float(amplitudes[0]) if amplitudes.size else 0.0,
        f'{frozen_t2_prefix}_t2_second': float(amplitudes[2]) if amplitudes.size > 2 else 0.0,
        f'{frozen_t2_prefix}_t2_norm': float(math.sqrt(sum(float(numpy.sum(block**2)) for block in blocks))),
    }
    d2 = 0.0
    for block in blocks:
        if block.size == 0:
            continue
        occupied = numpy.einsum('ikab,jkab->ij', block, block)
        virtual = numpy.einsum('ijac,ijbc->ab', block, block)
        d2 = max(d2, float(numpy.linalg.eigvalsh(occupied).max()), float(numpy.linalg.eigvalsh(virtual).max()))
    features[f'{frozen_t2_prefix}_d2'] = float(math.sqrt(max(d2, 0.0)))
    return features


def _geometry_features(symbols, positions) -> dict:
    positions = numpy.asarray(positions, dtype=float)
    counts = {f'count_{element}': sum(1 for s in symbols if s == element) for element in COMPOSITION_ELEMENTS}
    counts['count_other'] = sum(1 for s in symbols if s not in COMPOSITION_ELEMENTS)
    counts['heavy_atoms'] = sum(1 for s in symbols if s != 'H')
    ratio = None
    if len(symbols) > 1 and all(s in COVALENT_RADII for s in symbols):
        distances = numpy.linalg.norm(positions[:, None] - positions[None], axis=-1)
        radii = numpy.array([COVALENT_RADII[s] for s in symbols])
        ratios = distances / (radii[:, None] + radii[None])
        numpy.fill_diagonal(ratios, numpy.inf)
        ratio = float(ratios.min(axis=1).max())
    counts['nearest_neighbour_ratio_max'] = ratio
    return counts


def _frozen(mol, mf) -> list[int] | None:
    from pyscf.data.elements import chemcore

    ncore = chemcore(mol)
    return list(range(ncore)) if ncore else None


def run_features(mol, symbols, positions, options: dict, scf_settings: dict, result: dict, timings: dict, check_time):
    """Fill ``result['features']`` (and ``timings``) for one molecule; raise on a failure the caller records."""
    from pyscf import cc, dft, mp, scf, tdscf

    options = check_options(options)
    threshold = options['fractional_threshold']
    features: dict = {}
    result['features'] = features
    nelectron = int(mol.nelectron)
    unpaired = int(mol.spin)
    closed_shell = unpaired == 0
    features.update(_geometry_features(symbols, positions))
    features.update(
        {'electrons': nelectron, 'unpaired_electrons': unpaired, 'charge': int(mol.charge), 'basis_functions': int(mol.nao_nr())}
    )

    shared = {}

    def configure(mf):
        # one set of two-electron integrals for every mean-field object of this molecule: computing them once saves
        # about a fifth of the job on small molecules (the ERIs were the largest single cost in a profile)
        if not options['density_fit'] and shared.get('eri') is not None:
            mf._eri = shared['eri']
        mf.conv_tol = scf_settings.get('conv_tol', 1e-8)
        mf.max_cycle = scf_settings.get('max_cycle', 100)
        mf.level_shift = scf_settings.get('level_shift', 0.0)
        mf.damp = scf_settings.get('damp', 0.0)
        mf.init_guess = scf_settings.get('init_guess', 'minao')
        mf.chkfile = None
        mf.verbose = 0
        return mf.density_fit() if options['density_fit'] else mf

    def stage(name):
        check_time(name)
        return time.perf_counter()

    # restricted reference: RHF for closed shells, ROHF for open shells
    start = stage('scf')
    restricted = configure(scf.RHF(mol) if closed_shell else scf.ROHF(mol))
    restricted.kernel()
    if not restricted.converged:
        restricted = restricted.newton()
        restricted.kernel()
    timings['scf'] = time.perf_counter() - start
    shared['eri'] = getattr(restricted, '_eri', None)
    result['scf_energy'] = features['e_restricted'] = float(restricted.e_tot)
    result['scf_converged'] = bool(restricted.converged)
    if not restricted.converged:
        raise RuntimeError('the restricted SCF did not converge')
    energies, occupations = restricted.mo_energy, restricted.mo_occ
    features['gap_restricted'] = float(energies[occupations == 0].min() - energies[occupations > 0].max())

    # stability and the broken-symmetry UHF it leads to
    start = stage('stability')
    if closed_shell:
        internal, external, guess = _rhf_stability(restricted)
        features['stability_rhf_internal'], features['stability_rhf_to_uhf'] = internal, external
        occupied = restricted.mo_occ > 0
        dm_guess = scf.UHF(mol).make_rdm1(guess, (occupied.astype(float), occupied.astype(float)))
    else:
        features['stability_rhf_internal'] = features['stability_rhf_to_uhf'] = None
        dm_guess = restricted.make_rdm1()  # the ROHF density: a better start than a fresh atomic guess
    timings['stability'] = time.perf_counter() - start
    start = stage('uhf')
    unrestricted = configure(scf.UHF(mol))
    unrestricted.kernel(dm0=dm_guess)
    # follow internal instabilities down to a stable UHF (the broken-symmetry solution a stretched bond has)
    stability_uhf, mo = _uhf_internal_stability(unrestricted)
    for _ in range(options['stability_cycles']):
        if mo is None:
            break
        unrestricted.kernel(dm0=unrestricted.make_rdm1(mo, unrestricted.mo_occ))
        stability_uhf, mo = _uhf_internal_stability(unrestricted)
    features['stability_uhf_internal'] = stability_uhf
    timings['uhf'] = time.perf_counter() - start
    features['e_uhf'] = float(unrestricted.e_tot)
    features['e_restricted_minus_uhf'] = float(restricted.e_tot - unrestricted.e_tot)
    s2 = float(unrestricted.spin_square()[0])
    spin = unpaired / 2
    features['s2_uhf'] = s2
    features['s2_excess'] = s2 - spin * (spin + 1)
    ea, eb = unrestricted.mo_energy
    oa, ob = unrestricted.mo_occ
    homo = max(ea[oa > 0].max(), eb[ob > 0].max() if (ob > 0).any() else -numpy.inf)
    lumo = min(ea[oa == 0].min(), eb[ob == 0].min())
    features['gap_uhf'] = float(lumo - homo)
    dm_uhf = unrestricted.make_rdm1()
    features.update(_occupation_features('uno', _natural_occupations(mol, dm_uhf[0] + dm_uhf[1]), nelectron, threshold))

    # FOD: Fermi-smeared DFT (restricted for closed shells, as Grimme's spin-restricted FOD; unrestricted otherwise)
    start = stage('fod')
    sigma = options['fod_temperature'] * KELVIN_TO_HARTREE
    ks = configure(dft.RKS(mol) if closed_shell else dft.UKS(mol))
    ks.xc = options['fod_xc']
    ks.grids.level = options['fod_grid_level']
    ks.conv_tol = 1e-5  # N_FOD moves by ~1e-4 between 1e-6 and 1e-5 (measured), far below its spread between molecules
    ks = scf.addons.smearing_(ks, sigma=sigma, method='fermi')
    ks.kernel(dm0=restricted.make_rdm1() if closed_shell else unrestricted.make_rdm1())
    timings['fod'] = time.perf_counter() - start
    features['n_fod'] = _n_fod(ks, closed_shell, nelectron, unpaired)
    features['fod_converged'] = bool(ks.converged)

    # MP2 on the reference the CCSD(T) diagnostic run uses: RHF (closed) / UHF (open)
    reference = restricted if closed_shell else unrestricted
    frozen = _frozen(mol, reference)
    start = stage('mp2')
    mp2 = mp.MP2(reference, frozen=frozen)
    mp2.verbose = 0
    mp2.kernel()
    timings['mp2'] = time.perf_counter() - start
    features['mp2_correlation_energy'] = float(mp2.e_corr)
    features['mp2_correlation_per_electron'] = float(mp2.e_corr) / max(nelectron - 2 * len(frozen or []), 1)
    features.update(_t2_features(mp2.t2))
    start = stage('mp2_density')
    dm_mo = mp2.make_rdm1()
    if closed_shell:
        dm_ao = reference.mo_coeff @ dm_mo @ reference.mo_coeff.T
    else:
        dm_ao = sum(c @ d @ c.T for c, d in zip(reference.mo_coeff, dm_mo))
    features.update(_occupation_features('mp2_no', _natural_occupations(mol, dm_ao), nelectron, threshold))
    timings['mp2_density'] = time.perf_counter() - start

    # singles induced by the MP2 doubles: one CCSD amplitude update from (t1=0, t2=MP2)
    if options['second_order_singles']:
        start = stage('second_order_singles')
        solver = cc.CCSD(reference, frozen=frozen)
        solver.verbose = 0
        eris = solver.ao2mo()
        _, t1, t2 = solver.init_amps(eris)
        t1_new, t2_new = solver.update_amps(t1, t2, eris)
        if closed_shell:
            features['t1_second_order'] = float(solver.get_t1_diagnostic(t1_new))
            features['d1_second_order'] = float(solver.get_d1_diagnostic(t1_new))
            features['d2_first_update'] = float(solver.get_d2_diagnostic(t2_new))
        else:
            t1a, t1b = t1_new
            correlated = t1a.shape[0] + t1b.shape[0]
            features['t1_second_order'] = float(
                numpy.sqrt((numpy.linalg.norm(t1a) ** 2 + numpy.linalg.norm(t1b) ** 2) / (2 * correlated))
            )
            features['d1_second_order'] = None
            features['d2_first_update'] = None
        features['t1_second_order_max'] = float(
            max(numpy.abs(block).max() if block.size else 0.0 for block in (t1_new if not closed_shell else [t1_new]))
        )
        timings['second_order_singles'] = time.perf_counter() - start

    # excitations
    start = stage('excitations')
    nstates = options['excited_states']
    if closed_shell:
        features['cis_singlet_lowest'] = _cis_lowest(tdscf.TDA(restricted), nstates, singlet=True)
        features['cis_triplet_lowest'] = _cis_lowest(tdscf.TDA(restricted), nstates, singlet=False)
        if options['tdhf']:
            features['tdhf_singlet_lowest'] = _rpa_lowest(tdscf.TDHF(restricted), nstates)
    elif min(mol.nelec) == 0:  # one spin holds no electron (H atom, H2+): PySCF's UHF TDA/TDHF need both
        features['cis_singlet_lowest'] = features['cis_triplet_lowest'] = features['tdhf_singlet_lowest'] = None
    else:
        features['cis_singlet_lowest'] = _cis_lowest(tdscf.TDA(unrestricted), nstates, singlet=None)
        features['cis_triplet_lowest'] = None
        if options['tdhf']:
            features['tdhf_singlet_lowest'] = _rpa_lowest(tdscf.TDHF(unrestricted), nstates)
    if not options['tdhf']:
        features['tdhf_singlet_lowest'] = None
    timings['excitations'] = time.perf_counter() - start
    result['total_energy'] = float(reference.e_tot)
    return features


def _n_fod(ks, closed_shell: bool, nelectron: int, unpaired: int) -> float:
    """``N_FOD``: over spin orbitals ordered by energy, ``1 - f`` for those a determinant fills and ``f`` above."""
    if closed_shell:
        order = numpy.argsort(ks.mo_energy)
        f = numpy.asarray(ks.mo_occ, dtype=float)[order] / 2
        filled = nelectron // 2
        return float(2 * (numpy.sum(1 - f[:filled]) + numpy.sum(f[filled:])))
    total = 0.0
    for spin, filled in enumerate(((nelectron + unpaired) // 2, (nelectron - unpaired) // 2)):
        order = numpy.argsort(ks.mo_energy[spin])
        f = numpy.asarray(ks.mo_occ[spin], dtype=float)[order]
        total += float(numpy.sum(1 - f[:filled]) + numpy.sum(f[filled:]))
    return total


def _cis_lowest(cis, nstates: int, singlet: bool | None) -> float:
    """Lowest CIS (TDA) root, negative ones included: a negative triplet root is the RHF->UHF instability."""
    if singlet is not None:
        cis.singlet = singlet
    cis.nstates, cis.verbose, cis.conv_tol = nstates, 0, 1e-4
    cis.positive_eig_threshold = -1e3  # keep negative roots, which PySCF drops by default
    return float(numpy.min(cis.kernel()[0]))


def _rpa_lowest(rpa, nstates: int) -> float:
    """Lowest real TDHF root; where the RPA has no real solution (an instability) the value is 0."""
    rpa.nstates, rpa.verbose, rpa.conv_tol = nstates, 0, 1e-4
    try:
        energies = numpy.asarray(rpa.kernel()[0])
    except Exception:  # noqa: BLE001 -- PySCF raises when it finds too few real positive roots
        return 0.0
    if numpy.iscomplexobj(energies):
        energies = numpy.where(abs(energies.imag) > 1e-8, 0.0, energies.real)
    return float(numpy.min(energies)) if energies.size else 0.0


# -- the multireference path: CASSCF on an active space chosen from UHF natural orbitals ---------------------------

CASSCF_OPTION_KEYS = {'window_low', 'window_high', 'min_orbitals', 'max_orbitals', 'max_cycle', 'conv_tol'}
CASSCF_DEFAULTS = {
    # UNO-CAS (Pulay & Hamilton 1988; Bofill & Pulay 1989): orbitals whose UHF natural occupation lies inside the
    # window are active; 0.02-1.98 is the usual choice (Keller et al. 2015 use the same bounds)
    'window_low': 0.02,
    'window_high': 1.98,
    'min_orbitals': 2,
    'max_orbitals': 12,
    'max_cycle': 50,
    'conv_tol': 1e-7,
}


def check_casscf_options(options: dict) -> dict:
    """Return ``options`` merged over :data:`CASSCF_DEFAULTS`; raise ``ValueError`` on an unknown key or a bad value."""
    if not isinstance(options, dict):
        raise ValueError('parameters.casscf must be an object')  # noqa: TRY004 -- one exception type for bad input
    unknown = sorted(str(key) for key in options if key not in CASSCF_OPTION_KEYS)
    if unknown:
        raise ValueError(f'unknown keys in parameters.casscf: {unknown}; valid: {sorted(CASSCF_OPTION_KEYS)}')
    merged = {**CASSCF_DEFAULTS, **options}
    checks = {
        'window_low': (float, 1e-4, 1.0),
        'window_high': (float, 1.0, 2.0 - 1e-4),
        'min_orbitals': (int, 1, 18),
        'max_orbitals': (int, 1, 18),
        'max_cycle': (int, 1, 500),
        'conv_tol': (float, 1e-12, 1e-3),
    }
    for key, (kind, low, high) in checks.items():
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
            raise ValueError(f'casscf.{key} must be a number in [{low}, {high}], got {value!r}')
        merged[key] = kind(value)
    if merged['min_orbitals'] > merged['max_orbitals']:
        raise ValueError('casscf.min_orbitals must not exceed casscf.max_orbitals')
    return merged


def natural_orbitals(mol, density_ao):
    """UHF natural orbitals: ``(occupations, coefficients)``, occupations descending, coefficients in the AO basis."""
    overlap = mol.intor_symmetric('int1e_ovlp')
    values, vectors = numpy.linalg.eigh(overlap)
    keep = values > 1e-10
    root = (vectors[:, keep] * numpy.sqrt(values[keep])) @ vectors[:, keep].T
    inverse_root = (vectors[:, keep] / numpy.sqrt(values[keep])) @ vectors[:, keep].T
    occupations, eigenvectors = numpy.linalg.eigh(root @ density_ao @ root)
    order = numpy.argsort(occupations)[::-1]
    return occupations[order], inverse_root @ eigenvectors[:, order]


def choose_active_space(occupations, nelectron: int, spin: int, options: dict) -> tuple[int, int]:
    """``(ncore, ncas)``: the natural orbitals (sorted by occupation) inside the window are active, widened around the
    Fermi level to ``min_orbitals`` (and to every singly occupied orbital) and narrowed to ``max_orbitals``."""
    occupations = numpy.asarray(occupations)
    start = int(numpy.sum(occupations >= options['window_high']))
    stop = int(numpy.sum(occupations > options['window_low']))
    npair = (nelectron - spin) // 2
    # the singly occupied orbitals of an open shell are active whatever their occupation says
    start, stop = min(start, npair), max(stop, npair + spin)
    while stop - start < options['min_orbitals'] and (start > 0 or stop < occupations.size):
        if start > 0:
            start -= 1
        if stop - start < options['min_orbitals'] and stop < occupations.size:
            stop += 1
    while stop - start > max(options['max_orbitals'], spin):
        # drop the orbital whose occupation is nearest an integer, from the end that has it
        if abs(occupations[start] - 2) <= abs(occupations[stop - 1]) and start < npair:
            start += 1
        else:
            stop -= 1
    return start, stop - start


def run_casscf(mol, options: dict, scf_settings: dict, result: dict, timings: dict, check_time) -> dict:
    """CASSCF of one molecule on the UNO active space; fills ``result`` (energy, space, occupations); raises when the
    SCF or the CASSCF does not converge."""
    from pyscf import mcscf, scf

    options = check_casscf_options(options)
    closed_shell = mol.spin == 0

    def configure(mf):
        mf.conv_tol = scf_settings.get('conv_tol', 1e-8)
        mf.max_cycle = scf_settings.get('max_cycle', 100)
        mf.level_shift = scf_settings.get('level_shift', 0.0)
        mf.damp = scf_settings.get('damp', 0.0)
        mf.init_guess = scf_settings.get('init_guess', 'minao')
        mf.chkfile = None
        mf.verbose = 0
        return mf

    check_time('scf')
    start = time.perf_counter()
    restricted = configure(scf.RHF(mol) if closed_shell else scf.ROHF(mol))
    restricted.kernel()
    if not restricted.converged:
        restricted = restricted.newton()
        restricted.kernel()
    if not restricted.converged:
        raise RuntimeError('the restricted SCF did not converge')
    result['scf_energy'] = float(restricted.e_tot)
    if closed_shell:
        _, _, guess = _rhf_stability(restricted)
        occupied = (restricted.mo_occ > 0).astype(float)
        dm_guess = scf.UHF(mol).make_rdm1(guess, (occupied, occupied))
    else:
        dm_guess = restricted.make_rdm1()
    unrestricted = configure(scf.UHF(mol))
    unrestricted._eri = getattr(restricted, '_eri', None)
    unrestricted.kernel(dm0=dm_guess)
    for _ in range(3):
        _, mo = _uhf_internal_stability(unrestricted)
        if mo is None:
            break
        unrestricted.kernel(dm0=unrestricted.make_rdm1(mo, unrestricted.mo_occ))
    timings['scf'] = time.perf_counter() - start
    result['uhf_energy'] = float(unrestricted.e_tot)
    density = unrestricted.make_rdm1()
    occupations, orbitals = natural_orbitals(mol, density[0] + density[1])
    ncore, ncas = choose_active_space(occupations, int(mol.nelectron), int(mol.spin), options)
    nactive = int(mol.nelectron) - 2 * ncore
    nelecas = ((nactive + mol.spin) // 2, (nactive - mol.spin) // 2)
    result['active_space'] = {'electrons': nactive, 'orbitals': ncas, 'core_orbitals': ncore,
                              'uno_occupations': [round(float(n), 6) for n in occupations[ncore:ncore + ncas]]}  # fmt: skip
    check_time('casscf')
    start = time.perf_counter()


    def solve(start_orbitals):
        solver = mcscf.CASSCF(restricted, ncas, nelecas)
        solver.verbose = 0
        solver.max_cycle_macro = options['max_cycle']
        solver.conv_tol = options['conv_tol']
        solver.kernel(start_orbitals)
        return solver

    # start from the natural orbitals; where that fails to converge or ends above the CASCI energy of its own start
    # (seen for OH in STO-3G, where the orbital optimisation left the UNO start and diverged), start again from the
    # restricted orbitals, whose active window is the same count of orbitals around the Fermi level
    solver = solve(orbitals)
    casci = mcscf.CASCI(restricted, ncas, nelecas)
    casci.verbose = 0
    start_energy = float(casci.kernel(orbitals)[0])
    result['casscf_start'] = 'natural_orbitals'
    if not solver.converged or solver.e_tot > start_energy + 1e-6:
        solver = solve(restricted.mo_coeff)
        result['casscf_start'] = 'restricted_orbitals'
    timings['casscf'] = time.perf_counter() - start
    result['casscf_energy'] = float(solver.e_tot)
    result['casscf_converged'] = bool(solver.converged)
    if not solver.converged:
        raise RuntimeError(f'CASSCF({nactive},{ncas}) did not converge in {options["max_cycle"]} macro iterations')
    rdm1 = solver.fcisolver.make_rdm1(solver.ci, ncas, nelecas)
    result['active_occupations'] = [round(float(n), 6) for n in numpy.sort(numpy.linalg.eigvalsh(rdm1))[::-1]]
    result['leading_configuration_weight'] = float(numpy.max(numpy.abs(solver.ci)) ** 2)
    result['total_energy'] = float(solver.e_tot)
    return result
