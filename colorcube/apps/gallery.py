"""A gallery of an archive: thumbnails a page at a time, sorted by how unsure the colour is.

The order comes from the archive's index alone (:func:`colorcube.cube.index.archive_index`:
each photo's band uncertainty, name and status), so sorting thousands of photos opens
no cube. Only the thumbnails of the page on show are read, each from the stored 8-bit
colour codes (never the bands or the gray: the zarr chunks of the colour the stride
touches), and kept once read.
A click on a thumbnail's "open" opens that photo in the explorer
(:class:`colorcube.apps.explorer.Explorer`) below the gallery.
"""

from __future__ import annotations

import html
import math

import ipywidgets as w
import numpy as np
import zarr

import colorcube

from ..cube.export import png_bytes
from ..cube.index import archive_index, open_image
from ..errors import ColorcubeError, OptionError

__all__ = ["SORTS", "Gallery", "gallery", "page_order", "thumbnail"]

#: sort name -> (index columns, ascending); failed photos carry NaN uncertainty and sort last
SORTS = {
    "least sure first": (["wide_share", "band_width_G"], [False, False]),
    "surest first": (["wide_share", "band_width_G"], [True, True]),
    "name": (["name"], [True]),
    "failed first": (["failed", "name"], [False, True]),
}


def page_order(index, sort: str):
    """The index rows in gallery order (a pandas DataFrame).

    Parameters
    ----------
    index : the archive's index (:func:`colorcube.cube.index.archive_index`)
    sort : one of :data:`SORTS`
    """
    if sort not in SORTS:
        raise OptionError(f"sort={sort!r}: use one of {list(SORTS)}")
    cols, ascending = SORTS[sort]
    table = index.assign(failed=index.status == "failed")
    return table.sort_values(cols, ascending=ascending, na_position="last", kind="stable", ignore_index=True)


def thumbnail(out, name: str, *, side: int = 96) -> np.ndarray:
    """(y, x, 3) uint8 thumbnail of one archived photo from its stored colour codes, strided
    to at most ``side`` pixels a side (only the zarr chunks the stride touches are read).

    Raises
    ------
    ColorcubeError if the photo's colour codes cannot be read
    """
    if side < 1:
        raise OptionError(f"side={side!r}: a thumbnail needs at least one pixel a side")
    try:
        rgb = zarr.open_array(str(out), path=f"images/{name}/rgb", mode="r")
    except (FileNotFoundError, KeyError, ValueError, zarr.errors.BaseZarrError) as exc:
        raise ColorcubeError(f"{out}: photo {name!r} has no readable colour codes ({exc})") from exc
    step = max(1, math.ceil(max(rgb.shape[:2]) / side))
    return np.asarray(rgb[::step, ::step])


