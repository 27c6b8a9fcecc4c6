"""Executors of the compatibility suite: each appends its name to every document's text, so an
answer shows the executors a request passed through, in order."""

from typing import List

from docarray import DocList
from docarray.documents import TextDoc
from jina import Executor, requests


class Tag(Executor):
    """Appends `|<its name>` (or `|<label>`) to each text; on /boom, raises."""

    def __init__(self, label: str = "", **kwargs):
        super().__init__(**kwargs)
        self.label = label or self.runtime_args.name.split("/")[0]

    @requests
    def tag(self, docs: DocList[TextDoc], **kwargs) -> DocList[TextDoc]:
        for doc in docs:
            doc.text = f"{doc.text}|{self.label}"
        return docs

    @requests(on="/boom")
    def boom(self, docs: DocList[TextDoc], **kwargs) -> DocList[TextDoc]:
        raise ValueError(f"{self.label} refuses {len(docs)} docs")


class Before(Tag):
    """Before shards: `|before`."""

    def __init__(self, **kwargs):
        super().__init__(label="before", **kwargs)


class Collect(Executor):
    """After shards: one answer (the shards tag alike), with how many shards answered."""

    @requests
    def collect(self, docs_matrix: List[DocList[TextDoc]], **kwargs) -> DocList[TextDoc]:
        docs = docs_matrix[0]
        for doc in docs:
            doc.text = f"{doc.text}|after{len(docs_matrix)}"
        return docs
