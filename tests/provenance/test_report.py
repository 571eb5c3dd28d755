"""The campaign report: one self-contained HTML file from the graph, checked in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

from aiida_mlqm.provenance.report import SECTIONS
from service_fixtures import require_service

CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                  '--disable-component-update', '--no-first-run']  # fmt: skip


def test_report_has_every_plot_from_the_graph(chain, tmp_path):
    from aiida_mlqm.cli import main
    from click.testing import CliRunner

    output = tmp_path / 'report.html'
    result = CliRunner().invoke(main, ['campaign', 'report', chain['model'], '-o', str(output)])
    assert result.exit_code == 0, result.output
    page = output.read_text()
    for name, title in SECTIONS:
        figure = re.search(rf'<figure class="plot (\w+)" id="plot-{name}" data-status="(\w+)">(.*?)</figure>', page, re.DOTALL)
        assert figure, name
        assert figure.group(2) == 'data', f'{name}: {figure.group(3)[-400:]}'
        assert '<svg' in figure.group(3)
    # self-contained: nothing fetched from elsewhere, no script
    assert not re.search(r'(src|href)="(http|//)', page) and '<script' not in page
    assert 'learning curve' in page.lower() and 'target 0.043' in page


def test_report_of_a_graph_without_campaign_records(chain, tmp_path):
    """A reference chain alone: the page still has every section, and says what is missing."""
    from aiida_mlqm.provenance.report import gather, render

    data = gather(chain['reference'])
    assert data['cost'] and not data['selection'] and not data['predictions']
    page = render(data)
    assert page.count('<figure class="plot') == len(SECTIONS)
    assert 'no selection records' in page


def test_report_renders_in_headless_chromium(chain, tmp_path):
    chromium = shutil.which('chromium') or shutil.which('chromium-browser')
    require_service(chromium is not None, 'Debian chromium (headless)', 'apt-get install chromium (deploy/ci-services.sh)')
    from aiida_mlqm.provenance.report import write_report

    output = write_report(chain['model'], tmp_path / 'report.html')
    profile = tmp_path / 'chromium-profile'
    common = [chromium, *CHROMIUM_FLAGS, f'--user-data-dir={profile}', '--enable-logging=stderr', '--v=0']
    dom = subprocess.run([*common, '--dump-dom', output.as_uri()], check=False, capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for name, _ in SECTIONS:
        assert re.search(rf'id="plot-{name}" data-status="data"><svg', dom.stdout), name
    console = [line for line in dom.stderr.splitlines() if 'CONSOLE' in line or 'Uncaught' in line]
    assert not console, console
    screenshot = tmp_path / 'report.png'
    shot = subprocess.run([*common, '--window-size=1280,6000', f'--screenshot={screenshot}', output.as_uri()],
                          check=False, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shot.returncode == 0 and screenshot.stat().st_size > 20_000, shot.stderr[-2000:]
    from PIL import Image

    pixels = Image.open(screenshot).convert('L')
    assert len(set(pixels.getdata())) > 50  # drawn plots, not a blank page
