"""The officers' desk: ``backchannel ui``, a local web app over one officer's device.

Server-rendered pages (Starlette, Jinja2) with htmx, served from this package
only; the desk reaches the client through its facade
(:mod:`backchannel.client.service`) and :mod:`backchannel.client.api`.
"""
