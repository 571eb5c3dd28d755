"""Calcfunctions of ``mlqm.campaign``: every node the campaign makes, made from the inputs it reads.

- ``campaign_parameters``: the validated config -> the parameters of each sub-process (build, reference per level,
  training, prediction), so that each links back to the config;
- ``choose_initial_set``: a fixed validation set (seeded random draw: unbiased) and a diverse initial training set
  (farthest-point sampling on AEV descriptors) from the candidates;
- ``exploration_parameters``: ML-MD settings of an iteration, the trajectory stop at the committee's adaptive lower
  trust level;
- ``select_next_batch``: query by committee on the model's error-tracking signal, inside adaptive trust levels, with
  a diversity term and the label budget; its output records every chosen structure with its scores and the rule;
- ``select_expensive``: which cheap-labelled structures get the expensive level (the Δ model's spread + diversity,
  farthest-point before the first Δ model);
- ``with_objective``: a dataset plus the per-molecule property (e.g. the HOMO-LUMO gap) read from each row's result;
- ``rank_library`` / ``screening_summary``: lower-confidence-bound ranking and predicted-vs-computed of the top k;
- ``apply_routing``: the method-selection routes applied as the config says (multireference molecules excluded or
  flagged);
- ``campaign_report``: the numbers of the campaign, from the nodes above.
"""

from __future__ import annotations

import math
import typing as t

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from ..provenance.dataset import DatasetData


def _structures_of(nodes: t.Mapping[str, orm.StructureData], keys: t.Sequence[str]):
    from ..models.data import Structures

    frames = [nodes[key].get_ase() for key in keys]
    return Structures.from_ase(frames)


def _dataset_structures(dataset: DatasetData, target_key: str | None = None):
    from ..models.data import Structures

    arrays = {name: dataset.get_array(name) for name in dataset.get_arraynames()}
    structures = Structures(
        arrays['numbers'], arrays['positions'], arrays['offsets'], energy=arrays.get('energy'),
        forces=arrays.get('forces'),
    )  # fmt: skip
    if target_key:
        structures.target = arrays[target_key]
    return structures


def get_protocol_parameters(protocol: str, parameters: dict) -> dict:
    """The complete ``mlqm.build`` parameters of ``protocol`` with ``parameters`` changed (unknown keys raise)."""
    from .build import BuildWorkChain
    from .build_parameters import parse_parameters

    inputs = BuildWorkChain.get_protocol_inputs(protocol, {'parameters': parameters})
    return parse_parameters(inputs['parameters']).model_dump()


@calcfunction
def campaign_parameters(config: orm.Dict) -> dict[str, orm.Dict]:
    """Parameters of the sub-processes, derived from the campaign config (validated again here)."""
    from .campaign_config import parse_config

    campaign = parse_config(config.get_dict())
    outputs = {
        'build': orm.Dict(get_protocol_parameters('fast', {'basis': campaign.levels.cheap.basis})),
        'reference_cheap': orm.Dict(campaign.levels.cheap.parameters()),
    }
    if campaign.levels.expensive is not None:
        outputs['reference_expensive'] = orm.Dict(campaign.levels.expensive.parameters())
    if campaign.method_selection.enabled and campaign.method_selection.multireference == 'casscf':
        outputs['reference_multireference'] = orm.Dict(campaign.levels.multireference.parameters(campaign.levels.cheap.basis))
    if campaign.configurations is not None:
        for index, temperature in enumerate(campaign.configurations.temperatures):
            outputs[f'sampling_{index:02d}'] = orm.Dict(
                get_protocol_parameters(
                    'fast',
                    {
                        'basis': campaign.levels.cheap.basis,
                        'configurations': {
                            'number': campaign.configurations.number, 'temperature': temperature,
                            'hessian': campaign.configurations.hessian, 'seed': campaign.configurations.seed + index,
                        },
                    },
                )
            )  # fmt: skip
    kind = 'potential' if campaign.target == 'potential' else 'property'
    train = {'kind': kind, 'hyperparameters': campaign.model.model_dump()}
    if kind == 'property':
        train['target_key'] = campaign.objective
    outputs['train'] = orm.Dict(train)
    if campaign.levels.expensive is not None and kind == 'property':
        # the correction (expensive - cheap) of the objective: a property committee of the paired molecules, its
        # held-out pairs given as the validation set (early stopping and calibration against expensive labels)
        outputs['train_delta'] = orm.Dict(
            {
                'kind': 'property', 'target_key': f'delta_{campaign.objective}',
                'hyperparameters': {**campaign.model.for_kind('delta').model_dump(), 'validation_fraction': 0.0,
                                    'calibration_fraction': 0.0},
            }
        )  # fmt: skip
    elif campaign.levels.expensive is not None:
        outputs['train_delta'] = orm.Dict(
            {
                'kind': 'delta', 'base_level': campaign.levels.cheap.level,
                'target_level': campaign.levels.expensive.level,
                'hyperparameters': {**campaign.model.model_dump(), 'validation_fraction': 0.0, 'calibration_fraction': 0.0},
            }
        )  # fmt: skip
    outputs['predict'] = orm.Dict({'mode': 'predict', 'forces': kind == 'potential'})
    return outputs