class Gallery:
    """State and callbacks of the gallery; :func:`gallery` returns ``Gallery(...).widget``.

    Parameters
    ----------
    out : archive path or URL
    page_size : thumbnails per page
    side : thumbnail side in pixels
    explore_options : keyword options of :func:`colorcube.explore` for the photo opened
        (``calibration``, ``truth``, ``max_side``, ``model``)
    """

    def __init__(self, out, *, page_size: int = 24, side: int = 96, **explore_options):
        if page_size < 1:
            raise OptionError(f"page_size={page_size!r}: show at least one thumbnail a page")
        if side < 1:
            raise OptionError(f"side={side!r}: a thumbnail needs at least one pixel a side")
        self._w = w
        self.out, self.page_size, self.side, self.options = out, page_size, side, explore_options
        self.index = archive_index(out)
        self._thumbs: dict = {}  # name -> PNG bytes, read once
        self.reads = 0  # thumbnails read from the store (tests check the paging bound)
        self.sort = w.Dropdown(options=list(SORTS), value="least sure first", description="sort")
        self.page = w.BoundedIntText(value=1, min=1, max=self.pages, description="page", layout=w.Layout(width="160px"))
        self.previous, self.next = w.Button(description="<"), w.Button(description=">")
        self.info = w.HTML()
        self.grid = w.GridBox(layout=w.Layout(grid_template_columns=f"repeat(6, {side + 24}px)"))
        self.viewer = w.VBox()
        self.sort.observe(lambda _: self._show(), "value")
        self.page.observe(lambda _: self._show(), "value")
        self.previous.on_click(lambda _: self._turn(-1))
        self.next.on_click(lambda _: self._turn(1))
        bar = w.HBox([self.sort, self.previous, self.page, self.next, self.info])
        self.widget = w.VBox([bar, self.grid, self.viewer])
        self.widget.add_class("colorcube-gallery")
        self._show()

    @property
    def pages(self) -> int:
        return max(1, math.ceil(len(self.index) / self.page_size))

    def _turn(self, step: int) -> None:
        self.page.value = min(self.pages, max(1, self.page.value + step))

    def rows(self):
        """The index rows on the page on show, in gallery order."""
        start = (self.page.value - 1) * self.page_size
        return page_order(self.index, self.sort.value).iloc[start : start + self.page_size]

    def _thumb(self, name: str) -> bytes:
        if name not in self._thumbs:
            self.reads += 1
            self._thumbs[name] = png_bytes(thumbnail(self.out, name, side=self.side))
        return self._thumbs[name]

    def _show(self) -> None:
        w = self._w
        cells = []
        for _, row in self.rows().iterrows():
            ok, problem = row["status"] == "complete", f"{row['status']}: {row['error']}"
            if ok:
                try:
                    image = w.Image(value=self._thumb(row["name"]), format="png")
                except ColorcubeError as exc:  # one unreadable photo must not take the page down
                    ok, problem = False, str(exc)
            if not ok:
                image = w.HTML(f"<div style='width:{self.side}px;height:{self.side}px;background:#ddd;"
                               f"font-size:10px;overflow:hidden'>{html.escape(problem)}</div>")
            label = (f"{row['wide_share']:.0%} wide" if ok and np.isfinite(row["wide_share"]) else row["status"])
            button = w.Button(description="open", tooltip=f"open {row['name']} in the explorer", disabled=not ok,
                              layout=w.Layout(width=f"{self.side}px"))
            button.add_class("colorcube-open")
            button.on_click(lambda _, name=row["name"]: self.open(name))
            caption = w.HTML(f"<small>{html.escape(row['name'][:16])}<br>{html.escape(label)}</small>")
            caption.add_class("colorcube-caption")
            cells.append(w.VBox([image, caption, button]))
        self.grid.children = tuple(cells)
        self.page.max = self.pages
        self.info.value = f"<small>{len(self.index)} photos, {self.pages} pages</small>"

    def open(self, name: str):
        """Open photo ``name`` in the explorer below the gallery; returns the Explorer (None, with
        the reason shown above the grid, when it cannot be opened)."""
        try:
            # the explorer (and the network behind it) loads on the first open, through the
            # package's lazy attributes: the gallery itself needs neither
            view = colorcube.explore(open_image(self.out, name), **self.options)
        except ColorcubeError as exc:
            self.info.value = f"<small style='color:#b00'>{html.escape(str(exc))}</small>"
            return None
        self.viewer.children = (view,)
        self.opened = view.explorer
        return view.explorer


def gallery(out, *, page_size: int = 24, side: int = 96, **explore_options):
    """The gallery widget of an archive (module docstring); ``.gallery`` is its :class:`Gallery`.

    Parameters
    ----------
    out : archive path or URL (made by :func:`colorcube.colorize_archive`)
    page_size : int, thumbnails per page (default 24)
    side : int, thumbnail side in pixels (default 96)
    explore_options : ``calibration``, ``truth``, ``max_side``, ``model`` for the opened photo
        (as :func:`colorcube.explore`)

    Returns
    -------
    ipywidgets.VBox
    """
    g = Gallery(out, page_size=page_size, side=side, **explore_options)
    g.widget.gallery = g
    return g.widget
