"""Typed values at the seams: wire messages of the Mathpix API, page events, coverage, answers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "Answer",
    "Citation",
    "Coverage",
    "ErrorInfo",
    "PageEvent",
    "PageMessage",
    "PdfStatus",
    "format_pages",
]


class ErrorInfo(BaseModel):
    """``error_info`` of an API error body or of a page without content."""

    model_config = ConfigDict(extra="allow")

    id: str
    message: str = ""


class PageMessage(BaseModel):
    """One message of ``GET /v3/pdf/{id}/stream``: a page's text, or its error.

    Unknown fields are kept (Mathpix adds fields over time); a message with neither ``text`` nor
    ``error_info`` is not a page.
    """

    model_config = ConfigDict(extra="allow")

    page_idx: int = Field(ge=1)
    pdf_selected_len: int | None = Field(default=None, ge=0)
    text: str | None = None
    version: str | None = None
    pdf_id: str | None = None
    error: str | None = None
    error_info: ErrorInfo | None = None

    @model_validator(mode="after")
    def _text_or_error(self) -> PageMessage:
        if self.text is None and self.error_info is None:
            raise ValueError("a page message needs 'text' or 'error_info'")
        return self

    def wire(self) -> dict[str, Any]:
        """The message as the API sends it: absent fields left out."""
        return self.model_dump(exclude_none=True)


class PdfStatus(BaseModel):
    """Body of ``GET /v3/pdf/{id}``."""

    model_config = ConfigDict(extra="allow")

    status: str
    num_pages: int | None = None
    num_pages_completed: int | None = None
    percent_done: float | None = None


class PageEvent(BaseModel):
    """A page of one document, from whichever source: the unit every later stage consumes."""

    model_config = ConfigDict(frozen=True)

    doc_id: str
    page_idx: int = Field(ge=1)
    pdf_selected_len: int | None = None
    text: str | None = None
    error_id: str | None = None
    error_message: str | None = None
    pdf_id: str | None = None

    @classmethod
    def from_message(cls, message: PageMessage, doc_id: str) -> PageEvent:
        info = message.error_info
        return cls(
            doc_id=doc_id,
            page_idx=message.page_idx,
            pdf_selected_len=message.pdf_selected_len,
            text=message.text if info is None else None,
            error_id=info.id if info else None,
            error_message=(info.message or message.error) if info else None,
            pdf_id=message.pdf_id,
        )

    @property
    def has_content(self) -> bool:
        return bool(self.text and self.text.strip())

    @property
    def continues_previous(self) -> bool:
        """True when the text starts with a single newline: it goes on with the previous page's
        paragraph or list (Mathpix's page-separator rule)."""
        return self.text is not None and self.text.startswith("\n") and not self.text.startswith("\n\n")


def format_pages(pages: list[int]) -> str:
    """``[1, 2, 3, 5]`` → ``"1–3, 5"``."""
    runs: list[list[int]] = []
    for page in sorted(set(pages)):
        if runs and page == runs[-1][-1] + 1:
            runs[-1].append(page)
        else:
            runs.append([page])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs)


class Coverage(BaseModel):
    """How much of one document the index holds."""

    doc_id: str
    pages_seen: list[int] = Field(default_factory=list)
    pages_without_content: list[int] = Field(default_factory=list)
    pages_total: int | None = None
    complete: bool = False
    finished: bool = False

    @property
    def pages_missing(self) -> list[int]:
        if self.pages_total is None:
            return []
        seen = set(self.pages_seen)
        return [p for p in range(1, self.pages_total + 1) if p not in seen]

    @property
    def pages_indexed(self) -> int:
        return len(self.pages_seen)

    def describe(self) -> str:
        """E.g. ``"pages 1–4 of 15 indexed; still streaming"``."""
        total = "?" if self.pages_total is None else str(self.pages_total)
        seen = format_pages(self.pages_seen) if self.pages_seen else "none"
        label = "page" if len(self.pages_seen) == 1 else "pages"
        text = f"{label} {seen} of {total} indexed"
        if self.pages_without_content:
            text += f" ({len(self.pages_without_content)} without content)"
        if self.complete:
            return text + "; complete"
        if self.finished:
            return text + f"; stream ended early, missing {format_pages(self.pages_missing) or 'unknown pages'}"
        return text + "; still streaming"


class Citation(BaseModel):
    """A piece of indexed text an answer rests on."""

    page: int
    pages: list[int]
    text: str
    score: float
    doc_id: str = ""
    chunk_id: str = ""
    pieces: list[tuple[int, int, int]] = Field(default_factory=list, exclude=True)
    prefix_len: int = Field(default=0, exclude=True)

    def page_at(self, offset: int) -> int:
        """The page that character ``offset`` of :attr:`text` comes from."""
        pos = self.prefix_len
        for page, start, end in self.pieces:
            pos += end - start
            if offset < pos:
                return page
        return self.pieces[-1][0] if self.pieces else self.page


class Answer(BaseModel):
    """An answer over what is indexed so far, with its sources and the coverage it saw."""

    question: str
    answer: str
    citations: list[Citation]
    coverage: Coverage
    final: bool = False
    seconds: float | None = None

    def to_record(self) -> dict[str, Any]:
        """The ``--json`` line: a flat, stable contract."""
        return {
            "question": self.question,
            "answer": self.answer,
            "citations": [c.model_dump(include={"page", "pages", "text", "score"}) for c in self.citations],
            "pages_indexed": self.coverage.pages_indexed,
            "pages_total": self.coverage.pages_total,
            "coverage": self.coverage.describe(),
            "final": self.final,
            "seconds": self.seconds,
        }
