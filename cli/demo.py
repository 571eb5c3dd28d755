"""``mlqm demo``: a real small campaign on the embedded default: PySCF labels, committee training, active learning
and screening of G2 molecules for the smallest HOMO-LUMO gap, with what it found and how to look at the graph."""

from __future__ import annotations

import pathlib

import click

from . import main

# The closed-shell G2 molecules of H, C, N and O with more than one atom (H2 and singlet CH2 left out): 59 molecules,
# HOMO-LUMO gaps 11.7-21.8 eV at HF/6-31G*.
DEFAULT_MOLECULES = (
    'CH3CHO', 'OCHCHO', 'CH3CH2OCH3', 'HCOOH', 'C2H2', 'C4H4NH', 'CO', 'C2H6CHOH', 'CH2NHCH2', 'isobutene',
    'bicyclobutane', 'C2H6', 'H3CNH2', 'methylenecyclopropane', 'CH3CH2OH', 'CH3CN', 'cyclobutene', 'CH3ONO',
    'C3H6_D3h', 'CO2', 'trans-butane', 'CH2OCH2', 'C6H6', 'CH3CONH2', 'cyclobutane', 'H2CCHCN', 'butadiene', 'H2CO',
    'CH3COOH', 'N2H4', 'CH3OCH3', 'C5H5N', 'H2O', 'CH3NO2', 'C4H4O', 'CH3OH', 'isobutane', 'O3', 'C2H4', 'NCCN',
    'C3H4_D2d', '2-butyne', 'N2O', 'HCN', 'C2H6NH', 'C3H8', 'NH3', 'C3H9N', 'C3H6_Cs', 'HCOOCH3', 'C5H8', 'C3H4_C3v',
    'CH3COCH3', 'CH4', 'H2CCO', 'CH3CH2NH2', 'N2', 'H2O2', 'C3H4_C2v',
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
