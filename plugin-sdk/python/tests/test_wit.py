"""The WIT has one home, the repository's wit/: the package carries a copy that cannot drift."""

from importlib import resources
from pathlib import Path

import pytest

from plexus_sdk import CONTRACT_VERSION
from plexus_sdk.build import wit_path

TOP_LEVEL = Path(__file__).resolve().parents[3] / "wit" / "plexus-plugin.wit"


def test_the_packaged_wit_is_the_top_level_one():
    if not TOP_LEVEL.is_file():
        pytest.skip(f"not in a Plexus checkout ({TOP_LEVEL} is missing)")
    packaged = resources.files("plexus_sdk").joinpath("wit", "plexus-plugin.wit").read_bytes()
    assert packaged == TOP_LEVEL.read_bytes(), "the packaged wit/plexus-plugin.wit differs from the repository's"
    assert wit_path().read_bytes() == TOP_LEVEL.read_bytes()


def test_the_contract_version_is_the_wit_package_version():
    text = wit_path().read_text()
    assert f"package plexus:plugin@{CONTRACT_VERSION};" in text
