"""Pages of a list without COUNT(*): reading one row past the page tells whether there is a next."""

from dataclasses import dataclass


@dataclass
class Page:
    rows: list
    number: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def page_number(request) -> int:
    try:
        return max(1, min(int(request.GET.get("page", "1")), 10_000))
    except ValueError:
        return 1


def page_of(queryset, *, number: int, per_page: int) -> Page:
    offset = (number - 1) * per_page
    rows = list(queryset[offset : offset + per_page + 1])
    return Page(rows=rows[:per_page], number=number, has_next=len(rows) > per_page)
