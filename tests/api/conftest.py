import pytest

from jinad.app import create_app
from jinad.config import Config


@pytest.fixture
def config(tmp_path) -> Config:
    return Config(home=str(tmp_path / "home"), host="127.0.0.1", port_range="32000-32099", max_upload_bytes=64 * 1024)


@pytest.fixture
async def client(aiohttp_client, config):
    return await aiohttp_client(create_app(config))
