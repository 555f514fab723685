"""nbval settings for the course notebooks.

Cells marked `# NBVAL_CHECK_OUTPUT` are the regression record of what a notebook
computes: their stdout and results. Native libraries (TensorFlow, TFLite, MediaPipe's
C++ graph) write diagnostics to stderr from their own threads, so those lines can land
in any cell at any time; they are not compared.
"""
from nbval.plugin import IPyNbCell

_compare_outputs = IPyNbCell.compare_outputs


def _without_stderr(outputs):
    return [out for out in outputs if not (out.get("output_type") == "stream" and out.get("name") == "stderr")]


def compare_outputs_ignoring_stderr(self, test, ref, skip_compare=None):
    return _compare_outputs(self, _without_stderr(test), _without_stderr(ref), skip_compare)


IPyNbCell.compare_outputs = compare_outputs_ignoring_stderr


# --- Notebooks that need the fixture pack ------------------------------------------------
# A notebook whose metadata has {"holistic_lab": {"needs": "fixtures"}} reads the mmpose fixture
# pack through holistic_lab.datasets: a local folder ($HOLISTIC_LAB_DATA, or ../shared/fixtures/mmpose
# beside the clone), else a checksummed download. With no folder and no way to download (a plain
# clone offline) such a notebook is skipped with the reason; with $HOLISTIC_LAB_DATA set it always
# runs, so a missing or corrupt file fails it.
import socket

import pytest

NO_PACK_REASON = ("needs the fixture pack: $HOLISTIC_LAB_DATA is unset, ../shared/fixtures/mmpose is not beside the "
                  "repository and {host} cannot be reached to download it; set HOLISTIC_LAB_DATA to the mmpose "
                  "fixture folder to run this notebook")


def _needs_fixtures(notebook) -> bool:
    return notebook.metadata.get("holistic_lab", {}).get("needs") == "fixtures"


def _packs(notebook) -> tuple[str, ...]:
    """The fixture packs a notebook reads (metadata holistic_lab.packs; the mmpose pack by default)."""
    return tuple(notebook.metadata.get("holistic_lab", {}).get("packs", ["mmpose"]))


def _missing_pack_reason(packs) -> str | None:
    """None when every pack is local or downloadable, else why the notebooks that need them cannot run."""
    from urllib.parse import urlparse

    from holistic_lab.datasets import FIXTURES_BASE_URL, data_dir

    if all(data_dir(pack=pack) is not None for pack in packs):
        return None
    host = urlparse(FIXTURES_BASE_URL).hostname
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return None
    except OSError:
        missing = [pack for pack in packs if data_dir(pack=pack) is None]
        return NO_PACK_REASON.format(host=host) + f" (packs not found: {', '.join(missing)})"


def pytest_collection_modifyitems(config, items):
    notebooks = {item.parent for item in items if isinstance(item, IPyNbCell) and _needs_fixtures(item.parent.nb)}
    reasons = {notebook: _missing_pack_reason(_packs(notebook.nb)) for notebook in notebooks}
    for item in items:
        if reasons.get(item.parent) is not None:
            item.add_marker(pytest.mark.skip(reason=reasons[item.parent]))
