"""``mlqm demo``: a real small campaign on the embedded default: PySCF labels, committee training, active learning
and screening of G2 molecules for the smallest HOMO-LUMO gap, with what it found and how to look at the graph."""

from __future__ import annotations

import pathlib

import click

from . import main

DEFAULT_MOLECULES = (
    'H2O', 'NH3', 'CH4', 'CO', 'N2', 'HCN', 'C2H2', 'C2H4', 'C2H6', 'H2CO', 'CH3OH', 'HCOOH', 'CH3CHO', 'H2CCO',
    'CH3CN', 'CO2', 'N2O', 'NCCN', 'O3', 'CH3NO2', 'OCHCHO', 'C4H4O', 'C4H4NH', 'C6H6', 'butadiene', 'H3CNH2',
    'CH2NHCH2', 'CH3COCH3', 'H2O2', 'N2H4',
)  # fmt: skip
CONFIG = pathlib.Path(__file__).parents[1] / 'workflows' / 'protocols' / 'demo_campaign.yaml'


@main.command('demo')
@click.option('--profile', 'profile_name', default=None, help='Profile to use (default: the embedded `mlqm` profile).')
@click.option(
    '--molecules', default=','.join(DEFAULT_MOLECULES), show_default=True, help='Comma-separated G2 names.'
)
@click.option('--level', default=None, help='METHOD/BASIS of the labels (default: the demo config, hf/6-31g*).')
@click.option('--computer', help='Run the jobs there, with its mlqm-python code (default: localhost).')
@click.option('--code', 'code_label', help='Code to run the jobs with, e.g. mlqm-python@localhost-slurm.')
@click.option('--submit', is_flag=True, help='Hand the campaign to the daemon, print its pk and return (needs a broker).')
def cmd_demo(profile_name, molecules, level, computer, code_label, submit):
    """A small active-learning campaign: which of these molecules have the smallest HOMO-LUMO gap?

    Builds the molecules (mlqm.build), labels a diverse initial set and a fixed validation set with PySCF
    (mlqm.reference), trains a committee (mlqm.train), lets it choose what to label next by its uncertainty
    (mlqm.predict + a selection calcfunction), then ranks the unlabelled molecules by a lower confidence bound and
    verifies the best ones with PySCF. Runs on the embedded default (SQLite, no broker, jobs on this machine) in a
    few minutes on 2 cores; the config is workflows/protocols/demo_campaign.yaml (`mlqm campaign run` takes the same).
    """
    import yaml

    from ..chemistry.readers import LibraryError, read_g2
    from ..workflows.campaign_config import CampaignConfigError, parse_config
    from .campaign import run_or_submit
    from .reference import load_code, make_console

    values = yaml.safe_load(CONFIG.read_text())
    try:
        records = read_g2(molecules)
    except LibraryError as exception:
        raise click.BadParameter(str(exception), param_hint='--molecules') from exception
    values['library'] = {'g2': [name.strip() for name in molecules.split(',') if name.strip()]}
    if level:
        values['levels']['cheap']['level'] = level
    try:
        config = parse_config(values)  # a typo in the level fails here, before anything is stored
    except CampaignConfigError as exception:
        raise click.BadParameter(str(exception), param_hint='--level') from exception
    console = make_console()
    code = load_code(profile_name, computer=computer, code=code_label)
    console.print(
        f'Demo campaign: {len(records)} G2 molecules, objective: smallest HOMO-LUMO gap at {config.levels.cheap.level}; '
        f'label budget {config.levels.cheap.max_labels}, then the top {config.screening.top_k} verified by PySCF.'
    )
    run_or_submit(config, records, code, console, submit=submit)
