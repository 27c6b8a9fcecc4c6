"""A small real Executor for the end-to-end tests: upper-cases text and says so on stdout."""

from docarray import DocList
from docarray.documents import TextDoc
from jina import Executor, requests


class Upper(Executor):
    def __init__(self, suffix: str = "", **kwargs):
        super().__init__(**kwargs)
        self.suffix = suffix
        print("upper executor ready", flush=True)

    @requests
    def upper(self, docs: DocList[TextDoc], **kwargs) -> DocList[TextDoc]:
        for doc in docs:
            doc.text = doc.text.upper() + self.suffix
        print(f"upper handled {len(docs)} docs", flush=True)
        return docs


class SlowUpper(Upper):
    """Upper that takes `delay` seconds to start: a rolling update still running when the test
    stops its daemon."""

    def __init__(self, delay: float = 0.0, **kwargs):
        import time

        print("slow upper starting", flush=True)
        time.sleep(delay)
        super().__init__(**kwargs)
