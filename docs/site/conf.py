"""Sphinx configuration of the workbook's website (built by ``tools/site.py``).

``tools/site.py`` writes the pages of one edition into a temporary source folder and runs
``sphinx-build -c docs/site`` on it, so this file holds only what both editions share; the edition's
title comes in with ``-D html_title=...``.

The notebooks are rendered from their committed outputs: nothing is executed (a full run of the
labs takes up to an hour on a laptop). Widgets cannot run without a kernel, so the site shows the
static fallback that every widget output carries next to its view (its text/plain or image), and
loads no widget JavaScript: the site needs no network and runs no code it cannot explain.
"""

project = "ticketlab"
author = "ticketlab"
extensions = ["myst_nb"]

# --- notebooks -------------------------------------------------------------------------------
nb_execution_mode = "off"  # the committed outputs are the content
# Never choose a widget view: render the output's fallback (text/plain, image/png, ...) instead.
nb_mime_priority_overrides = [("*", "application/vnd.jupyter.widget-view+json", None)]
nb_ipywidgets_js: dict = {}  # no require.js / html-manager from a CDN, even for widget state
nb_merge_streams = True  # one block per cell for stdout, not one per print

# --- markdown --------------------------------------------------------------------------------
myst_heading_anchors = 3  # `[text](01_xor_lottery.ipynb#the-claim)` resolves to a heading

# --- HTML ------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "ticketlab"
html_theme_options = {
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "use_download_button": True,  # the page's notebook (the student copy on the student site)
    "use_fullscreen_button": False,
}
# The figures are matplotlib PNGs on white: open in light mode (the reader can still switch). Left
# unset, the theme logs "Got invalid theme mode" as a console error on a reader's first visit.
html_context = {"default_mode": "light"}
html_show_sphinx = False
