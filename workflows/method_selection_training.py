"""The shipped method-selection classifier: trained in the graph from the project's own records, exported as a small
AiiDA archive, imported by ``mlqm setup --method-selection``.

Provenance, all in the archive: ``SinglefileData`` records (geometries, features and frozen-core CCSD(T) results of
every geometry, free-atom energies, written by ``benchmarks/_method_selection_data.py`` through the fixed job
runner) -> :func:`training_set_from_records` -> ``Dict`` training set (feature rows, labels, molecules, families,
diagnostics) -> :func:`train_method_selection_classifier` -> ``ModelData``. No wavefunctions are stored.
"""

from __future__ import annotations

import json
import pathlib
import typing as t

from aiida import orm
from aiida.engine import calcfunction
from aiida.plugins import DataFactory

ModelData = DataFactory('mlqm.model')

DEFAULT_DIRECTORY = pathlib.Path(__file__).resolve().parent.parent / 'provenance' / 'data' / 'method_selection'
ARCHIVE_NAME = 'provenance.aiida'
MANIFEST_NAME = 'manifest.json'


@calcfunction
def training_set_from_records(records: orm.SinglefileData, criteria: orm.Dict) -> orm.Dict:
    """Labels (MultireferenceCriteria on T1, D1, %TAE[(T)]) and feature rows of every good geometry in ``records``."""
    from ..models.method_selection import MultireferenceCriteria, training_rows

    data = json.loads(records.get_content())
    return orm.Dict(training_rows(data, MultireferenceCriteria.model_validate(criteria.get_dict())))


@calcfunction
def train_method_selection_classifier(training_set: orm.Dict, settings: orm.Dict):
    """The MR classifier with grouped-CV, held-out-family and bootstrap metrics (``settings``: ClassifierSettings plus
    an optional ``held_out_family``)."""
    from .method_selection import train_from_training_set

    return train_from_training_set(training_set.get_dict(), dict(settings.get_dict()))


def train_default(records_path: str | pathlib.Path, settings: t.Mapping[str, t.Any], criteria=None):
    """Store the records, build the training set and train, in the current profile; return the ModelData."""
    records = orm.SinglefileData(str(records_path), filename='method_selection_records.json')
    records.description = 'Features and frozen-core CCSD(T)/cc-pVDZ results per geometry (mlqm method selection)'
    training_set = training_set_from_records(records, orm.Dict(dict(criteria or {})))
    return train_method_selection_classifier(training_set, orm.Dict(dict(settings)))


def export_default(model, directory: str | pathlib.Path = DEFAULT_DIRECTORY) -> pathlib.Path:
    """Write the archive (classifier and its provenance) and a manifest naming the nodes into ``directory``."""
    from aiida.tools.archive import create_archive

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    archive = directory / ARCHIVE_NAME
    if archive.exists():
        archive.unlink()
    create_archive([model], filename=str(archive), include_logs=False, include_comments=False)
    training_set = model.creator.inputs.training_set
    manifest = {
        'model_uuid': model.uuid,
        'training_set_uuid': training_set.uuid,
        'records_uuid': training_set.creator.inputs.records.uuid,
        'metrics': model.metrics,
        'num_rows': len(training_set['labels']),
        'num_mr': int(sum(training_set['labels'])),
    }
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, default=float))
    return directory


def import_default(directory: str | pathlib.Path = DEFAULT_DIRECTORY):
    """The shipped classifier in the current profile, importing its archive the first time; returns the ModelData."""
    from aiida.common.exceptions import NotExistent
    from aiida.tools.archive import import_archive

    directory = pathlib.Path(directory)
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f'no shipped method-selection classifier at {directory} ({MANIFEST_NAME} missing): reinstall aiida-mlqm'
        )
    manifest = json.loads(manifest_path.read_text())
    try:
        return orm.load_node(manifest['model_uuid'])
    except NotExistent:
        import_archive(str(directory / ARCHIVE_NAME))
        return orm.load_node(manifest['model_uuid'])


def shipped_manifest(directory: str | pathlib.Path = DEFAULT_DIRECTORY) -> dict[str, t.Any]:
    return json.loads((pathlib.Path(directory) / MANIFEST_NAME).read_text())
