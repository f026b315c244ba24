"""streamrag for LlamaIndex: a page-streaming reader, an MMD-aware node parser and a live index.

from streamrag.llama_index import StreamragReader, StreamragIndex

reader = StreamragReader(backend="embedded")  # or api_url=..., or Mathpix with MATHPIX_APP_KEY
index = StreamragIndex("store")
engine = index.as_query_engine()
for page in reader.lazy_load_data("paper.pdf"):  # one Document per page, as it arrives
    index.insert(page)
    print(engine.query("What is the main result?").metadata["coverage"])
"""

from .engines import LiveChatEngine, LiveQueryEngine, LiveRetriever, Search, coverage_metadata
from .index import StreamragIndex
from .node_parser import MMDNodeParser
from .reader import StreamragReader, page_document, page_event

__all__ = [
    "LiveChatEngine",
    "LiveQueryEngine",
    "LiveRetriever",
    "MMDNodeParser",
    "Search",
    "StreamragIndex",
    "StreamragReader",
    "coverage_metadata",
    "page_document",
    "page_event",
]
