"""Provenance queries on a real chain (PySCF references, a trained committee, predictions), on both back ends."""

from __future__ import annotations

import json
import pathlib

import pytest
from provenance_chain import ask_all, check_answers, strip_pks

HERE = pathlib.Path(__file__).parent


def test_queries_on_embedded_storage(chain):
    check_answers(chain, ask_all(chain))


CHAIN_SCRIPT = f"""
sys.path.insert(0, {str(HERE)!r})
from provenance_chain import ask_all, build_chain
ids = build_chain(load_code('mlqm-python@localhost'))
emit(ids=ids, answers=ask_all(ids), storage=orm.load_node(ids['model']).backend.__class__.__name__)
"""


@pytest.mark.postgres
@pytest.mark.rabbitmq
@pytest.mark.slow
def test_queries_on_postgres(psql_daemon_profile):
    result = psql_daemon_profile.run_json(CHAIN_SCRIPT, timeout=600)
    assert result['storage'] == 'PsqlDosBackend'
    assert result['answers']['lineage']['method'] == 'querybuilder'
    check_answers(result['ids'], result['answers'])


def test_cli_tables_json_and_csv(chain, tmp_path):
    from aiida_mlqm.cli import main
    from click.testing import CliRunner

    runner = CliRunner()
    result = runner.invoke(main, ['query', 'lineage', chain['model'], '--json'])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert {row['uuid'] for row in answer['structures']} == {
        uuid for key, uuid in chain['structures'].items() if key != 'broken'
    }
    result = runner.invoke(main, ['query', 'failures', chain['reference'], '--csv', str(tmp_path / 'csv')])
    assert result.exit_code == 0, result.output
    assert 'PyscfBatchCalculation' in result.output and 'broken' in result.output
    files = sorted(path.name for path in (tmp_path / 'csv').iterdir())
    assert files == ['failures_0_failed_processes.csv', 'failures_1_structures_that_failed_inside_batch_jobs.csv',
                     'failures_2_not_labelled_after_retries.csv']  # fmt: skip
    header = (tmp_path / 'csv' / files[0]).read_text().splitlines()[0]
    assert header == 'process,exit status,state,count,message,pks'
    for query in ('cost', 'invalidate', 'summary'):
        result = runner.invoke(main, ['query', query, chain['reference'] if query != 'invalidate' else chain['water_batch']])
        assert result.exit_code == 0, result.output
    result = runner.invoke(main, ['query', 'why', chain['structures']['mol_0']])
    assert result.exit_code == 0 and 'top force spread' in result.output and 'hf/sto-3g' in result.output
    result = runner.invoke(main, ['query', 'why', chain['model']])
    assert result.exit_code == 2 and 'StructureData' in result.output
    result = runner.invoke(main, ['query', 'lineage', '999999999'])
    assert result.exit_code == 2 and 'no node' in result.output


def test_archive_imports_into_a_fresh_profile_with_the_same_answers(chain, tmp_path):
    """`verdi archive create` of the chain, imported into a new profile: every query gives the same answer."""
    from aiida_mlqm.provenance.exports import export_archive
    from service_fixtures import ProfileEnv

    filename = tmp_path / 'chain.aiida'
    export_archive([chain['reference'], chain['train'], chain['predict'], *chain['records'].values()], filename)
    before = ask_all(chain)

    profile = ProfileEnv('mlqm', tmp_path / 'fresh')
    profile.mlqm('setup', timeout=300)
    profile.verdi('archive', 'import', str(filename), timeout=300)
    after = profile.run_json(
        f"""
sys.path.insert(0, {str(HERE)!r})
from provenance_chain import ask_all
emit(answers=ask_all(json.loads({json.dumps(json.dumps(chain))})))
"""
    )['answers']
    for name in before:
        assert strip_pks(after[name]) == strip_pks(before[name]), name
