"""The index as a LangChain retriever, so it drops into LCEL chains:

    from rung.rag.retriever import RungRetriever
    retriever = RungRetriever.from_index("my-index", k=4)        # a folder, or a database:
    retriever = RungRetriever.from_index("postgresql:///rag?host=/run/postgresql&table=docs", k=4,
                                         retrieval="hybrid")
    chain = {"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt | llm

Documents carry metadata source, line, page, heading, doc, id and score (cosine similarity, higher is better —
not LangChain FAISS's squared L2 distance; with hybrid retrieval, the fused reciprocal-rank score).
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict


class RungRetriever(BaseRetriever):
    """Top-k chunks of a rung index for a query."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Any
    k: int = 4

    @classmethod
    def from_index(cls, index_dir, *, k: int = 4, model: str | None = None, retrieval: str = "dense",
                   **fusion: Any) -> "RungRetriever":
        """`index_dir`: a folder or a postgresql:// URL; `retrieval` and `fusion` (keyword_weight, rrf_k) as in
        core/settings.py RetrievalSettings."""
        from rung.core.resolve import resolve
        from rung.core.settings import RetrievalSettings
        from rung.rag.backend import load_index

        settings = resolve(RetrievalSettings, [("RungRetriever", {"retrieval": retrieval, **fusion})])
        return cls(index=load_index(index_dir, model=model, retrieval=settings), k=k)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        docs = []
        for hit in self.index.search(query, self.k):
            meta = hit.as_dict()
            text = meta.pop("text")
            docs.append(Document(page_content=text, metadata=meta, id=str(meta["id"])))
        return docs
