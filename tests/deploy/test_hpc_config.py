"""deploy/hpc/: the computer and code YAMLs are accepted by the verdi commands the README tells users to run."""

from __future__ import annotations

from service_fixtures import REPO, ProfileEnv

HPC = REPO / 'deploy' / 'hpc'


def test_hpc_yamls_set_up_computer_and_codes(tmp_path):
    profile = ProfileEnv('hpc-yaml', tmp_path)
    profile.mlqm('setup', '--profile', profile.name)
    profile.verdi('computer', 'setup', '-n', '--config', str(HPC / 'computer.yml'))
    profile.verdi(
        'computer', 'configure', 'core.ssh_async', '-n', 'hpc', '--config', str(HPC / 'computer-configure.yml')
    )
    for code in ('code-pyscf.yml', 'code-train.yml'):
        profile.verdi('code', 'create', 'core.code.installed', '-n', '--config', str(HPC / code))

    result = profile.run_json(
        """
        computer = load_computer('hpc')
        code = load_code('mlqm-python@hpc')
        emit(scheduler=computer.scheduler_type, transport=computer.transport_type,
             configured=computer.is_user_configured(orm.User.collection.get_default()),
             safe_interval=computer.get_authinfo(orm.User.collection.get_default()).get_auth_params()['safe_interval'],
             plugin=code.default_calc_job_plugin, prepend=code.prepend_text,
             train=load_code('mlqm-train@hpc').default_calc_job_plugin)
        """
    )
    assert (result['scheduler'], result['transport']) == ('core.slurm', 'core.ssh_async')
    assert result['configured'] and result['safe_interval'] > 0  # a real login node keeps a safe interval
    assert result['plugin'] == 'mlqm.pyscf' and result['train'] == 'mlqm.train'
    assert 'OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK' in result['prepend']
