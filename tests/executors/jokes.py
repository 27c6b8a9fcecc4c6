"""An Executor that needs a package the daemon's environment does not have (pyjokes)."""

from importlib.metadata import version

import pyjokes
from docarray import DocList
from docarray.documents import TextDoc
from jina import Executor, requests


class Jokes(Executor):
    @requests
    def joke(self, docs: DocList[TextDoc], **kwargs) -> DocList[TextDoc]:
        for doc in docs:
            doc.text = f"pyjokes {version('pyjokes')}: {pyjokes.get_joke()}"
        return docs
