"""`Record`: the immutable value class behind the configs and registry rows."""

from __future__ import annotations

import copy
import pickle

import pytest

from connector_cli.config import DiscoveryConfig, ServerConfig
from connector_cli.discovery import PluginFailure
from connector_cli.sdk.registry import Origin


def test_records_compare_hash_and_print_by_their_fields() -> None:
    a, b = Origin("module", "x", "pkg.x"), Origin("module", "x", "pkg.x")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != Origin("module", "y") and a != ("module", "x", "pkg.x", None, None)
    assert repr(a) == ("Origin(kind='module', name='x', target='pkg.x', distribution=None, "
                       "version=None)")
    assert a.as_dict() == {"kind": "module", "name": "x", "target": "pkg.x",
                           "distribution": None, "version": None}
    assert DiscoveryConfig(("m",)) == DiscoveryConfig(modules=("m",), plugins=None)


def test_records_are_immutable() -> None:
    origin = Origin("module", "x")
    with pytest.raises(AttributeError, match="Origin is immutable"):
        origin.name = "y"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del origin.kind
    config = ServerConfig(port=1)
    with pytest.raises(AttributeError, match="cannot assign"):
        config.port = 2  # type: ignore[misc]
    assert config.port == 1 and origin.name == "x"


def test_a_hidden_field_takes_no_part_in_equality_or_repr() -> None:
    origin = Origin("entry-point", "p")
    one = PluginFailure(origin, "import-error", "boom", ValueError("a"))
    two = PluginFailure(origin, "import-error", "boom", ValueError("b"))
    assert one == two and hash(one) == hash(two)
    assert "ValueError" not in repr(one) and one.exception is not two.exception


def test_a_server_config_still_refuses_bad_values() -> None:
    with pytest.raises(Exception, match="workers must be at least 1"):
        ServerConfig(workers=0)
    with pytest.raises(Exception, match="needs both a certificate and a key"):
        ServerConfig(tls_cert="c.pem")


def test_records_copy_and_pickle() -> None:
    config = ServerConfig(port=5, workers=3)
    assert copy.copy(config) == copy.deepcopy(config) == pickle.loads(pickle.dumps(config))
    failure = PluginFailure(Origin("module", "m"), "import-error", "boom", ValueError("x"))
    again = pickle.loads(pickle.dumps(failure))
    assert again == failure and str(again.exception) == "x"
