"""Paging over a ranked list of query ids: the one implementation the query-grid panels share."""
from __future__ import annotations

import numpy as np


class PagedQueries:
    """Mixin for panels that show ``n_queries`` queries per page of a ranked id list.

    A panel provides ``_order()`` (all ranked query ids, cached by its view state), the attributes
    ``page`` and ``n_queries``, and ``_refresh()``; this gives it the page arithmetic and actions.

    Example:
        >>> import numpy as np
        >>> class Pages(PagedQueries):
        ...     n_queries, page = 2, 0
        ...     def _order(self): return np.array([7, 3, 5, 1, 9])
        ...     def _refresh(self): pass
        >>> p = Pages(); p.go_to_page(5); (p.page, p.n_pages, p.page_query_ids)
        (2, 3, [9])
    """

    page: int
    n_queries: int
    # and, from the panel or its base: _order() -> np.ndarray, _refresh() -> None

    @property
    def n_pages(self) -> int:
        return max(1, -(-len(self._order()) // self.n_queries))

    def _page_ids(self, page: int) -> np.ndarray:
        return self._order()[page * self.n_queries:(page + 1) * self.n_queries]

    @property
    def page_query_ids(self) -> list[int]:
        """Item ids of the queries on the current page, in the panel's order."""
        return [int(i) for i in self._page_ids(self.page)]

    def go_to_page(self, page: int) -> None:
        """Show page ``page`` (0-based; clipped to the pages there are)."""
        self.page = int(min(max(page, 0), self.n_pages - 1))
        self._refresh()

    def next_page(self) -> None:
        self.go_to_page(self.page + 1)

    def prev_page(self) -> None:
        self.go_to_page(self.page - 1)
