"""Tests of {{name}}, in plain CPython: `pytest`."""

import pytest

from app import plugin
from plexus_sdk import ErrorKind, PluginError
from plexus_sdk.testing import TestHost


def test_the_examples_hold():
    assert TestHost(plugin).check_examples() == 2


def test_greet():
    host = TestHost(plugin)
    assert host.call("greet", {"name": "Bob"}) == {"greeting": "Hello, Bob!"}
    assert host.logs == [("info", "greeting Bob")]


def test_parameters_are_checked():
    with pytest.raises(PluginError) as caught:
        TestHost(plugin).call("greet", {"nmae": "Bob"})
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    assert "did you mean `name`?" in caught.value.message
