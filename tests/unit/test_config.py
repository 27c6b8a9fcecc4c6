import argparse
import dataclasses

import pytest
import yaml

from jinad import config as settings
from jinad.config import Config, outside_name
from jinad.urls import host_name
from tests.conftest import REPO


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    return parser.parse_args(argv)


def test_shipped_config_file_states_the_defaults():
    assert Config(**settings.read_file(REPO / "configs" / "jinad.yml")) == Config()


def test_defaults_follow_the_seed():
    config = settings.load(parse(), environ={})
    assert config.port_expose == 8000
    assert config.home.name == ".jinad"


def test_flags_beat_environment_beat_file(tmp_path):
    file = tmp_path / "j.yml"
    file.write_text("port_expose: 8001\nstop_grace_s: 3\nlog_level: DEBUG\n")
    env = {"JINAD_CONFIG": str(file), "JINAD_PORT_EXPOSE": "8002", "JINAD_STOP_GRACE_S": "4"}
    config = settings.load(parse("--port-expose", "8003"), environ=env)
    assert (config.port_expose, config.stop_grace_s, config.log_level) == (8003, 4.0, "DEBUG")


def test_the_home_is_called_workspace_outside(tmp_path):
    file = tmp_path / "j.yml"
    file.write_text(f"workspace: {tmp_path / 'a'}\n")
    assert settings.load(parse("--config", str(file)), environ={}).home == tmp_path / "a"
    assert settings.load(parse(), environ={"JINAD_WORKSPACE": str(tmp_path / "b")}).home == tmp_path / "b"
    assert settings.load(parse("--workspace", str(tmp_path / "c")), environ={}).home == tmp_path / "c"
    file.write_text("home: x\n")
    with pytest.raises(ValueError, match="unknown setting"):
        settings.read_file(file)


@pytest.mark.parametrize("text", ["nope: 1\n", "port_expose: eighty\n", "- a list\n"])
def test_bad_settings_file_is_refused_with_its_name(tmp_path, text):
    file = tmp_path / "bad.yml"
    file.write_text(text)
    with pytest.raises(ValueError, match="bad.yml"):
        settings.load(parse("--config", str(file)), environ={})


def test_bad_port_range_is_refused():
    with pytest.raises(ValueError, match="port_range"):
        Config(port_range="5000")


def test_port_range_is_split_between_the_daemon_and_jina():
    config = Config(port_range="20000-20099")
    assert config.ports == range(20000, 20080) and config.jina_ports == range(20080, 20100)
    with pytest.raises(ValueError, match="at least 10"):
        Config(port_range="20000-20005")


def test_default_ports_lie_below_the_kernels_ephemeral_range():
    # Outgoing connections take local ports from 32768 up (Linux's default); one of those
    # could take a port handed to an object that has not bound it yet.
    assert Config().jina_ports.stop <= 32768


@pytest.mark.parametrize("changes, word", [
    ({"port_expose": 92801}, "port_expose"),
    ({"port_range": "0-10"}, "port_range"),
    ({"port_range": "65530-65600"}, "port_range"),
    ({"stop_grace_s": -1.0}, "stop_grace_s"),
    ({"log_ring_lines": 0}, "log_ring_lines"),
    ({"start_timeout_s": float("inf")}, "start_timeout_s"),
    ({"remote_tokens": "garbage"}, "remote_tokens"),
    ({"remote_tokens": "=x"}, "remote_tokens"),
    ({"remote_tokens": "http://h:1=a,http://h:1/=b"}, "remote_tokens.*two"),
    ({"remote_tokens": "http://h:1="}, "remote_tokens.*none"),
    ({"remote_tokens": "http://u:p@h:1=a"}, "remote_tokens.*no user"),
    ({"advertise_host": "a b"}, "advertise_host"),
    ({"advertise_host": "http://x"}, "advertise_host"),
    ({"advertise_host": "1.2.3.4:99"}, "advertise_host"),
    ({"advertise_host": "x" * 300}, "advertise_host"),
    ({"advertise_host": "bad_host!"}, "advertise_host"),
    ({"log_level": "bogus"}, "log_level"),
    ({"token": " "}, "token"),
    ({"token": "two words"}, "token"),
    ({"token": "tab\tbed"}, "token"),
])
def test_values_the_daemon_cannot_work_with_are_refused_by_name(changes, word):
    with pytest.raises(ValueError, match=word):
        Config(**changes)


def test_the_shipped_settings_file_lists_every_setting_with_its_default():
    shipped = yaml.safe_load((REPO / "configs" / "jinad.yml").read_text())
    fields = dataclasses.fields(Config)
    assert list(shipped) == [outside_name(f) for f in fields]
    assert {name: str(value) for name, value in shipped.items()} == {outside_name(f): str(f.default) for f in fields}
    assert all(f.metadata["help"] for f in fields)


@pytest.mark.parametrize("settings, words", [
    ({"tls_cert": "a.crt"}, "needs its key"),
    ({"tls_key": "a.key"}, "needs its key"),
    ({"remote_tls_cert": "c.crt"}, "needs its key"),
    ({"tls_ca": "ca.crt"}, "needs tls_cert"),
])
def test_tls_settings_come_in_pairs(settings, words):
    with pytest.raises(ValueError, match=words):
        Config(**settings)


def test_remote_tokens_are_found_by_the_url_a_flow_names():
    config = Config(remote_tokens="HTTP://b:8000/=t1, https://c:9000=t2")
    assert config.tokens_by_remote == {"http://b:8000": "t1", "https://c:9000": "t2"}


@pytest.mark.parametrize("given, shown", [("vm", "vm"), ("node-1.example.org", "node-1.example.org"),
                                          ("198.18.0.2", "198.18.0.2"), ("::1", "[::1]")])
def test_advertise_host_takes_names_and_addresses(given, shown):
    assert host_name(Config(advertise_host=given).advertise_host) == shown
