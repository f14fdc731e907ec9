"""Voila's configuration for the servers of :func:`nbhooks.demo.servers.voila_spec`.

Voila loads ``voila.py`` from each directory of ``JUPYTER_CONFIG_PATH``; ``voila_spec`` puts
this one's first. A file, because a callable cannot be given on Voila's command line.
"""

from nbhooks.demo.servers import give_page_its_xsrf_cookie

c = get_config()  # type: ignore[name-defined]  # noqa: F821 - traitlets defines it here

c.VoilaConfiguration.prelaunch_hook = give_page_its_xsrf_cookie