@calcfunction
def choose_initial_set(parameters: orm.Dict, **candidates: orm.StructureData) -> orm.Dict:
    """A fixed validation set drawn at random (so its error is unbiased; a structure is skipped when its element would
    be left in the validation set only) and a diverse initial set among the rest: one
    structure per element (rarest first, seeded), then farthest-point sampling on AEV descriptors. ``parameters``:
    ``initial_size``, ``validation_size``, ``seed``."""
    from ..models.data import cover_elements
    from ..models.descriptors import aev_descriptors
    from ..models.selection import RULE_FPS, RULE_RANDOM, farthest_point_sampling

    values = parameters.get_dict()
    keys = sorted(candidates)
    validation_size = min(int(values['validation_size']), max(len(keys) // 3, 1))
    order = np.random.default_rng(int(values['seed'])).permutation(len(keys))
    # a seeded random draw, skipping a structure whose element would then be left in the validation set only (the
    # committee, trained on the rest, could not predict it)
    elements = {key: set(candidates[key].get_symbols_set()) for key in keys}
    outside = {}
    for key in keys:
        for element in elements[key]:
            outside[element] = outside.get(element, 0) + 1
    validation = []
    for i in order:
        if len(validation) == validation_size:
            break
        if all(outside[element] > 1 for element in elements[keys[i]]):
            validation.append(keys[i])
            for element in elements[keys[i]]:
                outside[element] -= 1
    validation = sorted(validation)
    rest = [key for key in keys if key not in set(validation)]
    structures = _structures_of(candidates, rest)
    # every element first: a model never trained on an element predicts nonsense for every molecule that has it
    covering = cover_elements(structures, range(len(rest)), rng=np.random.default_rng(int(values['seed'])))
    size = max(int(values['initial_size']) - len(covering), 0)
    chosen = farthest_point_sampling(aev_descriptors(structures), size, seed=int(values['seed']), selected=covering)
    records = [{'key': rest[i], 'rule': 'element coverage', 'order': n} for n, i in enumerate(covering)]
    records += [{'key': rest[i], 'rule': RULE_FPS, 'order': len(covering) + n} for n, i in enumerate(chosen)]
    return orm.Dict(
        {
            'validation': validation,
            'initial': [rest[i] for i in [*covering, *chosen]],
            'records': records + [{'key': key, 'rule': f'{RULE_RANDOM} (validation)'} for key in validation],
        }
    )


def held_out_trust_levels(committee, validation: DatasetData, values: dict):
    """Adaptive trust levels of ``committee`` from its spread and true error on ``validation`` (held-out frames).

    Potentials: max force spread against max force error (eV/Å). Properties: calibrated spread against the absolute
    error of ``values['objective']``. ``values['trust']``: the options of ``models.selection.adaptive_trust_levels``.
    """
    from ..models.descriptors import committee_signals
    from ..models.selection import adaptive_trust_levels, max_force_error

    if values['target'] == 'potential':
        held_out = _dataset_structures(validation)
        if held_out.forces is None:
            raise ValueError('the validation set of a potential campaign has no forces to measure the error on')
        signals = committee_signals(committee, held_out)
        spread = signals['max_force_spread']
        error = max_force_error(signals['forces'], held_out.forces, held_out.offsets)
    else:
        held_out = _dataset_structures(validation, values.get('objective'))
        prediction = committee.predict(held_out)
        spread = prediction.calibrated_spread
        error = np.abs(np.asarray(prediction.value, dtype=float) - np.asarray(held_out.target, dtype=float))
    trust = values.get('trust') or {}
    return adaptive_trust_levels(
        spread, error, quantile=trust.get('quantile', 0.5), tolerance=trust.get('tolerance'),
        miss_rate=trust.get('miss_rate', 0.1), min_support=trust.get('min_support', 10),
        upper_ratio=trust.get('upper_ratio', 3.0), maximum=trust.get('maximum'),
    )  # fmt: skip


@calcfunction
def exploration_parameters(model, validation: DatasetData, parameters: orm.Dict) -> dict[str, orm.Dict]:
    """``mlqm.predict`` explore-mode parameters for one iteration: Langevin ML-MD stopped where the committee's max
    force spread passes the lower trust level of the current committee (from ``validation``, held-out frames), as
    DP-GEN's trust levels do, instead of a hand-tuned threshold. A committee whose validation set cannot show it
    accurate anywhere (``min_support``) stops every trajectory at its first check: the start region is itself uncertain. ``parameters``: ``explore`` (``ExploreConfig``
    settings without ``threshold``/``signal``), ``trust``, ``target`` (``potential``), ``seed``. Outputs:
    ``parameters`` (for the job) and ``trust`` (the levels the threshold came from)."""
    values = parameters.get_dict()
    trust = held_out_trust_levels(model.load_model(), validation, values)
    settings = {**values['explore'], 'threshold': trust.lower, 'signal': 'force_spread', 'seed': int(values['seed'])}
    return {
        'parameters': orm.Dict({'mode': 'explore', 'explore': settings}),
        'trust': orm.Dict({**trust.as_dict(), 'unit': 'eV/Å'}),
    }


@calcfunction
def select_next_batch(
    model,
    dataset: DatasetData,
    parameters: orm.Dict,
    validation: DatasetData | None = None,
    predictions: orm.ArrayData | None = None,
    **candidates,
) -> orm.Dict:
    """Choose the next structures to label among ``candidates`` (the unlabelled structures).

    The trust levels come from the committee's spread and true error on ``validation`` (the campaign's fixed
    validation set: labelled, never fitted), never from the labels it trained on, where its spread is small by
    construction. Potentials: the max force spread of the members per candidate, against the max force error on the
    validation frames. Properties: the calibrated spread from ``predictions`` (the mlqm.predict output for the
    candidates, in sorted key order), against the absolute error on the validation molecules. ``dataset`` (the
    labelled structures) sets the diversity term. ``parameters``: ``batch_size``, ``diversity``, ``trust``
    (``models.selection.adaptive_trust_levels`` options), ``budget`` (labels left at the cheap level), ``seed``,
    ``target``, ``objective`` (properties).
    """
    from ..models.descriptors import aev_descriptors, committee_signals
    from ..models.selection import TrustLevels, select_batch

    values = parameters.get_dict()
    keys = sorted(candidates)
    if not keys:
        return orm.Dict({'chosen': [], 'counts': {}, 'trust': None, 'signal': None, 'mean_uncertainty': None})
    if validation is None:
        raise ValueError('selection needs the labelled validation set: the trust levels come from held-out frames')
    structures = _structures_of(candidates, keys)
    labelled = _dataset_structures(dataset)
    species = sorted(set(structures.species) | set(labelled.species))
    committee = model.load_model()
    if values['target'] == 'potential':
        signal = 'max_force_spread'
        uncertainty = committee_signals(committee, structures)[signal]
        unit = 'eV/Å'
    else:
        signal = 'calibrated_spread'
        if predictions is None:
            raise ValueError('property selection needs the predictions of the candidates')
        uncertainty = np.asarray(predictions.get_array('property_spread'), dtype=float)
        unit = 'target units'
    trust = held_out_trust_levels(committee, validation, values)
    if values['target'] == 'property':
        # the upper level guards against unphysical ML-MD geometries; a library molecule is never one, and the most
        # uncertain molecules are the most informative
        trust = TrustLevels(lower=trust.lower, upper=math.inf, source=f'{trust.source}; no upper level for molecules')
    descriptors = aev_descriptors(structures, species=species)
    labelled_descriptors = aev_descriptors(labelled, species=species)
    selection = select_batch(
        uncertainty, descriptors, int(values['batch_size']), labelled_descriptors=labelled_descriptors, trust=trust,
        diversity=float(values['diversity']), budget=values.get('budget'), seed=int(values.get('seed', 0)),
    )  # fmt: skip
    chosen = []
    for record in selection.records:
        key = keys[record['index']]
        chosen.append({**record, 'key': key, 'uuid': candidates[key].uuid, 'signal': signal})
    return orm.Dict(
        {
            'chosen': chosen,
            'counts': selection.counts,
            'trust': {**trust.as_dict(), 'unit': unit},
            'signal': signal,
            'mean_uncertainty': float(np.mean(uncertainty)),
            'max_uncertainty': float(np.max(uncertainty)),
        }
    )


@calcfunction
def select_expensive(parameters: orm.Dict, expensive: DatasetData | None = None, model=None, **candidates) -> orm.Dict:
    """Choose which cheap-labelled structures also get the expensive level: the ones that help the Δ model most.

    With a Δ model (``model``, kind ``delta``, trained on the pairs so far): query by committee on the spread of its
    correction committee (the Δ's own uncertainty, from geometry alone), with a diversity term against the structures
    that already have expensive labels (``expensive``). Before the first Δ model: farthest-point sampling away from
    them, with a structure of each element the expensive labels do not have yet in place of the last picks (a Δ model
    cannot correct a structure with an element it never saw). ``parameters``: ``count``, ``diversity``, ``seed``. ``candidates``: structures with a cheap label (or one in
    flight) and no expensive label yet.
    """
    from ..models.data import cover_elements
    from ..models.descriptors import aev_descriptors
    from ..models.selection import RULE_FPS, farthest_point_sampling, select_batch

    values = parameters.get_dict()
    keys = sorted(candidates)
    count = min(int(values['count']), len(keys))
    if not count:
        return orm.Dict({'chosen': [], 'signal': None})
    structures = _structures_of(candidates, keys)
    labelled = _dataset_structures(expensive) if expensive is not None else None
    species = sorted(set(structures.species) | (set(labelled.species) if labelled is not None else set()))
    descriptors = aev_descriptors(structures, species=species)
    labelled_descriptors = aev_descriptors(labelled, species=species) if labelled is not None else None
    if model is not None:
        delta = model.load_model()
        kind = getattr(delta, 'kind', None)
        if kind not in ('delta', 'property'):  # property: the correction committee of a property campaign's objective
            raise ValueError(f'expensive labels are chosen by a Δ model (delta, or a property correction), got {kind}')
        correction = delta.correction if kind == 'delta' else delta
        spread = np.asarray(correction.predict(structures).spread, dtype=float)
        selection = select_batch(
            spread, descriptors, count, labelled_descriptors=labelled_descriptors,
            diversity=float(values.get('diversity', 0.5)), seed=int(values.get('seed', 0)),
        )  # fmt: skip
        records = [{**record, 'signal': 'delta_correction_spread'} for record in selection.records]
    else:
        both = descriptors if labelled_descriptors is None else np.concatenate([descriptors, labelled_descriptors])
        already = range(len(keys), len(both))
        chosen = [int(i) for i in farthest_point_sampling(both, count, seed=int(values.get('seed', 0)), selected=list(already))]
        # The first Δ model must know every element of the structures it will correct: an element missing from the
        # expensive labels (and from the picks) takes the place of the last farthest-point pick, rarest element first.
        covered = {int(z) for z in labelled.species} if labelled is not None else set()
        covered |= {int(z) for i in chosen for z in structures.frame(i)[0]}
        coverage = cover_elements(structures, range(len(keys)), covered=covered, limit=len(chosen),
                                  rng=np.random.default_rng(int(values.get('seed', 0))))
        kept = [i for i in chosen if i not in coverage][: len(chosen) - len(coverage)]
        records = [{'index': i, 'rule': 'element coverage', 'signal': None} for i in coverage]
        records += [{'index': i, 'rule': RULE_FPS, 'signal': None} for i in kept]
    return orm.Dict(
        {
            'chosen': [{**record, 'key': keys[record['index']], 'uuid': candidates[keys[record['index']]].uuid}
                       for record in records],
            'signal': records[0]['signal'] if records else None,
        }
    )  # fmt: skip


@calcfunction
def with_objective(dataset: DatasetData, objective: orm.Str, **results: orm.Dict) -> DatasetData:
    """The rows of ``dataset`` with an extra array ``objective`` read from each row's result (in eV).

    ``results`` are the per-structure result ``Dict`` nodes of the rows (by their uuid in ``result_uuids``).
    """
    by_uuid = {node.uuid: node for node in results.values()}
    name = objective.value
    values = []
    for index, uuid in enumerate(dataset.base.attributes.get('result_uuids')):
        if name == 'energy':  # the row's total energy at its level (eV), as the dataset holds it
            values.append(float(dataset.get_array('energy')[index]))
            continue
        result = by_uuid.get(uuid)
        if result is None or result.get(name) is None:
            raise ValueError(f'row {index} of the dataset has no {name!r} in its result')
        values.append(float(result[name]))
    node = DatasetData.from_frames(list(dataset.frames()))
    node.set_array(name, np.array(values))
    units = dict(node.base.attributes.get('units'))
    units[name] = 'eV'
    node.base.attributes.set('units', units)
    return node


@calcfunction
def rank_library(
    predictions: orm.ArrayData, parameters: orm.Dict, keys: orm.List, correction: orm.Dict | None = None
) -> orm.Dict:
    """Rank molecules for verification; ``parameters``: ``kappa``, ``maximise``, ``top_k``, ``hit_threshold``.
    ``keys``: ``[key, structure uuid]`` of the molecules in the order of the prediction rows.

    With a ``hit_threshold``: by the probability of a hit under the calibrated spread (``probability_of_hit``), which
    maximises the expected hits among the top k. Without one: by the lower confidence bound ``value -/+ kappa x
    spread``. The confidence bound also ranked by it when a threshold was set, and a committee whose spread tracks
    its error weakly then put its least certain molecules first: on an enumerated library of 240 molecules (seeds 0,
    1, 2; 32 labels and a top 12 each) the 36 molecules the bound verified held 7 hits, those of the probability 13,
    and 36 random unlabelled molecules hold 3.5 on average (``MLQM_AL_SEEDS=0,1,2 python -m benchmarks
    active_learning --quick``).

    ``correction`` (``delta_corrections``, multi-fidelity property campaigns): the Δ model's (expensive - cheap) by
    structure uuid; the ranked value is then the cheap model's + Δ, their spreads added in quadrature."""
    from ..models.selection import lower_confidence_bound, probability_of_hit

    values = parameters.get_dict()
    names = predictions.get_arraynames()
    value_name = 'property' if 'property' in names else 'energy'
    value = np.array(predictions.get_array(value_name), dtype=float)
    spread = np.array(predictions.get_array(f'{value_name}_spread'), dtype=float)
    delta = correction.get_dict() if correction is not None else {}
    shift = np.array([delta[uuid]['value'] if uuid in delta else 0.0 for _, uuid in keys.get_list()])
    shift_spread = np.array([delta[uuid]['spread'] if uuid in delta else 0.0 for _, uuid in keys.get_list()])
    value, spread = value + shift, np.sqrt(spread**2 + shift_spread**2)
    maximise = bool(values['maximise'])
    bound, order = lower_confidence_bound(value, spread, kappa=float(values['kappa']), maximise=maximise)
    probability = None
    threshold = values.get('hit_threshold')
    if threshold is not None:
        probability, order = probability_of_hit(value, spread, float(threshold), maximise=maximise)
    ranking = [
        {
            'key': keys[i][0], 'uuid': keys[i][1], 'predicted': float(value[i]), 'spread': float(spread[i]),
            'bound': float(bound[i]), 'rank': r,
            **({} if probability is None else {'probability_of_hit': float(probability[i])}),
            **({'correction': float(shift[i]), 'correction_spread': float(shift_spread[i])} if delta else {}),
        }
        for r, i in enumerate(order)
    ]  # fmt: skip
    rule = 'lower confidence bound' if probability is None else 'probability of a hit'
    return orm.Dict(
        {'ranking': ranking, 'top': [row['key'] for row in ranking[: int(values['top_k'])]], 'rule': rule, **values}
    )


def _is_hit(value: float, values: t.Mapping[str, t.Any]) -> bool | None:
    if values.get('hit_threshold') is None:
        return None
    return value >= values['hit_threshold'] if values['maximise'] else value <= values['hit_threshold']


@calcfunction
def screening_summary(
    ranking: orm.Dict,
    verified: DatasetData,
    objective: orm.Str,
    parameters: orm.Dict,
    labelled: DatasetData | None = None,
    names: orm.List | None = None,
    correction: orm.Dict | None = None,
    expensive: DatasetData | None = None,
) -> orm.Dict:
    """Predicted against computed for the verified top k, and the hit rate when a ``hit_threshold`` is set.

    With ``labelled`` (every molecule the campaign computed before screening: training and validation rows) and
    ``names`` (``[key, structure uuid]`` of the library), also what the whole campaign found: the best computed
    molecules, labelled or verified, and the share of hits among the labelled ones (a base rate for the top k,
    biased towards the committee's uncertain molecules, which active learning labels first).

    Multi-fidelity (``correction``: the Δ model's (expensive - cheap) by structure uuid, ``expensive``: the expensive
    labels with the objective): a computed value is the expensive label where the molecule has one, else cheap QM +
    Δ; ``computed_cheap`` keeps the cheap QM value."""
    values = parameters.get_dict()
    delta = correction.get_dict() if correction is not None else {}
    exact = {}
    if expensive is not None:
        exact = dict(zip(expensive.base.attributes.get('structure_uuids'), expensive.get_array(objective.value)))

    def best_value(uuid: str, cheap: float) -> tuple[float, str]:
        if uuid in exact:
            return float(exact[uuid]), 'expensive'
        if uuid in delta:
            return float(cheap + delta[uuid]['value']), 'cheap + Δ'
        return float(cheap), 'cheap'

    computed = dict(zip(verified.base.attributes.get('structure_uuids'), verified.get_array(objective.value)))
    rows = []
    for row in ranking['ranking'][: int(values['top_k'])]:
        if row['uuid'] not in computed:
            continue  # its reference calculation failed: listed by the reference chain's `failed` output
        value, level = best_value(row['uuid'], float(computed[row['uuid']]))
        rows.append({**row, 'computed': value, 'error': row['predicted'] - value, 'hit': _is_hit(value, values)})
        if delta or exact:
            rows[-1].update(computed_cheap=float(computed[row['uuid']]), computed_level=level)
    errors = np.array([r['error'] for r in rows]) if rows else np.zeros(0)
    hits = [r['hit'] for r in rows if r['hit'] is not None]
    summary = {
        'verified': rows,
        'mae': float(np.abs(errors).mean()) if len(errors) else None,
        'hit_rate': float(np.mean(hits)) if hits else None,
        'hits': int(sum(hits)) if hits else None,
        'hit_threshold': values.get('hit_threshold'),
        'maximise': bool(values['maximise']),
        'objective': objective.value,
        'unit': 'eV',
    }
    if labelled is not None and names is not None:
        key_of = {uuid: key for key, uuid in names.get_list()}
        found = [
            {'key': key_of.get(uuid, uuid), 'computed': best_value(uuid, float(value))[0], 'source': 'labelled'}
            for uuid, value in zip(labelled.base.attributes.get('structure_uuids'), labelled.get_array(objective.value))
        ]  # fmt: skip
        before = [_is_hit(row['computed'], values) for row in found]
        found += [{'key': row['key'], 'computed': row['computed'], 'source': 'screening'} for row in rows]
        found.sort(key=lambda row: -row['computed'] if values['maximise'] else row['computed'])
        for row in found:
            row['hit'] = _is_hit(row['computed'], values)
        summary['best_found'] = found[: max(int(values['top_k']), sum(bool(row['hit']) for row in found))]
        summary['computed_count'] = len(found)
        summary['labelled_hits'] = int(sum(bool(hit) for hit in before)) if values.get('hit_threshold') is not None else None
        summary['labelled_count'] = len(before)
    return orm.Dict(summary)


@calcfunction
def objective_pairs(cheap: DatasetData, expensive: DatasetData, parameters: orm.Dict) -> dict[str, t.Any]:
    """The training data of a property campaign's Δ model: the molecules labelled at both levels, paired by structure
    uuid, with ``delta_<objective>`` = expensive - cheap (eV). ``parameters``: ``objective``, ``holdout_fraction``,
    ``seed``. Outputs ``training`` and ``holdout`` (a seeded share of the pairs, at least one: the Δ model's
    validation and calibration set) and ``summary``: the pairs, and on the held-out pairs the error of cheap QM
    alone and of cheap QM + the mean difference of the training pairs (the baselines the Δ model must beat)."""
    values = parameters.get_dict()
    name = values['objective']
    cheap_of = dict(zip(cheap.base.attributes.get('structure_uuids'), cheap.get_array(name)))
    uuids = expensive.base.attributes.get('structure_uuids')
    rows = [i for i, uuid in enumerate(uuids) if uuid in cheap_of]
    if len(rows) < 3:
        raise ValueError(f'{len(rows)} molecules have both levels; a Δ model of {name} needs at least 3')
    frames = list(expensive.frames())
    target = np.array([expensive.get_array(name)[i] for i in rows], dtype=float)
    base = np.array([cheap_of[uuids[i]] for i in rows], dtype=float)
    order = np.random.default_rng(int(values.get('seed', 0))).permutation(len(rows))
    held = max(1, int(round(float(values.get('holdout_fraction', 0.2)) * len(rows))))
    parts = {'holdout': sorted(order[:held]), 'training': sorted(order[held:])}
    outputs: dict[str, t.Any] = {}
    for part, index in parts.items():
        node = DatasetData.from_frames([frames[rows[i]] for i in index])
        units = dict(node.base.attributes.get('units'))
        for array, data in ((name, target), (f'{name}_cheap', base), (f'delta_{name}', target - base)):
            node.set_array(array, np.asarray(data[index], dtype=float))
            units[array] = 'eV'
        node.base.attributes.set('units', units)
        outputs[part] = node
    difference = target - base
    shift = float(np.mean(difference[parts['training']]))
    holdout = parts['holdout']
    outputs['summary'] = orm.Dict(
        {
            'objective': name, 'pairs': len(rows), 'training': len(parts['training']), 'holdout': len(holdout),
            'base_only_mae': float(np.mean(np.abs(difference[holdout]))), 'shift': shift,
            'shift_mae': float(np.mean(np.abs(difference[holdout] - shift))), 'unit': 'eV',
        }
    )  # fmt: skip
    return outputs


@calcfunction
def delta_corrections(predictions: orm.ArrayData, keys: orm.List) -> orm.Dict:
    """The Δ model's correction (expensive - cheap) and its calibrated spread by structure uuid, from its
    ``mlqm.predict`` output; ``keys``: ``[key, uuid]`` in the order of the prediction rows."""
    value = predictions.get_array('property')
    spread = predictions.get_array('property_spread')
    return orm.Dict(
        {uuid: {'key': key, 'value': float(value[i]), 'spread': float(spread[i]), 'unit': 'eV'}
         for i, (key, uuid) in enumerate(keys.get_list())}
    )  # fmt: skip


@calcfunction
def apply_routing(summary: orm.Dict, parameters: orm.Dict, keys: orm.List) -> orm.Dict:
    """What the campaign does with each molecule's route (``summary``: the ``mlqm.method_selection`` decisions by
    molecule key). ``parameters``: ``multireference`` (``casscf``: labelled at the multireference level
    ``multireference_level`` only, out of the single-reference training set and the screening; ``exclude``: never
    labelled or screened; ``flag``: kept and listed). Molecules of ``keys`` without a decision (their features job
    failed) are kept and listed as unrouted. ``kept``: the single-reference molecules of the campaign."""
    decisions = summary.get_dict()
    action = parameters['multireference']
    multireference = sorted(key for key in keys.get_list() if (decisions.get(key) or {}).get('route') == 'multireference')
    unrouted = sorted(key for key in keys.get_list() if key not in decisions)
    reasons = {key: decisions[key].get('reason') for key in multireference}
    if action == 'casscf':
        level = parameters['multireference_level']
        for key in multireference:
            space = decisions[key].get('active_space')
            estimate = f' (MP2 natural orbitals suggest CAS({space["electrons"]},{space["orbitals"]}))' if space else ''
            reasons[key] = (
                f'{reasons[key]}: labelled at {level}{estimate}, kept out of the single-reference training set and '
                'the screening'
            )
    removed = set(multireference) if action in ('exclude', 'casscf') else set()
    return orm.Dict(
        {
            'multireference_action': action,
            'excluded': multireference if action == 'exclude' else [],
            'flagged': multireference if action == 'flag' else [],
            'casscf': multireference if action == 'casscf' else [],
            'multireference_level': parameters.get('multireference_level') if action == 'casscf' else None,
            'unrouted': unrouted,
            'kept': sorted(key for key in keys.get_list() if key not in removed),
            'p_mr': {key: decisions[key].get('p_mr') for key in sorted(decisions)},
            'reasons': reasons,
        }
    )


@calcfunction
def multireference_outcome(routing: orm.Dict, job: orm.Dict, failures: orm.Dict | None = None, **results: orm.Dict) -> orm.Dict:
    """The multireference level of each molecule ``routing`` sent there (``routing['casscf']``): its CASSCF energy and
    active space (``results``: the CASSCF job's output of molecule KEY as ``casscf_KEY``), or why it failed
    (``failures``, the job's, or ``job['message']`` for a molecule the job returned nothing for). A failed molecule is
    recorded, not fatal."""
    labelled, failed = {}, {}
    reported = failures.get_dict() if failures is not None else {}
    for key in routing['casscf']:
        if f'casscf_{key}' in results:
            result = results[f'casscf_{key}']
            labelled[key] = {
                'casscf_energy': result.get('casscf_energy'), 'active_space': result.get('active_space'),
                'casscf_converged': result.get('casscf_converged'), 'uuid': result.uuid, 'unit': 'eV',
            }  # fmt: skip
        else:
            failure = reported.get(key) or {'status': 'job_failed', 'message': job['message'] or 'no result'}
            failed[key] = {'status': failure.get('status'), 'message': failure.get('message')}
    return orm.Dict({'level': routing['multireference_level'], 'labelled': labelled, 'failed': failed})


@calcfunction
def campaign_report(history: orm.List, **nodes) -> orm.Dict:
    """What the campaign did: per iteration labels, validation error and uncertainty, why it stopped, screening."""
    history_values = history.get_list()
    report: dict[str, t.Any] = {'iterations': history_values}
    if history_values:
        report['labels'] = history_values[-1]['labels']
        report['validation_error'] = history_values[-1].get('validation_error')
        report['stop_reason'] = history_values[-1].get('stop_reason')
    if 'screening' in nodes:
        report['screening'] = nodes['screening'].get_dict()
    if 'routing' in nodes:
        routing = nodes['routing'].get_dict()
        report['method_selection'] = {
            name: routing.get(name) for name in ('multireference_action', 'excluded', 'flagged', 'casscf', 'unrouted')
        }
    if 'multireference' in nodes:
        report.setdefault('method_selection', {})['multireference'] = nodes['multireference'].get_dict()
    if 'model' in nodes:
        report['model_uuid'] = nodes['model'].uuid
    if 'dataset' in nodes:
        report['dataset_uuid'] = nodes['dataset'].uuid
        report['dataset_size'] = len(nodes['dataset'])
    return orm.Dict(report)


#: Arrays every ``DatasetData`` has; any other array with one value per frame is a property carried through merges.
_STANDARD_ARRAYS = {
    'numbers', 'positions', 'offsets', 'energy', 'forces', 'forces_present', 'frame_index', 'charge', 'multiplicity',
}


@calcfunction
def merge_labelled(**parts: DatasetData) -> DatasetData:
    """Concatenate datasets (sorted by input label) keeping per-frame property arrays (e.g. ``homo_lumo_gap``) that
    every part has, with their units."""
    ordered = [part for _, part in sorted(parts.items())]
    merged = DatasetData.from_frames([frame for part in ordered for frame in part.frames()])
    extra = set.intersection(*(set(part.get_arraynames()) - _STANDARD_ARRAYS for part in ordered))
    units = dict(merged.base.attributes.get('units'))
    for name in sorted(extra):
        merged.set_array(name, np.concatenate([part.get_array(name) for part in ordered]))
        units[name] = ordered[0].base.attributes.get('units', {}).get(name, '')
    merged.base.attributes.set('units', units)
    return merged
