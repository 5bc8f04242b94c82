"""What the colcon install carries besides code: the extras' version ranges for install hints."""

from __future__ import annotations

import configparser
from pathlib import Path

from ament_index_python.packages import get_package_share_directory

from act_policy.core.dependencies import install_hint, installed_setup_cfg

ROOT = Path(__file__).resolve().parents[2]


def test_the_colcon_install_quotes_the_version_ranges_of_setup_cfg_in_its_install_hints() -> None:
    """A colcon install has no pip metadata with the extras; it reads the setup.cfg installed beside it."""
    share = Path(get_package_share_directory("act_policy"))
    assert installed_setup_cfg().resolve() == (share / "setup.cfg").resolve()
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    ranges = [line.strip() for line in parser["options.extras_require"]["openvino"].splitlines() if line.strip()]
    hint = install_hint("openvino")
    assert ranges and all(f"'{r}'" in hint for r in ranges), hint
